"""Live capture speed: replay a 1M-frame ERSPAN capture over a veth into `flowscope listen`.

Two network namespaces joined by a veth pair (tests/netns.py: offloads off, IPv6 off);
`flowscope listen --interface` (AF_PACKET TPACKET_V3 ring, decode, mirror accounting;
with --write also rotating pcapng) runs in one, pinned to CPU 1; `tcpreplay` replays
bench/out/erspan2-1M.pcap (bench/make_capture.py) from the other, pinned to CPU 0 (the
kernel's receive path, veth to the ring, runs on the sender's CPU).  For each rate step
(`tcpreplay --pps R`, then `--topspeed`) the table gives the rate tcpreplay achieved, the
frames it sent, what listen received and the kernel drops it reported (PACKET_STATISTICS),
and whether received + drops = sent.  The highest rate with zero kernel drops is printed
last.

    .venv/bin/python bench/live_replay.py                     # steps 250k ... topspeed
    .venv/bin/python bench/live_replay.py --rates 1000000 --write

Needs root, iproute2, tcpreplay.  Writes the table to bench/out/live_replay.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from tests.netns import _read_until, netns_pair  # noqa: E402

CAPTURE = BENCH / "out" / "erspan2-1M.pcap"
SETTLE_S = 1.5  # after tcpreplay ends: the ring's last block retires, listen drains it
RATES = (250_000, 500_000, 1_000_000, 1_500_000, 2_000_000, 0)  # 0: as fast as possible


@dataclass
class Step:
    sender: str  # "tcpreplay" or "sendmmsg" (blast below)
    requested: int  # pps asked of the sender, 0 = as fast as it can
    achieved: float  # pps the sender reports
    sent: int
    received: int
    drops: int
    cpu_s: float  # listen's CPU seconds while the step ran (its one core)

    @property
    def accounted(self) -> bool:
        return self.received + self.drops == self.sent


def _ensure_capture() -> None:
    if not CAPTURE.exists():
        subprocess.run([sys.executable, str(BENCH / "make_capture.py"), "--frames", "1000000",
                        "--traffic", "flood", "-o", str(CAPTURE)], check=True)


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process so far (/proc/PID/stat fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _send(pair, sender: str, rate: int, limit: int | None = None) -> tuple[int, float]:
    """Replay the capture from the client namespace on CPU 0: (frames sent, achieved pps)."""
    if sender == "tcpreplay":
        pace = ["--topspeed"] if rate == 0 else ["--pps", str(rate)]
        out = subprocess.run(
            pair.exec(pair.client_ns, "taskset", "-c", "0", "tcpreplay", "-i", pair.client_if,
                      "--preload-pcap", *pace, str(CAPTURE)),
            capture_output=True, text=True, check=True).stdout
        return (int(re.search(r"Successful packets:\s+(\d+)", out).group(1)),
                float(re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps",
                                out).group(1)))
    out = subprocess.run(
        pair.exec(pair.client_ns, "taskset", "-c", "0", sys.executable, __file__, "--send",
                  pair.client_if, "--rates", str(rate),
                  *(["--limit", str(limit)] if limit is not None else [])),
        capture_output=True, text=True, check=True).stdout
    m = re.search(r"sent (\d+) frames in [\d.]+ s, (\d+) pps", out)
    return int(m.group(1)), float(m.group(2))


def run_step(pair, sender: str, rate: int, write: Path | None, paused: bool = False) -> Step:
    """One replay into a fresh listen.  ``paused``: listen is stopped (SIGSTOP) while the
    frames arrive, with a 16 MB ring, so the kernel must drop most of them — the
    accounting check above any rate the sender can reach."""
    flowscope = [sys.executable, "-m", "flowscope", "listen", "--interface", pair.server_if,
                 "--status-interval", "3600"] + (["--buffer", "16MB"] if paused else [])
    if write is not None:
        shutil.rmtree(write, ignore_errors=True)
        flowscope += ["-w", str(write), "--rotate", "1GB"]
    proc = subprocess.Popen(pair.exec(pair.server_ns, "taskset", "-c", "1", *flowscope),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        _read_until(proc, proc.stderr.fileno(), b"listening on", 60)
        cpu0 = _cpu_s(proc.pid)
        if paused:
            os.kill(proc.pid, signal.SIGSTOP)
        sent, achieved = _send(pair, sender, rate)
        if paused:
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(SETTLE_S)
        cpu = _cpu_s(proc.pid) - cpu0
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = err.decode()
    m = re.search(r"received ([\d,]+) frames .*?; kernel drops ([\d,]+)", report)
    if m is None:
        raise RuntimeError(f"no summary from flowscope listen:\n{report}")
    received, drops = (int(x.replace(",", "")) for x in m.groups())
    return Step(sender + (" (listen paused)" if paused else ""), rate, achieved, sent,
                received, drops, cpu)


@dataclass
class Drain:
    frames: int  # frames waiting in the ring when listen resumed
    drops: int
    wall_s: float  # SIGCONT until listen exited, having received them all
    cpu_s: float


WARMUP = 20_000  # frames sent first, so that the compiled kernels are loaded before timing


def run_drain(pair, write: Path | None) -> Drain:
    """listen's own receive rate, sender out of the way: with listen stopped (SIGSTOP), the
    whole capture is sent into a ring large enough to hold it; then listen resumes and
    ``--count`` makes it exit once it has read every frame."""
    proc = subprocess.Popen(
        pair.exec(pair.server_ns, "taskset", "-c", "1", sys.executable, "-m", "flowscope",
                  "listen", "--interface", pair.server_if, "--buffer", "512MiB",
                  "--status-interval", "3600", "--count", str(WARMUP + 1_000_000),
                  *(["-w", str(write), "--rotate", "1GB"] if write is not None else [])),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        _read_until(proc, proc.stderr.fileno(), b"listening on", 60)
        _send(pair, "sendmmsg", 0, WARMUP)
        time.sleep(SETTLE_S)
        os.kill(proc.pid, signal.SIGSTOP)
        sent, _ = _send(pair, "sendmmsg", 0)
        cpu0 = _cpu_s(proc.pid)
        t0 = time.perf_counter()
        os.kill(proc.pid, signal.SIGCONT)
        err = proc.stderr.read()  # to EOF: listen has exited
        wall = time.perf_counter() - t0
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime - cpu0
    finally:
        if proc.poll() is None:
            proc.kill()
    report = err.decode()
    m = re.search(r"received ([\d,]+) frames .*?; kernel drops ([\d,]+)", report)
    if m is None:
        raise RuntimeError(f"no summary from flowscope listen:\n{report}")
    received, drops = (int(x.replace(",", "")) for x in m.groups())
    if received != WARMUP + sent:
        raise RuntimeError(f"listen received {received:,}, expected {WARMUP + sent:,}")
    return Drain(sent, drops, wall, cpu)


def blast(interface: str, capture: Path, rate: int, limit: int | None = None) -> None:
    """The faster sender: every frame of ``capture`` out of ``interface`` with sendmmsg(2) on
    an AF_PACKET socket, 1024 frames per system call, past the qdisc
    (PACKET_QDISC_BYPASS); paced per call when ``rate`` > 0.  Prints frames sent and the
    achieved rate.  (tcpreplay sends one frame per system call.)"""
    import ctypes
    import socket

    import numpy as np

    from flowscope.live.sockets import MMSGHDR, _libc
    from flowscope.sources import read_captures

    batches = list(read_captures([str(capture)]))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setsockopt(263, 20, 1)  # SOL_PACKET, PACKET_QDISC_BYPASS
    sock.bind((interface, 0))
    sendmmsg = _libc.sendmmsg
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    chunk = 1024
    plans = []
    for batch in batches:  # iovecs and headers built before the clock starts
        base = np.uint64(batch.buf.ctypes.data)
        iov = np.zeros((len(batch), 2), np.uint64)
        iov[:, 0] = base + batch.offset.astype(np.uint64)
        iov[:, 1] = batch.caplen
        hdrs = np.zeros(len(batch), MMSGHDR)
        hdrs["iov"] = iov.ctypes.data + np.arange(len(batch), dtype=np.uint64) * 16
        hdrs["iovlen"] = 1
        plans.append((batch, iov, hdrs))
    sent = 0
    t0 = time.perf_counter()
    for _, _, hdrs in plans:
        if limit is not None:
            hdrs = hdrs[: max(0, limit - sent)]
        i = 0
        while i < hdrs.shape[0]:
            n = min(chunk, hdrs.shape[0] - i)
            got = sendmmsg(sock.fileno(), hdrs.ctypes.data + i * MMSGHDR.itemsize, n, 0)
            if got < 0:
                if ctypes.get_errno() in (105, 11):  # ENOBUFS, EAGAIN: retry
                    continue
                raise OSError(ctypes.get_errno(), "sendmmsg")
            i += got
            sent += got
            if rate:
                ahead = sent / rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
    elapsed = time.perf_counter() - t0
    print(f"sent {sent} frames in {elapsed:.6f} s, {sent / elapsed:.0f} pps", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", type=int, nargs="*", default=list(RATES),
                    help="pps steps; 0 means as fast as the sender can (--topspeed)")
    ap.add_argument("--sender", choices=("tcpreplay", "sendmmsg", "both"), default="both",
                    help="tcpreplay (one frame per system call), or this script's sendmmsg "
                         "sender (1024 per call), or both")
    ap.add_argument("--write", action="store_true",
                    help="listen also writes rotating pcapng (to a temporary directory)")
    ap.add_argument("--send", metavar="IFACE", help=argparse.SUPPRESS)  # the sender itself
    ap.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.send:
        blast(args.send, CAPTURE, args.rates[0], args.limit)
        return
    if os.geteuid() != 0 or not shutil.which("tcpreplay"):
        sys.exit("needs root and tcpreplay")
    _ensure_capture()
    senders = ("tcpreplay", "sendmmsg") if args.sender == "both" else (args.sender,)
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="flowscope-live-") as tmp, netns_pair() as pair:
        write = Path(tmp) / "pcapng" if args.write else None
        plan = [(sender, rate, False) for sender in senders for rate in args.rates]
        plan.append((senders[-1], 0, True))  # overload: every frame still accounted for
        for sender, rate, paused in plan:
            step = run_step(pair, sender, rate, write, paused)
            steps.append(step)
            print(f"{step.sender} {rate or 'max'}: achieved {step.achieved:,.0f} pps, sent "
                  f"{step.sent:,}, received {step.received:,}, drops {step.drops:,}, "
                  f"listen CPU {step.cpu_s:.2f} s", file=sys.stderr, flush=True)
        if write is not None:
            shutil.rmtree(write, ignore_errors=True)
        drain = run_drain(pair, write)
        if drain is not None:
            print(f"drain: {drain.frames:,} frames in {drain.wall_s:.3f} s, CPU "
                  f"{drain.cpu_s:.3f} s, drops {drain.drops}", file=sys.stderr, flush=True)
    mode = "decode + mirror accounting + pcapng" if args.write else \
        "decode + mirror accounting"
    lines = [f"`flowscope listen --interface` ({mode}) on CPU 1, 1M ERSPAN II frames sent "
             f"over a veth from CPU 0",
             "",
             "| sender | rate asked | achieved pps | sent | received | kernel drops | "
             "received + drops = sent | listen CPU s | listen µs/frame |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        lines.append(f"| {s.sender} | {f'{s.requested:,}' if s.requested else 'max'} | "
                     f"{s.achieved:,.0f} | {s.sent:,} | {s.received:,} | {s.drops:,} | "
                     f"{'yes' if s.accounted else '**no**'} | {s.cpu_s:.2f} | "
                     f"{1e6 * s.cpu_s / max(s.received, 1):.2f} |")
    clean = [s for s in steps if s.drops == 0 and s.accounted and "paused" not in s.sender]
    best = max(clean, key=lambda s: s.achieved) if clean else None
    lines += ["", "highest rate with zero kernel drops: " + (
        f"{best.achieved:,.0f} frames/s ({best.sender})" if best else "none")]
    if drain is not None:
        lines += ["", f"listen alone (the whole capture waiting in a 512 MiB ring, listen "
                      f"resumed): {drain.frames:,} frames read and decoded in "
                      f"{drain.wall_s:.3f} s wall, {drain.cpu_s:.3f} s CPU = "
                      f"**{drain.frames / drain.wall_s:,.0f} frames/s** on one core "
                      f"(kernel drops {drain.drops})"]
    text = "\n".join(lines)
    print(text)
    (BENCH / "out").mkdir(exist_ok=True)
    (BENCH / "out" / ("live_replay_write.md" if args.write else "live_replay.md")).write_text(
        text + "\n")


if __name__ == "__main__":
    main()
