#!/usr/bin/env bash
# The live path on one machine, as root: `sudo demo/live.sh`
#
#   A (client) 10.77.0.1 ──veth── 10.77.0.2 B (server)       real TCP: SF, REJ, S0, RSTR, RSTO
#   A          10.78.0.1 ──veth── 10.78.0.2 C (collector)    ERSPAN III copies (MTU 9000)
#
# 1. three network namespaces and two veth pairs;
# 2. in C: `flowscope serve` (store in a temporary directory, HTTP API on C's 127.0.0.1:8080)
#    and `flowscope listen --gre --upstream 127.0.0.1:50051 --token-file ...`;
# 3. in A: `flowscope mirror` on A's veth to B, sending ERSPAN III to 10.78.0.2;
# 4. five connections from A to B, each ending differently (see "the connections" below);
# 5. stop the mirror and the collector (it flushes its stream), print /api/sessions as a table;
# 6. stop everything and delete the namespaces, also when a step fails or on Ctrl-C.
#
# Needs iproute2, nftables, curl and flowscope's virtualenv (`make setup`; FLOWSCOPE and PY
# point elsewhere).  About 10 s.  Leaves nothing behind but its log and store directory,
# printed at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FLOWSCOPE=${FLOWSCOPE:-$ROOT/.venv/bin/flowscope}
PY=${PY:-$ROOT/.venv/bin/python}
A=fs-demo-a B=fs-demo-b C=fs-demo-c
READY_S=60  # how long a process may take to say it is ready

if [ "$(id -u)" != 0 ]; then
    echo "demo/live.sh: run it as root (sudo demo/live.sh): it makes network namespaces" >&2
    exit 1
fi
for tool in ip nft curl "$FLOWSCOPE" "$PY"; do
    command -v "$tool" >/dev/null || { echo "demo/live.sh: needs $tool" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/flowscope-live.XXXXXX)
