"""Rotating pcapng output for ``flowscope listen -w DIR --rotate SIZE|SECONDS``.

Each file is what ``flowscope decap`` writes (sinks/pcapng.py: the inner frames, one
interface per mirror session, mirror metadata in each packet's comment), complete in
itself: its own section header and interface blocks.  A file is named by the capture time
of its first frame, ``flowscope-20261121T192300.123456Z.pcapng``, so a directory listing
is in time order.

``--rotate 100MB`` starts a new file once the current one has reached the size (at a batch
boundary, so a file may exceed it by one batch); ``--rotate 60s`` cuts exactly on capture
time: frames stamped at or after the file's first frame + 60 s go to the next file.
Sampling and slicing done on the way are written into every interface description, so a
reader of the file knows what it does not show.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from flowscope.analyse.mirrors import MirrorTracker
from flowscope.batch import PacketBatch
from flowscope.errors import FlowscopeError
from flowscope.sinks.pcapng import PcapngWriter, SplitBy

_SIZE_UNITS = {"b": 1, "k": 10**3, "kb": 10**3, "mb": 10**6, "g": 10**9, "gb": 10**9,
               "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
_TIME_UNITS = {"": 10**9, "s": 10**9, "sec": 10**9, "m": 60 * 10**9, "min": 60 * 10**9,
               "h": 3600 * 10**9}


@dataclass(frozen=True)
class Rotation:
    """When to start a new file: after ``max_bytes`` bytes, or ``max_ns`` of capture time."""

    max_bytes: int | None = None
    max_ns: int | None = None

    @classmethod
    def parse(cls, text: str) -> Rotation:
        """'100MB', '1GiB', '500k' -> size; '60', '60s', '5m', '1h' -> time."""
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
        unit = m.group(2).lower() if m else "?"
        if m and unit in _TIME_UNITS and float(m.group(1)) > 0:
            return cls(max_ns=int(float(m.group(1)) * _TIME_UNITS[unit]))
        if m and unit in _SIZE_UNITS and float(m.group(1)) >= 1:
            return cls(max_bytes=int(float(m.group(1)) * _SIZE_UNITS[unit]))
        raise FlowscopeError(f"--rotate {text!r}: give a size (100MB, 1GiB) or a time "
                             f"(60s, 5min, 1h; a bare number is seconds)")


    @staticmethod
    def parse_size(text: str, option: str) -> int:
        """'256MiB', '16MB', '1G' -> bytes."""
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
        unit = m.group(2).lower() if m else "?"
        if m and (unit in _SIZE_UNITS or not unit) and float(m.group(1)) >= 1:
            return int(float(m.group(1)) * _SIZE_UNITS.get(unit, 1))
        raise FlowscopeError(f"{option} {text!r}: give a size such as 16MB or 256MiB")


def file_name(ts_ns: int) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ts_ns // 10**9))
    return f"flowscope-{stamp}.{ts_ns % 10**9 // 1000:06d}Z.pcapng"


class RotatingPcapng:
    """Decapsulated frames into a directory of pcapng files, a new file per ``rotation``."""

    def __init__(self, directory: Path, rotation: Rotation = Rotation(), *,
                 split_by: SplitBy = "session", note: str = "") -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FlowscopeError(f"{directory}: cannot create the directory: "
                                 f"{e.strerror}") from None
        self.rotation = rotation
        self.split_by = split_by
        self.note = note
        self.files: list[Path] = []
        self.written = 0  # frames, all files
        self.skipped = 0  # frames without a mirror encapsulation (not written)
        self._out: BinaryIO | None = None
        self._writer: PcapngWriter | None = None
        self._start_ns = 0

    def write(self, batch: PacketBatch, rows: np.ndarray, tracker: MirrorTracker) -> None:
        if not rows.shape[0]:
            return
        max_ns = self.rotation.max_ns
        while rows.shape[0]:
            if self._writer is None:
                self._open(int(rows["ts_ns"][0]))
            part = rows
            if max_ns is not None:
                late = rows["ts_ns"] >= self._start_ns + max_ns
                if late.any():
                    part, rows = rows[~late], rows[late]
                    self._write(batch, part, tracker)
                    self._close_file()
                    continue
            self._write(batch, part, tracker)
            break
        if (self.rotation.max_bytes is not None and self._out is not None
                and self._out.tell() >= self.rotation.max_bytes):
            self._close_file()

    def _write(self, batch: PacketBatch, rows: np.ndarray, tracker: MirrorTracker) -> None:
        if not rows.shape[0]:
            return
        assert self._writer is not None and self._out is not None
        before_w, before_s = self._writer.written, self._writer.skipped
        try:
            self._writer.write(batch, rows, tracker)
            self._out.flush()
        except OSError as e:
            raise FlowscopeError(f"{self.files[-1]}: cannot write: {e.strerror}") from None
        self.written += self._writer.written - before_w
        self.skipped += self._writer.skipped - before_s

    def _open(self, ts_ns: int) -> None:
        path = self.directory / file_name(ts_ns)
        k = 1
        while path.exists():
            path = self.directory / file_name(ts_ns).replace(".pcapng", f"-{k}.pcapng")
            k += 1
        try:
            self._out = open(path, "wb", buffering=1 << 20)
        except OSError as e:
            raise FlowscopeError(f"{path}: cannot write: {e.strerror}") from None
        self.files.append(path)
        self._writer = PcapngWriter(self._out, self.split_by, note=self.note)
        self._start_ns = ts_ns

    def _close_file(self) -> None:
        if self._out is not None:
            self._out.close()
        self._out = None
        self._writer = None

    def close(self) -> None:
        self._close_file()
