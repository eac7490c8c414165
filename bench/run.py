"""Side-by-side benchmark, on one core: `flowscope decap` against a dpkt loop and tshark,
`flowscope sessions` against `tshark -q -z conv,tcp`, and `flowscope flowlogs analyze` against
the flowlogs-reader package and a bare DuckDB query.

Generates (if missing) bench/out/erspan2-conv-1M.pcap and bench/out/erspan2-conv-4M.pcap
(TCP conversations; the sessions section also bench/out/erspan2-flood-1M.pcap, its worst
case) with bench/make_capture.py, then on the 1M capture, each pinned to one core
(`taskset -c 0`, --cpu) and timed as a whole process (wall clock, start-up included):

  flowscope  `flowscope decap FILE -o OUT.pcapng`; one untimed run first (it fills Numba's
             on-disk cache, so later runs do not compile), then best of --repeat;
  dpkt       bench/dpkt_decap.py FILE -o OUT.pcapng (dpkt.pcap.Reader -> dpkt.pcapng.Writer);
  tshark     `tshark -r FILE -T fields -e ip.src ... -e gre.sequence_number > /dev/null`.

The sessions and flowlogs sections run their contenders in turn, --rounds times after one
untimed flowscope run, and report the median of the per-round ratios (this VM's speed
drifts by tens of percent over minutes; best-of-N of one tool against one run of another
would compare different moments).

dpkt and tshark are run --repeat times too, unless one run takes longer than --slow seconds,
in which case that single run is reported.  Peak RSS (ru_maxrss of the child, from wait4)
of flowscope decap is measured on both captures.  Prints a Markdown table and writes it to
bench/out/results.md.

    .venv/bin/python bench/run.py            # 1M and 4M frames
    .venv/bin/python bench/run.py --quick    # 100k and 400k frames, a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
TSHARK_FIELDS = ("ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "erspan.spanid",
                 "erspan.vlan", "gre.sequence_number")


@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds
    rss_kb: int  # peak resident set size of the process
    stderr: str


@dataclass
class Result:
    name: str
    command: str
    runs: list[Run]
    frames: int
    cold: Run | None = None  # the untimed first run, if any

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda r: r.wall)

    @property
    def rate(self) -> float:
        return self.frames / self.best.wall


CPU = "0"  # the core every contender is pinned to (--cpu)


def run(cmd: list[str], pin: bool = True) -> Run:
    """Run cmd to completion (stdout discarded); return its wall and CPU time and peak RSS.
    taskset execs the command, so the pid we wait for is the command itself."""
    if pin:
        cmd = ["taskset", "-c", CPU, *cmd]
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{text}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, text)


def timed(name: str, cmd: list[str], frames: int, repeat: int, slow: float,
          warmup: bool = False) -> Result:
    print(f"  {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    cold = None
    if warmup:
        cold = run(cmd)
        print(f"    warm-up {cold.wall:.2f}s", file=sys.stderr, flush=True)
    runs: list[Run] = []
    for _ in range(repeat):
        runs.append(run(cmd))
        print(f"    {runs[-1].wall:.2f}s", file=sys.stderr, flush=True)
        if not warmup and runs[-1].wall > slow:
            break  # slow contenders are run once
    return Result(name, " ".join(cmd), runs, frames, cold)


def interleaved(contenders: list[tuple[str, list[str]]], frames: int,
                rounds: int) -> list[Result]:
    """Each contender once per round, in turn, after one untimed run of the first (flowscope:
    it fills Numba's on-disk cache).  A slow spell of this shared machine then lands on
    every contender of that round alike, so the per-round ratios (:func:`ratios`) stay
    comparable where best-of-N of one against one run of the other does not."""
    results = [Result(name, " ".join(cmd), [], frames) for name, cmd in contenders]
    print(f"  warm-up: {contenders[0][0]}", file=sys.stderr, flush=True)
    results[0].cold = run(contenders[0][1])
    for k in range(rounds):
        for result, (_, cmd) in zip(results, contenders, strict=True):
            result.runs.append(run(cmd))
        print(f"    round {k + 1}: " + ", ".join(f"{r.name} {r.runs[-1].wall:.2f}s"
                                                  for r in results), file=sys.stderr, flush=True)
    return results


def ratios(num: Result, den: Result) -> str:
    """num/den per round of :func:`interleaved`: the median, and the range."""
    per = sorted(n.wall / d.wall for n, d in zip(num.runs, den.runs, strict=True))
    mid = per[len(per) // 2] if len(per) % 2 else (per[len(per) // 2 - 1] + per[len(per) // 2]) / 2
    return f"**{mid:.1f}×** (median of {len(per)} rounds; {per[0]:.1f}-{per[-1]:.1f}×)"


def median_wall(r: Result) -> float:
    walls = sorted(x.wall for x in r.runs)
    n = len(walls)
    return walls[n // 2] if n % 2 else (walls[n // 2 - 1] + walls[n // 2]) / 2


def flowscope_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("flowscope")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "flowscope"]


def ensure_capture(path: Path, frames: int, traffic: str = "conversations") -> None:
    """Generate the capture unless it exists; its name says its traffic (files from before
    --traffic existed have no such name and are never reused)."""
    if path.exists() and Path(f"{path}.truth.json").exists():
        return
    subprocess.run([sys.executable, str(BENCH / "make_capture.py"), "--frames", str(frames),
                    "--traffic", traffic, "-o", str(path)], check=True)


def written(stderr: str) -> str:
    """Frames written, as reported on stderr by flowscope decap or dpkt_decap.py."""
    m = re.search(r"wrote (\d+) frames", stderr)
    return f"{int(m.group(1)):,}" if m else "?"


def version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def label(frames: int) -> str:
    return f"{frames // 1_000_000}M" if frames % 1_000_000 == 0 else f"{frames // 1000}k"


def flowlogs_section(args: argparse.Namespace, row) -> list[str]:  # type: ignore[no-untyped-def]
    """flowscope flowlogs analyze vs the flowlogs-reader package vs a bare DuckDB query."""
    records = 160_000 if args.quick else 1_600_000
    log = OUT / f"flowlogs-{label(records)}.log"
    if not log.exists():
        subprocess.run([sys.executable, str(BENCH / "make_flowlogs.py"), "--records",
                        str(records), "-o", str(log)], check=True)
    print(f"flow logs on {log.name}:", file=sys.stderr)
    fs, reader, duck = interleaved(
        [("flowscope flowlogs analyze", [*flowscope_cmd(), "flowlogs", "analyze", str(log),
                                         "-f", "parquet", "-o", str(OUT / "flows.parquet")]),
         ("flowlogs-reader", [sys.executable, str(BENCH / "flowlogs_reader_baseline.py"),
                              str(log)]),
         ("duckdb pairs (1 thread)", [sys.executable, str(BENCH / "duckdb_pairs.py"), str(log)])],
        records, args.rounds)
    base = median_wall(fs)
    size = log.stat().st_size / 1e6
    return [
        f"## flowscope flowlogs analyze vs flowlogs-reader vs DuckDB ({label(records)} records, "
        f"{size:.0f} MB)",
        "",
        f"Each round runs flowscope, flowlogs-reader, then the bare DuckDB query, pinned to "
        f"core {CPU}; {args.rounds} rounds after one untimed flowscope run.",
        "",
        "| contender | records | wall s (median; best-worst) | CPU s (median run) | records/s "
        "(median) | × flowscope (median wall) | peak RSS MiB | output |",
        "|---|---|---|---|---|---|---|---|",
        row(fs, "1.0", "connections with verdicts (Parquet)"),
        row(reader, f"{median_wall(reader) / base:.2f}", "5-tuple aggregates"),
        row(duck, f"{median_wall(duck) / base:.2f}", "direction pairs, OR-ed flags"),
        "",
        f"- flowlogs-reader / flowscope, wall time per round: {ratios(reader, fs)} "
        f"(target ≥ 10×).",
        f"- flowscope / bare DuckDB, wall time per round: {ratios(fs, duck)} (target ≤ 2×).",
        "",
        *(f"- {r.name}: `{r.command}`" for r in (fs, reader, duck)),
        "",
    ]


def table_row(r: Result, ratio: str, out: str) -> str:
    n = len(r.runs)
    how = f"best of {n}" if n > 1 else "1 run"
    return (f"| {r.name} | {label(r.frames)} | {r.best.wall:.2f} ({how}) | "
            f"{r.best.cpu:.2f} | {r.rate:,.0f} | {ratio} | {r.best.rss_kb / 1024:.0f} | "
            f"{out} |")


def round_row(r: Result, ratio: str, out: str) -> str:
    """A row for :func:`interleaved` results: the median run, and the range of walls."""
    walls = sorted(x.wall for x in r.runs)
    mid = sorted(r.runs, key=lambda x: x.wall)[len(r.runs) // 2]
    return (f"| {r.name} | {label(r.frames)} | {median_wall(r):.2f} ({walls[0]:.2f}-"
            f"{walls[-1]:.2f}) | {mid.cpu:.2f} | {r.frames / median_wall(r):,.0f} | {ratio} | "
            f"{max(x.rss_kb for x in r.runs) / 1024:.0f} | {out} |")


def session_count(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def module_version(name: str) -> str:
    return version([sys.executable, "-c", f"import {name}; print({name}.__version__)"])


def captures(args: argparse.Namespace) -> tuple[Path, Path, int, int]:
    small, large = (100_000, 400_000) if args.quick else (1_000_000, 4_000_000)
    OUT.mkdir(parents=True, exist_ok=True)
    cap = OUT / f"erspan2-conv-{label(small)}.pcap"
    cap_large = OUT / f"erspan2-conv-{label(large)}.pcap"
    print("captures:", file=sys.stderr)
    ensure_capture(cap, small)
    ensure_capture(cap_large, large)
    return cap, cap_large, small, large


def decap_section(args: argparse.Namespace) -> list[str]:
    """flowscope decap vs a dpkt loop vs tshark -T fields; peak RSS on 4x the frames."""
    cap, cap_large, small, large = captures(args)
    fs = flowscope_cmd()
    # Byte-compile flowscope's modules as an installed package is (pip compiles them; an
    # editable install under PYTHONDONTWRITEBYTECODE=1 would recompile them on every run).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(BENCH.parent / "src")],
                   check=True)
    print(f"timing on {cap.name} ({small:,} frames), CPU {CPU}:", file=sys.stderr)
    flowscope = timed("flowscope decap", [*fs, "decap", str(cap), "-o",
                                          str(OUT / "flowscope.pcapng")],
                      small, args.repeat, args.slow, warmup=True)
    dpkt = timed("dpkt loop", [sys.executable, str(BENCH / "dpkt_decap.py"), str(cap), "-o",
                               str(OUT / "dpkt.pcapng")], small, args.repeat, args.slow)
    fields = [a for f in TSHARK_FIELDS for a in ("-e", f)]
    tshark = timed("tshark fields", ["tshark", "-r", str(cap), "-T", "fields", *fields],
                   small, args.repeat, args.slow)
    startup = timed("flowscope start-up", [*fs, "--help"], 0, args.repeat, args.slow)
    print(f"memory and rate on {cap_large.name} ({large:,} frames):", file=sys.stderr)
    flowscope_large = timed("flowscope decap", [*fs, "decap", str(cap_large), "-o",
                                                str(OUT / "flowscope-large.pcapng")],
                            large, args.repeat, args.slow, warmup=True)
    dpkt_large = timed("dpkt loop", [sys.executable, str(BENCH / "dpkt_decap.py"),
                                     str(cap_large), "-o", str(OUT / "dpkt-large.pcapng")],
                       large, 1, args.slow)
    tshark_large = timed("tshark fields", ["tshark", "-r", str(cap_large), "-T", "fields",
                                           *fields], large, 1, args.slow)

    base = flowscope.best.wall
    base_large = flowscope_large.best.wall
    rss_small = max(r.rss_kb for r in flowscope.runs)
    rss_large = max(r.rss_kb for r in flowscope_large.runs)
    growth = 100.0 * (rss_large - rss_small) / rss_small
    row = table_row
    return [
        f"# flowscope decap vs dpkt vs tshark ({label(small)} ERSPAN II frames)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}; {cpu_model()}; every process pinned to one "
        f"core (`taskset -c {CPU}`); Python {platform.python_version()}; flowscope "
        f"{module_version('flowscope')}; dpkt {module_version('dpkt')}; numba "
        f"{module_version('numba')}; {version(['tshark', '--version']).rstrip('.')}.",
        "",
        f"Input: `{cap.name}`, {small:,} frames, {cap.stat().st_size / 1e6:.0f} MB "
        "(Ethernet/IPv4/GRE(seq)/ERSPAN II/Ethernet/IPv4/TCP, inner frames 60-200 bytes). "
        "Wall seconds of the whole process, start-up included.",
        "",
        "| contender | frames | wall s | CPU s | frames/s | × flowscope wall | peak RSS MiB | "
        "frames out |",
        "|---|---|---|---|---|---|---|---|",
        row(flowscope, "1.0", written(flowscope.best.stderr)),
        row(dpkt, f"{dpkt.best.wall / base:.1f}", written(dpkt.best.stderr)),
        row(tshark, f"{tshark.best.wall / base:.1f}", "(fields to /dev/null)"),
        row(flowscope_large, "1.0", written(flowscope_large.best.stderr)),
        row(dpkt_large, f"{dpkt_large.best.wall / base_large:.1f}",
            written(dpkt_large.best.stderr)),
        row(tshark_large, f"{tshark_large.best.wall / base_large:.1f}",
            "(fields to /dev/null)"),
        "",
        f"- dpkt / flowscope: **{dpkt.best.wall / base:.1f}×** on {label(small)} frames, "
        f"**{dpkt_large.best.wall / base_large:.1f}×** on {label(large)} (CPU seconds: "
        f"{dpkt.best.cpu / flowscope.best.cpu:.1f}×, "
        f"{dpkt_large.best.cpu / flowscope_large.best.cpu:.1f}×); "
        f"tshark / flowscope: **{tshark.best.wall / base:.1f}×** on {label(small)}, "
        f"**{tshark_large.best.wall / base_large:.1f}×** on {label(large)} (CPU "
        f"{tshark.best.cpu / flowscope.best.cpu:.1f}×, "
        f"{tshark_large.best.cpu / flowscope_large.best.cpu:.1f}×).",
        f"- flowscope decap peak RSS: {rss_small / 1024:.0f} MiB on {label(small)} frames, "
        f"{rss_large / 1024:.0f} MiB on {label(large)} frames: **{growth:+.0f}%** for "
        f"{large // small}× the input.",
        f"- flowscope's first, untimed run (it fills the Numba on-disk cache if needed): "
        f"{flowscope.cold.wall:.2f} s." if flowscope.cold else "",
        f"- flowscope start-up alone (`flowscope --help`: imports, no kernels loaded): "
        f"{startup.best.wall:.2f} s wall, {startup.best.rss_kb / 1024:.0f} MiB.",
        "- CPU s = user + system time of the process; wall s also includes waiting on the "
        "disk for the output file.",
        "- dpkt writes pcapng with dpkt.pcapng.Writer.writepkt (one interface, no options); "
        "flowscope writes one interface per mirror session and a comment per frame.",
        "",
        "Commands:",
        "",
        *(f"- {r.name}: `{r.command}`" for r in (flowscope, dpkt, flowscope_large, dpkt_large)),
        *(f"- {r.name}: `{r.command} > /dev/null`" for r in (tshark, tshark_large)),
        "",
    ]


def sessions_section(args: argparse.Namespace) -> list[str]:
    """flowscope sessions vs tshark -q -z conv,tcp on the decap benchmark's capture (TCP
    conversations), and on the flood capture (a new connection nearly every frame)."""
    cap, _, small, _ = captures(args)
    flood = OUT / f"erspan2-flood-{label(small)}.pcap"
    ensure_capture(flood, small, "flood")
    fs = flowscope_cmd()
    rows, ratios_text, commands = [], [], []
    for name, path in (("conversations", cap), ("flood", flood)):
        print(f"sessions on {path.name}, CPU {CPU}:", file=sys.stderr)
        parquet = OUT / f"sessions-{name}.parquet"
        sessions, conv = interleaved(
            [(f"flowscope sessions ({name})",
              [*fs, "sessions", str(path), "--format", "parquet", "-o", str(parquet)]),
             (f"tshark conv,tcp ({name})", ["tshark", "-q", "-z", "conv,tcp", "-r", str(path)])],
            small, args.rounds)
        n_sessions = session_count(parquet)
        ratio = median_wall(conv) / median_wall(sessions)
        rows += [round_row(sessions, "1.0", f"{n_sessions:,} sessions (Parquet)"),
                 round_row(conv, f"{ratio:.1f}", "conversation table")]
        ratios_text.append(f"{name} {ratios(conv, sessions)}")
        commands += [f"- {sessions.name}: `{sessions.command}`",
                     f"- {conv.name}: `{conv.command} > /dev/null`"]
    truth = json.loads(Path(f"{cap}.truth.json").read_text())
    states = ", ".join(f"{k} {v:,}" for k, v in sorted(truth["conn_states"].items(),
                                                         key=lambda kv: -kv[1]))
    return [
        f"## flowscope sessions vs tshark -z conv,tcp ({label(small)} frames)",
        "",
        f"`{cap.name}`: {truth['tcp_connections']:,} TCP connections as a mirror sees them "
        f"(handshake, 1-4 request/response rounds, FIN close; 9-30 packets each), thousands "
        f"interleaved in time; conn_state as generated: {states}. `{flood.name}`, the worst "
        "case: a random template and a fresh client port per frame, so nearly every frame "
        "is a new one-packet connection.",
        "",
        f"Each round runs flowscope, then tshark, pinned to core {CPU}; {args.rounds} rounds "
        "after one untimed flowscope run.",
        "",
        "| contender | frames | wall s (median; best-worst) | CPU s (median run) | frames/s "
        "(median) | × flowscope (median wall) | peak RSS MiB | output |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- tshark conv,tcp / flowscope sessions, wall time per round: "
        f"{'; '.join(ratios_text)} (target ≥ 10×; tshark "
        "computes less: packet and byte counts, no states, histories, retransmission "
        "analysis or verdicts).",
        "",
        *commands,
        "",
    ]


SECTIONS = {"decap": decap_section, "sessions": sessions_section,
            "flowlogs": lambda args: flowlogs_section(args, round_row)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="100k-frame capture (and 400k for memory growth), a fast check")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per contender (best of)")
    ap.add_argument("--slow", type=float, default=10.0,
                    help="dpkt/tshark runs longer than this many seconds are not repeated")
    ap.add_argument("--rounds", type=int, default=5,
                    help="sessions and flowlogs sections: rounds of every contender in turn "
                         "(ratios are the median over rounds)")
    ap.add_argument("--cpu", default="0", help="the core to pin every contender to")
    ap.add_argument("--only", choices=tuple(SECTIONS),
                    help="run one section (writes bench/out/results-SECTION.md)")
    args = ap.parse_args()
    global CPU
    CPU = args.cpu
    for tool in ("taskset", "tshark"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found; the benchmark needs it")
    lines: list[str] = []
    for name, section in SECTIONS.items():
        if args.only in (None, name):
            lines += section(args)
    text = "\n".join(lines)
    (OUT / (f"results-{args.only}.md" if args.only else "results.md")).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