PIDS=()

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in $A $B $C; do ip netns del "$ns" 2>/dev/null || true; done
    if [ "$rc" != 0 ]; then
        echo "demo/live.sh failed (exit $rc); the logs are in $WORK:" >&2
        tail -n 5 "$WORK"/*.log >&2 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for FILE PATTERN: until a process's log has the line that says it is ready
wait_for() {
    for _ in $(seq $((READY_S * 10))); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "demo/live.sh: no '$2' in $1 after $READY_S s" >&2
    return 1
}

# start NS NAME ARGS...: run a command in a namespace in the background, its output to NAME.log
start() {
    local ns=$1 name=$2
    shift 2
    ip netns exec "$ns" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$name=$!"
}

# /api/sessions (JSON) as a table, problems first as the server sorts them
read -r -d '' TABLE <<'EOF' || true
import json, sys
rows = json.load(sys.stdin)["sessions"]
print(f"{'verdict':14} {'originator':16} {'responder':15} {'state':5} {'history':8} "
      f"{'pkts':>7}  evidence")
for r in rows:
    print(f"{r['verdict']:14} {r['orig_h']}:{r['orig_p']:<6} {r['resp_h']}:{r['resp_p']:<5} "
          f"{r['conn_state']:5} {r['history']:8} {r['orig_pkts']:>3}/{r['resp_pkts']:<3}  "
          + "; ".join(r["evidence"]))
EOF

echo "== 1. namespaces $A (client), $B (server), $C (collector)"
for ns in $A $B $C; do
    ip netns del "$ns" 2>/dev/null || true  # left over from an interrupted run
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1  # no IPv6 chatter
done
ip link add fs-ab netns $A type veth peer name fs-ba netns $B
ip link add fs-ac netns $A type veth peer name fs-ca netns $C
ip -n $A addr add 10.77.0.1/24 dev fs-ab
ip -n $B addr add 10.77.0.2/24 dev fs-ba
ip -n $A addr add 10.78.0.1/24 dev fs-ac
ip -n $C addr add 10.78.0.2/24 dev fs-ca
ip -n $A link set fs-ac mtu 9000  # room for the 50 bytes ERSPAN III adds to a full frame
ip -n $C link set fs-ca mtu 9000
for link in "$A fs-ab" "$B fs-ba" "$A fs-ac" "$C fs-ca"; do
    # shellcheck disable=SC2086
    ip -n ${link% *} link set ${link#* } up
done

echo "== 2. in $C: flowscope serve and flowscope listen --gre --upstream"
head -c 24 /dev/urandom | base64 > "$WORK/token"
start $C serve "$FLOWSCOPE" serve --grpc 127.0.0.1:50051 --http 127.0.0.1:8080 \
    --store "$WORK/store" --token-file "$WORK/token"
wait_for "$WORK/serve.log" "gRPC receiver on"
start $C listen "$FLOWSCOPE" listen --gre --upstream 127.0.0.1:50051 \
    --token-file "$WORK/token" --collector-id demo-collector --spool "$WORK/spool"
wait_for "$WORK/listen.log" "listening on"

echo "== 3. in $A: flowscope mirror on fs-ab (A's side of the A-B link) to 10.78.0.2"
start $A mirror "$FLOWSCOPE" mirror --interface fs-ab --to 10.78.0.2 --type 3 --session 21
wait_for "$WORK/mirror.log" "Ctrl-C stops"

echo "== 4. the connections, A -> B"
# B runs a web server on 8001 and, on 8004, a server that aborts (RST) after reading.
start $B web "$PY" -u -m http.server 8001 --bind 10.77.0.2
start $B aborter "$PY" -c '
import socket, struct, sys, time
s = socket.create_server(("10.77.0.2", 8004))
print("ready", file=sys.stderr, flush=True)
conn, _ = s.accept()
conn.recv(65536)
time.sleep(0.5)  # the request is ACKed; then close with SO_LINGER 0: RST, not FIN
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()'
wait_for "$WORK/web.log" "Serving HTTP"
wait_for "$WORK/aborter.log" "ready"
in_a() { ip netns exec $A "$@"; }

echo "   SF   a normal exchange:              curl http://10.77.0.2:8001/"
in_a curl -s -o /dev/null http://10.77.0.2:8001/
echo "   REJ  nothing listens on 8002:        curl http://10.77.0.2:8002/"
in_a curl -s -o /dev/null http://10.77.0.2:8002/ || true
echo "   S0   nftables on B drops port 8003:  curl -m 2 http://10.77.0.2:8003/"
ip netns exec $B nft -f - <<'EOF'
table inet demo {
    chain input {
        type filter hook input priority filter; policy accept;
        tcp dport 8003 drop
    }
}
EOF
in_a curl -s -o /dev/null -m 2 http://10.77.0.2:8003/ || true
echo "   RSTR the server aborts:              curl http://10.77.0.2:8004/"
in_a curl -s -o /dev/null http://10.77.0.2:8004/ || true
echo "   RSTO the client aborts:              connect to 8001, send half a request, abort"
in_a "$PY" -c '
import socket, struct, time
s = socket.create_connection(("10.77.0.2", 8001))
s.sendall(b"GET / HTTP/1.1\r\n")  # not the end of the request: the server waits for more
time.sleep(0.5)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()'
sleep 0.5  # the last copies are in flight

echo "== 5. stop the mirror and the collector; the server's sessions"
kill -INT "$PID_mirror" && wait "$PID_mirror" || true
kill -INT "$PID_listen" && wait "$PID_listen" || true
sed 's/^/   mirror: /' <(tail -n 1 "$WORK/mirror.log")
grep -E "^(received|sent|mirror loss)" "$WORK/listen.log" | sed 's/^/   listen: /'
echo
ip netns exec $C curl -s 'http://127.0.0.1:8080/api/sessions?proto=tcp' | "$PY" -c "$TABLE"
echo
echo "logs and the server's store are in $WORK; to look again (no namespaces needed):"
echo "  $FLOWSCOPE serve --grpc none --store $WORK/store &"
echo "  curl -s http://127.0.0.1:8080/api/collectors   # /api/sessions, /api/mirrors, /api/timeline"
