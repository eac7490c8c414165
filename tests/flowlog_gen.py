"""Known connections -> AWS VPC Flow Log records, aggregated the way AWS does it.

Each connection is a list of packets (time, direction, TCP flags, bytes); records are made per
direction per aggregation window (60 s), with packets and bytes summed and tcp-flags OR-ed
using AWS's reduced vocabulary (FIN 1, SYN 2, RST 4, SYN-ACK 18; ACK and PSH alone are 0),
then shuffled.  Output is the custom troubleshooting format with a header line.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

WINDOW = 60
FIELDS = ("version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport",
          "protocol", "packets", "bytes", "start", "end", "action", "log-status", "tcp-flags",
          "pkt-srcaddr", "pkt-dstaddr", "flow-direction")
T0 = 1_763_000_040  # seconds, a minute boundary (T0 % 60 == 0)

FIN, SYN, RST, ACK = 1, 2, 4, 16


def aws_flags(tcp: int) -> int:
    """What tcp-flags records for one packet: SYN-ACK as 18, else FIN/SYN/RST bits only."""
    if tcp & SYN and tcp & ACK:
        return 18
    return tcp & (FIN | SYN | RST)


@dataclass
class Conn:
    name: str
    client: tuple[str, int]
    server: tuple[str, int]
    proto: int = 6
    packets: list[tuple[float, bool, int, int]] = field(default_factory=list)  # t, from client
    action: str = "ACCEPT"
    reject_after: float | None = None  # packets at/after this time are REJECT
    nat: str | None = None  # the client as the server's ENI sees it (srcaddr), real in pkt-*
    expected: str = ""

    def send(self, t: float, from_client: bool, flags: int = ACK, size: int = 60) -> Conn:
        self.packets.append((t, from_client, flags, size))
        return self


def records(conns: list[Conn], seed: int = 7, ms: bool = False,
            both_enis: bool = False) -> list[dict[str, object]]:
    """Records as AWS writes them; ``both_enis``: the server's ENI is logged too, so every
    record appears a second time from the other end (other interface and direction)."""
    out = []
    for c in conns:
        groups: dict[tuple[bool, int, str], list[tuple[float, int, int]]] = {}
        for t, from_client, flags, size in c.packets:
            action = c.action
            if c.reject_after is not None and t >= c.reject_after:
                action = "REJECT"
            window = int(t // WINDOW)
            groups.setdefault((from_client, window, action), []).append((t, flags, size))
        for (from_client, _window, action), pkts in groups.items():
            src, dst = (c.client, c.server) if from_client else (c.server, c.client)
            seen_src = c.nat if (c.nat and from_client) else src[0]
            seen_dst = c.nat if (c.nat and not from_client) else dst[0]
            flags = 0
            for _, f, _ in pkts:
                flags |= aws_flags(f)
            start = T0 + int(min(t for t, _, _ in pkts))
            end = T0 + int(max(t for t, _, _ in pkts)) + 1
            out.append({
                "version": 5, "account-id": "123456789012", "interface-id": "eni-0abc",
                "srcaddr": seen_src, "dstaddr": seen_dst, "srcport": src[1],
                "dstport": dst[1], "protocol": c.proto, "packets": len(pkts),
                "bytes": sum(s for _, _, s in pkts),
                "start": start * 1000 if ms else start, "end": end * 1000 if ms else end,
                "action": action, "log-status": "OK",
                "tcp-flags": flags if c.proto == 6 else 0,
                "pkt-srcaddr": src[0], "pkt-dstaddr": dst[0],
                "flow-direction": "ingress" if not from_client else "egress"})
    if both_enis:
        out += [r | {"interface-id": "eni-0def", "flow-direction":
                     "ingress" if r["flow-direction"] == "egress" else "egress"} for r in out]
    random.Random(seed).shuffle(out)
    return out


def text(recs: list[dict[str, object]], extra: list[str] = ()) -> str:  # type: ignore[assignment]
    lines = [" ".join(FIELDS)]
    lines += [" ".join(str(r[f]) for f in FIELDS) for r in recs]
    lines += list(extra)
    return "\n".join(lines) + "\n"


def scenarios() -> list[Conn]:
    cl, srv = "10.0.1.10", "10.0.2.20"
    cs = []
    c = Conn("ok", (cl, 40001), (srv, 443), expected="ok")
    c.send(1, True, SYN).send(1.01, False, SYN | ACK).send(1.02, True).send(1.03, True, ACK, 500)
    c.send(30, False, ACK, 1500).send(70, True, FIN | ACK).send(70.1, False, FIN | ACK)
    cs.append(c.send(70.2, True))  # spans two windows
    c = Conn("open", (cl, 40002), (srv, 443), expected="open")
    cs.append(c.send(5, True, SYN).send(5.01, False, SYN | ACK).send(5.02, True, ACK, 300))
    c = Conn("unanswered", (cl, 40003), (srv, 443), expected="unanswered")
    cs.append(c.send(8, True, SYN).send(9, True, SYN).send(11, True, SYN))
    c = Conn("refused", (cl, 40004), (srv, 5432), expected="refused")
    cs.append(c.send(12, True, SYN).send(12.001, False, RST | ACK))
    c = Conn("reset_by_orig", (cl, 40005), (srv, 443), expected="reset_by_orig")
    cs.append(c.send(14, True, SYN).send(14.01, False, SYN | ACK).send(14.02, True)
              .send(20, True, RST))
    c = Conn("reset_by_resp", (cl, 40006), (srv, 443), expected="reset_by_resp")
    cs.append(c.send(15, True, SYN).send(15.01, False, SYN | ACK).send(15.02, True)
              .send(21, False, RST | ACK))
    c = Conn("denied", (cl, 40007), (srv, 22), action="REJECT", expected="denied")
    cs.append(c.send(16, True, SYN).send(19, True, SYN))
    c = Conn("late_after_close", (cl, 40008), (srv, 443), reject_after=130,
             expected="late_after_close")
    c.send(100, True, SYN).send(100.01, False, SYN | ACK).send(100.02, True)
    cs.append(c.send(110, True, FIN | ACK).send(110.1, False, FIN | ACK).send(130, False, ACK))
    c = Conn("midstream", (cl, 40009), (srv, 443), expected="midstream")
    cs.append(c.send(2, True, ACK, 400).send(2.1, False, ACK, 900))
    c = Conn("nat", ("203.0.113.9", 51000), (srv, 443), nat="10.0.0.5", expected="ok")
    cs.append(c.send(3, True, SYN).send(3.01, False, SYN | ACK).send(3.02, True)
              .send(4, True, FIN | ACK).send(4.01, False, FIN | ACK))
    c = Conn("dns", (cl, 53000), ("10.0.0.2", 53), proto=17, expected="ok")
    cs.append(c.send(6, True, 0, 70).send(6.01, False, 0, 120))
    c = Conn("dns-lost", (cl, 53001), ("10.0.0.2", 53), proto=17, expected="unanswered")
    cs.append(c.send(7, True, 0, 70))
    return cs


if __name__ == "__main__":  # `make demo`: python -m tests.flowlog_gen OUT.log
    import sys
    from pathlib import Path

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "flows.log")
    out.parent.mkdir(parents=True, exist_ok=True)
    recs = records(scenarios())
    out.write_text(text(recs))
    print(f"{out}: {len(recs)} records of {len(scenarios())} connections")
