"""Inputs and oracles for the ``flowscope serve`` tests.

The oracle for every session view is the offline command run as a user runs it
(``python -m flowscope sessions FILE --format jsonl``); captures come from the repository's
generators (``demo/make_incident.py``: TCP and RoCE incidents in ERSPAN II;
``tests/tcp_cases.py``: Wireshark analysis cases; ``bench/make_capture.py``: three ERSPAN
sessions with mirror loss), never from flowscope's own writers.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from flowscope.batch import PacketBatch
from flowscope.sources import read_captures
from flowscope.stream.meta import BatchMeta

ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=64)
def flowscope(*args: str) -> str:
    """stdout of the real command line (the captures do not change within a run)."""
    return subprocess.run([sys.executable, "-m", "flowscope", *args], capture_output=True,
                          text=True, check=True).stdout


def rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def make_incident(directory: Path) -> Path:
    out = directory / "incident.pcap"
    subprocess.run([sys.executable, str(ROOT / "demo" / "make_incident.py"), "-o", str(out)],
                   check=True, capture_output=True)
    return out


def make_bench(directory: Path, frames: int = 20_000, loss: float = 0.01) -> Path:
    out = directory / "bench.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_capture.py"), "--frames",
                    str(frames), "--loss", str(loss), "--traffic", "flood", "-o", str(out)],
                   check=True, capture_output=True)
    return out


def batches(path: Path, batch_frames: int = 1 << 16) -> Iterator[PacketBatch]:
    return read_captures([str(path)], batch_frames=batch_frames)


def feed(sink, path: Path, collector: str = "c1", batch_frames: int = 1 << 16,  # type: ignore[no-untyped-def]
         first_seq: int = 0, **meta: int) -> int:
    """Accept every batch of a capture as one collector; the next sequence number."""
    seq = first_seq
    for batch in batches(path, batch_frames):
        sink.accept(BatchMeta(collector, seq, **meta), batch)
        seq += 1
    return seq
