"""Sources: capture files (pcap, pcapng, gzip-compressed, stdin) read as PacketBatches,
several files merged in time order, frames numbered from 1 across the merged input."""

from __future__ import annotations

import gzip
import io
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.errors import CaptureFormatError
from flowscope.sources.chunks import ChunkReader, Problem, Problems
from flowscope.sources.merge import merge_by_time
from flowscope.sources.pcap import MAGICS, read_pcap
from flowscope.sources.pcapng import read_pcapng

__all__ = ["read_captures", "open_capture", "Problems", "Problem", "BATCH_FRAMES"]

BATCH_FRAMES = 1 << 16
GZIP_MAGIC = b"\x1f\x8b"
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def _open_stream(path: str) -> io.BufferedReader:
    if path == "-":
        return sys.stdin.buffer  # type: ignore[return-value]
    try:
        raw: io.BufferedReader = open(path, "rb", buffering=1 << 20)  # type: ignore[assignment]  # noqa: SIM115
    except IsADirectoryError:
        raise CaptureFormatError(f"{path}: is a directory; give capture files") from None
    except OSError as e:
        raise CaptureFormatError(f"{path}: cannot open: {e.strerror}") from None
    return raw


def open_capture(path: str, problems: Problems,
                 batch_frames: int = BATCH_FRAMES) -> Iterator[PacketBatch]:
    """Batches of one capture file, in file order (frame numbers not yet assigned)."""
    name = "<stdin>" if path == "-" else path
    stream = _open_stream(path)
    if stream.peek(2)[:2] == GZIP_MAGIC:
        stream = io.BufferedReader(gzip.GzipFile(fileobj=stream, mode="rb"), 1 << 20)  # type: ignore[arg-type]
    try:
        head = stream.peek(4)[:4]
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise CaptureFormatError(f"{name}: not a readable gzip file ({e})") from None
    reader = ChunkReader(stream)
    if head in MAGICS:
        try:
            return _guard(name, read_pcap(name, reader, problems, batch_frames), problems)
        except EOFError:
            raise CaptureFormatError(f"{name}: pcap header is truncated") from None
    if head == PCAPNG_MAGIC:
        return _guard(name, read_pcapng(name, reader, problems, batch_frames), problems)
    what = "empty" if not head else f"starts with {head.hex()}"
    raise CaptureFormatError(
        f"{name}: not a pcap or pcapng capture ({what}); flowscope reads pcap, pcapng and "
        "their gzip-compressed forms")


def _guard(name: str, batches: Iterator[PacketBatch], problems: Problems) -> Iterator[PacketBatch]:
    """A broken compressed stream ends the file with a problem, not a traceback."""
    try:
        yield from batches
    except (OSError, EOFError, gzip.BadGzipFile, ValueError) as e:
        problems.add(name, -1, "unreadable", f"input stopped: {e}")


def _expand(paths: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if p != "-" and os.path.isdir(p):
            out.extend(sorted(str(q) for q in Path(p).rglob("*") if q.is_file()))
        else:
            out.append(p)
    return out


def read_captures(paths: Iterable[str], problems: Problems | None = None,
                  batch_frames: int = BATCH_FRAMES) -> Iterator[PacketBatch]:
    """All frames of all inputs, merged in time order, numbered from 1."""
    problems = Problems() if problems is None else problems
    files = _expand(paths)
    streams = [open_capture(p, problems, batch_frames) for p in files]  # fail early, before output
    merged = streams[0] if len(streams) == 1 else merge_by_time(streams, batch_frames)
    next_frame = 1
    for batch in merged:
        n = len(batch)
        batch.frame[:] = np.arange(next_frame, next_frame + n, dtype=np.int64)
        next_frame += n
        yield batch
