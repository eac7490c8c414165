"""The flowscope command line: a thin layer over the library (flowscope.pipeline)."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from flowscope.errors import FlowscopeError

# NumPy, and Arrow's default allocator (mimalloc), ask the kernel for transparent huge pages
# (madvise) for large allocations.  Where THP defrag is 'madvise' (the kernel's default), the
# first touch of each such 2 MiB page waits while the kernel compacts memory: in a flow-log
# analysis of 1.6M records that was ~1 s of system time in a 3.5 s run.  Small pages for
# flowscope's commands: NumPy's madvise off, Arrow on the C library's allocator (both read
# when the module is imported, after these lines; a user's setting wins).
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

if TYPE_CHECKING:  # the packet path (NumPy, Numba) is imported by the commands that use it,
    # so `flowscope flowlogs ...` and `flowscope aws ...` start without compiling anything
    from flowscope.decode import DecodeConfig
    from flowscope.pipeline import PacketRun

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="What happened to these connections? Mirrored packets (ERSPAN, VXLAN, "
                       "Geneve) turned into evidence.")
err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)


class RowFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"


class SessionFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"
    zeek = "zeek"


def _duration_ns(text: str) -> int:
    """'1s', '500ms', '2m', '1h', '0.5' (seconds) -> ns."""
    units = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
             "h": 3_600_000_000_000}
    t = text.strip().lower()
    for unit in sorted(units, key=len, reverse=True):
        if t.endswith(unit):
            number, scale = t[: -len(unit)], units[unit]
            break
    else:
        number, scale = t, units["s"]
    try:
        value = float(number)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration such as 1s, 500ms or 5m") from None
    if value <= 0:
        raise typer.BadParameter("the interval must be positive")
    return int(value * scale)


class SplitBy(StrEnum):
    session = "session"
    vni = "vni"
    none = "none"


Files = Annotated[list[str], typer.Argument(help="pcap/pcapng files (gzip ok), directories, "
                                                 "or - for stdin; merged in time order")]
VxlanPorts = Annotated[list[int] | None, typer.Option(
    "--vxlan-port", help="UDP destination port(s) decoded as VXLAN [default: 4789, 8472]")]
GenevePorts = Annotated[list[int] | None, typer.Option(
    "--geneve-port", help="UDP destination port(s) decoded as Geneve [default: 6081]")]
MaxDepth = Annotated[int, typer.Option("--max-depth", min=1, max=16,
                                       help="nested tunnels decoded at most")]


def _config(vxlan: list[int] | None, geneve: list[int] | None, depth: int) -> DecodeConfig:
    from flowscope.decode import DecodeConfig

    base = DecodeConfig()
    return DecodeConfig(tuple(vxlan) if vxlan else base.vxlan_ports,
                        tuple(geneve) if geneve else base.geneve_ports, depth)


def _run(files: list[str], config: DecodeConfig, reuse_rows: bool = False) -> PacketRun:
    from flowscope.pipeline import PacketRun

    return PacketRun(files, config, reuse_rows=reuse_rows)


def _progress(run: PacketRun):  # type: ignore[no-untyped-def]
    """Batches with a progress line on a terminal (stderr), silent otherwise."""
    if not err.is_terminal:
        yield from run.batches()
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.fields[frames]:,} frames"),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        task = progress.add_task("decode", frames=0)
        for item in run.batches():
            progress.update(task, frames=run.frames)
            yield item


def _report(run: PacketRun) -> None:
    """Problems and decode errors on stderr: counted, located, never a traceback."""
    for p in run.problems.items[:20]:
        err.print(f"[yellow]warning[/]: {p}")
    if len(run.problems) > 20:
        err.print(f"[yellow]warning[/]: ... {len(run.problems) - 20} more input problems")
    errors = run.error_summary()
    if errors:
        total = sum(errors.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1]))
        err.print(f"{run.frames} frames, {run.frames - total} decoded, {total} with errors "
                  f"({detail})")


def _fail(e: FlowscopeError) -> None:
    err.print(f"[red]error[/]: {e}")
    raise typer.Exit(e.exit_code)


@app.command()
def packets(files: Files,
            format: Annotated[RowFormat, typer.Option("--format", "-f")] = RowFormat.table,
            limit: Annotated[int | None, typer.Option("--limit", "-n", min=0,
                                                      help="stop after N frames")] = None,
            vxlan_port: VxlanPorts = None, geneve_port: GenevePorts = None,
            max_depth: MaxDepth = 4) -> None:
    """One row per captured frame, mirror metadata and the innermost packet (like tcpdump -r)."""
    from flowscope.sinks.arrow import packets_table
    from flowscope.sinks.text import write_jsonl, write_packet_lines

    run = _run(files, _config(vxlan_port, geneve_port, max_depth))
    shown = 0
    try:
        for _, rows in _progress(run):
            if limit is not None:
                rows = rows[: max(0, limit - shown)]
            if rows.shape[0]:
                table = packets_table(rows)
                if format is RowFormat.jsonl:
                    write_jsonl(table, sys.stdout)
                else:
                    write_packet_lines(table, sys.stdout, header=shown == 0)
                shown += rows.shape[0]
            if limit is not None and shown >= limit:
                break
    except FlowscopeError as e:
        _fail(e)
    except BrokenPipeError:
        sys.stderr.close()
        return
    _report(run)


@app.command()
def mirrors(files: Files,
            format: Annotated[RowFormat, typer.Option("--format", "-f")] = RowFormat.table,
            vxlan_port: VxlanPorts = None, geneve_port: GenevePorts = None,
            max_depth: MaxDepth = 4) -> None:
    """One row per mirror stream: who mirrors to whom, how much, and what the mirror lost."""
    from flowscope.sinks.arrow import mirrors_table
    from flowscope.sinks.text import print_mirrors, write_jsonl

    run = _run(files, _config(vxlan_port, geneve_port, max_depth), reuse_rows=True)
    try:
        for _ in _progress(run):
            pass
    except FlowscopeError as e:
        _fail(e)
    table = mirrors_table(run.mirrors)
    if format is RowFormat.jsonl:
        write_jsonl(table, sys.stdout)
    else:
        print_mirrors(table, Console(width=None if err.is_terminal else 200, emoji=False,
                                     highlight=False))
    _report(run)


@app.command()
def decap(files: Files,
          output: Annotated[Path, typer.Option("--output", "-o", help="pcapng file to write")],
          split_by: Annotated[SplitBy, typer.Option(
              "--split-by", help="one pcapng interface per mirror session, per VNI, or one")
          ] = SplitBy.session,
          restore_timestamps: Annotated[bool, typer.Option(
              "--restore-timestamps", help="stamp frames with the ERSPAN III hardware time")
          ] = False,
          vxlan_port: VxlanPorts = None, geneve_port: GenevePorts = None,
          max_depth: MaxDepth = 4) -> None:
    """Write the mirrored (inner) frames as pcapng, mirror metadata kept per packet."""
    with _no_collections():
        _decap(files, output, split_by, restore_timestamps,
               _config(vxlan_port, geneve_port, max_depth))


def _decap(files: list[str], output: Path, split_by: SplitBy, restore_timestamps: bool,
           config: DecodeConfig) -> None:
    from flowscope.sinks.pcapng import PcapngWriter

    run = _run(files, config, reuse_rows=True)
    try:
        with open(output, "wb", buffering=1 << 20) as out:
            writer = PcapngWriter(out, split_by.value, restore_timestamps)  # type: ignore[arg-type]
            for batch, rows in _progress(run):
                writer.write(batch, rows, run.mirrors)
    except FlowscopeError as e:
        _fail(e)
    except OSError as e:
        _fail(FlowscopeError(f"{output}: cannot write: {e.strerror}"))
    err.print(f"wrote {writer.written} frames on {len(writer.interfaces)} interfaces to {output}"
              + (f"; {writer.skipped} frames had no mirror encapsulation" if writer.skipped
                 else ""))
    _report(run)


@app.command()
def match(files: Files,
          udf: Annotated[list[str] | None, typer.Option(
              "--udf", help="switch UDF rule BASE+OFFSET=VALUE[/MASK], BASE l2|l3|l4|l5, e.g. "
                            "l4+8=0x8100/0xff00; repeat to AND (at most 8)")] = None,
          preset: Annotated[str | None, typer.Option(
              "--preset", help="named rule: rdma-cnp, rdma-nak-psn, rdma-nak-any, tcp-syn, "
                               "tcp-rst")] = None,
          filter: Annotated[str | None, typer.Option(
              "--filter", help="tcpdump-style expression ANDed with the rules, e.g. "
                               "'udp dst port 4791 and vni 5569041'")] = None,
          examples: Annotated[int, typer.Option("--examples", "-n", min=0,
                                                help="matching frames to show")] = 5,
          format: Annotated[RowFormat, typer.Option("--format", "-f")] = RowFormat.table,
          vxlan_port: VxlanPorts = None, geneve_port: GenevePorts = None,
          max_depth: MaxDepth = 4) -> None:
    """Test switch UDF/ACL rules against a capture before deploying them: frames matched per
    rule and combined, and example frames with the word each rule saw."""
    from flowscope.filters import Selector
    from flowscope.filters.report import MatchReport

    run = _run(files, _config(vxlan_port, geneve_port, max_depth))
    try:
        if not udf and not preset and not filter:
            raise FlowscopeError("give --udf RULE (repeatable), --preset NAME or --filter EXPR")
        report = MatchReport(Selector(filter, udf or (), preset), examples)
        for batch, rows in _progress(run):
            report.update(batch, rows)
    except FlowscopeError as e:
        _fail(e)
    try:
        if format is RowFormat.jsonl:
            report.write_jsonl(sys.stdout)
        else:
            report.write_table(sys.stdout)
    except BrokenPipeError:
        sys.stderr.close()
        return
    _report(run)


@app.command()
def sessions(files: Files,
             format: Annotated[SessionFormat, typer.Option("--format", "-f")] = SessionFormat.table,
             output: Annotated[str | None, typer.Option(
                 "--output", "-o", help="file to write (default: standard output)")] = None,
             problems: Annotated[bool, typer.Option(
                 "--problems", help="only sessions that failed or degraded")] = False,
             interval: Annotated[str | None, typer.Option(
                 "--interval", help="emit a time series per interval (e.g. 1s, 100ms, 1m) "
                                    "instead of sessions")] = None,
             limit: Annotated[int | None, typer.Option(
                 "--limit", "-n", min=0, help="table format: show at most N rows")] = None,
             vxlan_port: VxlanPorts = None, geneve_port: GenevePorts = None,
             max_depth: MaxDepth = 4) -> None:
    """One row per session (TCP with Zeek conn_state, UDP, ICMP, RoCEv2 queue pair), problems
    first, with a verdict and its evidence."""
    with _no_collections():
        _sessions(files, format, output, problems, interval, limit,
                  _config(vxlan_port, geneve_port, max_depth))


def _sessions(files: list[str], format: SessionFormat, output: str | None, problems: bool,
              interval: str | None, limit: int | None, config: DecodeConfig) -> None:
    from flowscope.pipeline import track_sessions

    interval_ns = _duration_ns(interval) if interval else None
    if format is SessionFormat.parquet and output is None and sys.stdout.isatty():
        _fail(FlowscopeError("--format parquet needs -o FILE (or a pipe)"))
    run = _run(files, config, reuse_rows=True)
    try:
        result = track_sessions(run, _progress(run), interval_ns)
    except FlowscopeError as e:
        _fail(e)
    table = result.table
    if problems:
        table = table.filter(table.column("problem"))
    try:
        if result.timeline is not None:
            _write_rows(result.timeline, format, output, timeline=True)
        else:
            _write_rows(table, format, output, limit=limit)
    except OSError as e:
        _fail(FlowscopeError(f"{output}: cannot write: {e.strerror}"))
    except BrokenPipeError:
        sys.stderr.close()
        return
    _report(run)


@contextmanager
def _no_collections(freeze_first: bool = False) -> Iterator[None]:
    """No garbage collections while a packet or flow-log command runs: importing NumPy,
    Numba, PyArrow and DuckDB and loading the kernels makes ~10^5 objects and no garbage,
    and the batch loop makes a handful of reference cycles per run, not per batch.  Every
    collection would walk all of them (0.1-0.2 s per run), and so would the interpreter's
    exit unless they are frozen (0.3 s).  ``freeze_first``: freeze what exists before the
    block instead of after it, for blocks that import DuckDB: its bindings (nanobind)
    report every object of theirs still alive at exit as a leak, and frozen ones are."""
    gc.disable()
    if freeze_first:
        gc.freeze()
    try:
        yield
    finally:
        if not freeze_first:
            gc.freeze()
        gc.enable()


def _write_rows(table, format: SessionFormat, output: str | None, *,  # type: ignore[no-untyped-def]
                timeline: bool = False, limit: int | None = None) -> None:
    from flowscope.sinks.files import write_table
    from flowscope.sinks.text import print_sessions, write_jsonl

    if format is SessionFormat.table:
        if timeline:
            format = SessionFormat.csv if output else SessionFormat.jsonl
        else:
            with open(output, "w") if output else _stdout() as out:
                print_sessions(table, Console(file=out, width=None if out.isatty() else 220,
                                              emoji=False, highlight=False), limit)
            return
    if format is SessionFormat.zeek:
        if timeline:
            raise FlowscopeError("--format zeek writes sessions (conn.log), not a time series")
        from flowscope.sinks.zeek import write_conn_log

        with open(output, "w") if output else _stdout() as out:
            write_conn_log(table, out)
        return
    if format is SessionFormat.jsonl and not output:
        write_jsonl(table, sys.stdout)
        return
    write_table(table, format.value, output)


class _stdout:
    """sys.stdout as a context manager that is not closed."""

    def __enter__(self):  # type: ignore[no-untyped-def]
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()


@app.command()
def serve(
        grpc: Annotated[str, typer.Option(
            "--grpc", help="HOST:PORT receiving collector streams, or 'none'")] = "127.0.0.1:50051",
        http: Annotated[str, typer.Option("--http", help="HOST:PORT of the JSON HTTP API")
                        ] = "127.0.0.1:8080",
        store: Annotated[str, typer.Option(
            "--store", help="directory of the durable store (batches, Parquet)")
        ] = "flowscope-store",
        tls_cert: Annotated[str | None, typer.Option("--tls-cert", help="server certificate (PEM)")
                            ] = None,
        tls_key: Annotated[str | None, typer.Option("--tls-key", help="its private key (PEM)")
                           ] = None,
        tls_client_ca: Annotated[str | None, typer.Option(
            "--tls-client-ca", help="CA of client certificates: mutual TLS")] = None,
        token_file: Annotated[str | None, typer.Option(
            "--token-file", help="bearer tokens collectors must present, one per line")] = None,
        vxlan_port: VxlanPorts = None, geneve_port: GenevePorts = None,
        max_depth: MaxDepth = 4) -> None:
    """The analysis server: receives batches from collectors, stores them durably, merges them
    into one session view and serves it as JSON over HTTP."""
    from flowscope.serve.server import ServeOptions, run

    options = ServeOptions(None if grpc.lower() == "none" else grpc, http, store, tls_cert,
                           tls_key, tls_client_ca, token_file,
                           _config(vxlan_port, geneve_port, max_depth))
    try:
        run(options, lambda line: err.print(line, markup=False))
    except FlowscopeError as e:
        _fail(e)


flowlogs_app = typer.Typer(no_args_is_help=True, help="Cloud flow logs (AWS VPC Flow Logs).")
app.add_typer(flowlogs_app, name="flowlogs")

from flowscope.aws.commands import aws_app  # noqa: E402 - `flowscope aws ...` (issue 6)

app.add_typer(aws_app, name="aws")


class FlowFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


class TimelineBy(StrEnum):
    peer = "peer"
    port = "port"
    eni = "eni"


@flowlogs_app.command("analyze")
def flowlogs_analyze(
        paths: Annotated[list[str] | None, typer.Argument(
            help="flow-log files (gzip ok), folders (walked), or - for stdin")] = None,
        format: Annotated[FlowFormat, typer.Option("--format", "-f")] = FlowFormat.table,
        output: Annotated[str | None, typer.Option("--output", "-o")] = None,
        log_format: Annotated[str | None, typer.Option(
            "--log-format", help="fields of header-less files, e.g. '${version} ${srcaddr} "
                                 "...' [default: the version 2 default format]")] = None,
        problems: Annotated[bool, typer.Option("--problems",
                                               help="only failing connections")] = False,
        interval: Annotated[str | None, typer.Option(
            "--interval", help="a failure timeline per interval (e.g. 1m, 10m) instead of "
                               "connections; SKIPDATA intervals are gaps, not zeros")] = None,
        by: Annotated[TimelineBy | None, typer.Option(
            "--by", help="with --interval: one series per responder address (peer), "
                         "responder port (port) or interface (eni)")] = None,
        strict: Annotated[bool, typer.Option(
            "--strict", help="stop at the first bad line instead of reporting and "
                             "skipping it")] = False,
        sql: Annotated[str | None, typer.Option(
            "--sql", help="print the analysis as SQL for DIALECT (athena, trino, spark, "
                          "bigquery, duckdb ...) over a table flow_logs, and exit")] = None,
        limit: Annotated[int | None, typer.Option("--limit", "-n", min=0)] = None) -> None:
    """Pair flow-log records into connections, with a verdict each: failures first."""
    from flowscope.flowlogs import analyze as fa
    from flowscope.flowlogs.fields import parse_format

    try:
        if sql:
            print(fa.to_sql(sql))
            return
        if not paths:
            raise FlowscopeError("give flow-log files or folders (or - for stdin)")
        fmt = parse_format(log_format) if log_format else None
        if by and not interval:
            raise FlowscopeError("--by needs --interval (e.g. --interval 1m --by peer)")
        with _no_collections(freeze_first=True):  # (no cycles to collect: see there)
            result = fa.analyze(paths, fmt, strict)
    except ValueError as e:
        _fail(FlowscopeError(str(e)))
    except FlowscopeError as e:
        _fail(e)
    for note in result.capabilities:
        err.print(f"[cyan]format[/]: {note}")
    if result.coverage_gaps:
        err.print(f"[yellow]coverage[/]: {result.coverage_gaps} SKIPDATA records: intervals "
                  f"whose records AWS lost; absence of failures there means nothing")
    for p in result.problems[:20]:
        err.print(f"[yellow]warning[/]: {p}")
    if len(result.problems) > 20:
        err.print(f"[yellow]warning[/]: ... {len(result.problems) - 20} more")
    table = result.table
    if problems:
        table = table.filter(table["problem"])
    if interval:
        try:
            series = fa.timeline(result, max(1, _duration_ns(interval) // 1_000_000_000),
                                 by.value if by else None)
        except FlowscopeError as e:
            _fail(e)
        from flowscope.sinks.files import write_table

        write_table(series, "jsonl" if format is FlowFormat.table else format.value, output)
        return
    if format is FlowFormat.table:
        from flowscope.sinks.text import print_flow_connections

        print_flow_connections(table, Console(width=None if sys.stdout.isatty() else 200,
                                              emoji=False, highlight=False), limit)
    else:
        from flowscope.sinks.files import write_table

        write_table(table, format.value, output)
    err.print(f"{result.files} files, {result.records} records, {result.table.num_rows} "
              f"connections")


class MirrorType(StrEnum):
    erspan2 = "2"
    erspan3 = "3"
    vxlan = "vxlan"


@app.command()
def mirror(
        interface: Annotated[str, typer.Option("--interface", "-i",
                                               help="interface to mirror (both directions)")],
        to: Annotated[str, typer.Option("--to", help="collector host name or address")],
        type: Annotated[MirrorType, typer.Option(
            "--type", help="ERSPAN Type II, Type III (ns timestamps, direction) or VXLAN"),
        ] = MirrorType.erspan2,
        session: Annotated[int, typer.Option(
            "--session", help="ERSPAN session id (0-1023), or the VNI for VXLAN")] = 1,
        filter: Annotated[str | None, typer.Option(
            "--filter", help="mirror only frames matching EXPR (tcpdump-like)")] = None,
        sample: Annotated[int, typer.Option("--sample", help="mirror 1 frame in N")] = 1,
        snaplen: Annotated[int, typer.Option(
            "--snaplen", help="slice copies to N bytes (ERSPAN T bit set); 0 = whole")] = 0,
        port: Annotated[int, typer.Option("--port", help="VXLAN UDP port")] = 4789,
        count: Annotated[int | None, typer.Option(
            "--count", "-c", min=1, help="stop after sending N copies")] = None,
        duration: Annotated[str | None, typer.Option(
            "--duration", help="stop after this long (e.g. 10s, 5m)")] = None) -> None:
    """Be a mirror session: capture an interface and send ERSPAN or VXLAN copies to a
    collector (for hosts whose switch cannot mirror, and for testing collectors)."""
    import signal
    import threading

    from flowscope.encap import KINDS
    from flowscope.live.mirror_source import MirrorConfig, MirrorStats, run_live

    config = MirrorConfig(interface, to, KINDS[type.value], session, filter, sample, snaplen,
                          port, count, _duration_ns(duration) / 1e9 if duration else None)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    what = {"2": "ERSPAN II", "3": "ERSPAN III", "vxlan": "VXLAN"}[type.value]

    def ready() -> None:
        err.print(f"mirroring {interface} to {to} as {what} "
                  f"{'VNI' if type is MirrorType.vxlan else 'session'} {session}; Ctrl-C stops")

    try:
        if err.is_terminal:
            from rich.live import Live

            with Live("", console=err, transient=True, refresh_per_second=4) as live:
                stats = run_live(config, stop, lambda s: live.update(s.line()), ready=ready)
        else:
            stats: MirrorStats = run_live(config, stop, ready=ready)  # type: ignore[no-redef]
    except FlowscopeError as e:
        _fail(e)
    err.print(stats.line())


@app.command()
def listen(
        gre: Annotated[bool, typer.Option(
            "--gre", help="receive GRE/ERSPAN on a raw IP protocol 47 socket")] = False,
        vxlan: Annotated[int | None, typer.Option(
            "--vxlan", metavar="PORT", help="receive VXLAN on this UDP port (4789)")] = None,
        geneve: Annotated[int | None, typer.Option(
            "--geneve", metavar="PORT", help="receive Geneve on this UDP port (6081)")] = None,
        interface: Annotated[str | None, typer.Option(
            "--interface", "-i", help="capture everything arriving on this interface "
                                      "(AF_PACKET ring) instead of sockets")] = None,
        filter: Annotated[str | None, typer.Option(
            "--filter", help="keep frames matching EXPR (tcpdump-like, on the inner packet; "
                             "erspan.session, vni, direction)")] = None,
        udf: Annotated[list[str] | None, typer.Option(
            "--udf", metavar="RULE", help="switch-style rule, e.g. l4+8=0x8100/0xff00 "
                                          "(repeat: ANDed)")] = None,
        preset: Annotated[str | None, typer.Option(
            "--preset", help="named UDF rule set (rdma-cnp, tcp-syn ...)")] = None,
        sample: Annotated[int, typer.Option("--sample", min=1, help="keep 1 frame in N")] = 1,
        snaplen: Annotated[int, typer.Option(
            "--snaplen", min=0, help="slice mirrored frames to N bytes (0: whole)")] = 0,
        write: Annotated[Path | None, typer.Option(
            "--write", "-w", metavar="DIR", help="write rotating pcapng files here")] = None,
        rotate: Annotated[str | None, typer.Option(
            "--rotate", metavar="SIZE|SECONDS", help="new file after SIZE (100MB) or "
                                                     "SECONDS of capture time (60s)")] = None,
        upstream: Annotated[str | None, typer.Option(
            "--upstream", metavar="HOST:PORT", help="stream to flowscope serve")] = None,
        tls_ca: Annotated[Path | None, typer.Option("--tls-ca")] = None,
        tls_cert: Annotated[Path | None, typer.Option("--tls-cert")] = None,
        tls_key: Annotated[Path | None, typer.Option("--tls-key")] = None,
        token_file: Annotated[Path | None, typer.Option("--token-file")] = None,
        collector_id: Annotated[str | None, typer.Option(
            "--collector-id", help="name of this collector upstream [default: hostname]")
        ] = None,
        spool: Annotated[Path | None, typer.Option(
            "--spool", metavar="DIR", help="on-disk queue while upstream is unreachable")
        ] = None,
        count: Annotated[int | None, typer.Option(
            "--count", "-c", min=1, help="stop after N frames received")] = None,
        duration: Annotated[str | None, typer.Option(
            "--duration", help="stop after this long (e.g. 30s, 5m)")] = None,
        status_interval: Annotated[float, typer.Option(
            "--status-interval", help="seconds between status lines when stderr is not a "
                                      "terminal")] = 10.0,
        buffer: Annotated[str, typer.Option(
            "--buffer", metavar="SIZE", help="kernel buffer: the interface ring, or each "
                                             "socket's receive buffer")] = "256MiB",
        vxlan_port: VxlanPorts = None, geneve_port: GenevePorts = None,
        max_depth: MaxDepth = 4) -> None:
    """Receive mirror traffic live (GRE/ERSPAN, VXLAN, Geneve sockets, or an interface),
    decode, filter, and write rotating pcapng and/or stream it to flowscope serve."""
    import threading

    from flowscope.decode import DecodeConfig
    from flowscope.live import listen as live
    from flowscope.live.sockets import GENEVE_PORT, VXLAN_PORT, Endpoint

    if not (gre or vxlan or geneve or interface):
        gre, vxlan, geneve = True, VXLAN_PORT, GENEVE_PORT
    endpoints = ([Endpoint("gre")] if gre else []) + \
        ([Endpoint("vxlan", vxlan)] if vxlan else []) + \
        ([Endpoint("geneve", geneve)] if geneve else [])
    config = _config(vxlan_port, geneve_port, max_depth)
    config = DecodeConfig(tuple(dict.fromkeys(config.vxlan_ports + ((vxlan,) if vxlan else ()))),
                          tuple(dict.fromkeys(config.geneve_ports
                                              + ((geneve,) if geneve else ()))),
                          config.max_tunnels)
    try:
        from flowscope.live.rotate import Rotation

        opts = live.ListenOptions(
            interface=interface, endpoints=endpoints, decode=config, filter=filter,
            udf=tuple(udf or ()), preset=preset, sample=sample, snaplen=snaplen,
            directory=write, rotation=Rotation.parse(rotate) if rotate else Rotation(),
            upstream=upstream, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
            token_file=token_file, spool_dir=spool, count=count,
            duration_s=_duration_ns(duration) / 1e9 if duration else None,
            buffer_bytes=Rotation.parse_size(buffer, "--buffer"))
        if collector_id:
            opts.collector_id = collector_id
        stop = threading.Event()
        live.stop_on_signals(stop)
        listener = live.start(opts)
        where = interface or ", ".join(str(e) for e in endpoints)
        err.print(f"listening on {where}; Ctrl-C stops")
        live.run(listener, stop, err, status_interval)
    except FlowscopeError as e:
        _fail(e)
    for line in live.summary_lines(listener):
        err.print(line)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
