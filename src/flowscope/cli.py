"""The flowscope command line: a thin layer over the library (flowscope.pipeline)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flowscope.decode import DecodeConfig
from flowscope.errors import FlowscopeError
from flowscope.pipeline import PacketRun

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="What happened to these connections? Mirrored packets (ERSPAN, VXLAN, "
                       "Geneve) turned into evidence.")
err = Console(stderr=True, highlight=False, emoji=False)


class RowFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"


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
    base = DecodeConfig()
    return DecodeConfig(tuple(vxlan) if vxlan else base.vxlan_ports,
                        tuple(geneve) if geneve else base.geneve_ports, depth)


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

    run = PacketRun(files, _config(vxlan_port, geneve_port, max_depth))
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

    run = PacketRun(files, _config(vxlan_port, geneve_port, max_depth), reuse_rows=True)
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
    from flowscope.sinks.pcapng import PcapngWriter

    run = PacketRun(files, _config(vxlan_port, geneve_port, max_depth), reuse_rows=True)
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
