"""Spool: the collector's bounded on-disk queue of encoded batches, oldest dropped when full.

Everything a collector streams upstream goes through the spool first, so nothing is lost while
the server is unreachable or the collector restarts.  A spool is a directory of segment files,
each named after the sequence number of its first record and holding records back to back:

    record = length (uint32 LE) | crc32 of the payload (uint32 LE) | seq (int64 LE) | payload

Records are appended to the newest segment; a new segment starts when it would exceed
``segment_bytes``.  Acknowledged records are forgotten a segment at a time (a segment is
deleted once all its records are acknowledged), which is also the unit of dropping: when an
append would exceed ``limit_bytes``, the oldest segments go first and their unacknowledged
records are counted in ``dropped``.  The newest segment is never deleted, so the highest
sequence number ever assigned survives on disk and numbering never goes back.

Durability (``fsync_interval``): 0 syncs every append before it returns; a positive interval
leaves it to the owner to call ``sync`` that often (the Uplink's sender thread does, so the
capture loop never waits for the disk); None leaves it to the kernel.  A crash can tear the last
record; reopening keeps every whole record before it (CRC-checked) and truncates the rest.

``spool.json`` keeps what the records cannot tell: the acknowledged sequence number, the dropped
count, the collector id the directory belongs to, and ``seq_base``, the offset from the spool's
own numbering (from 0 in a fresh directory) to the numbers the server knows (set once, when a
fresh spool first meets the server, so that a collector whose spool was wiped does not reuse
numbers the server already holds).

A Spool is thread-safe.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from flowscope.errors import FlowscopeError

__all__ = ["Spool", "SpoolError"]

log = logging.getLogger("flowscope.stream")

RECORD = struct.Struct("<IIq")  # payload length, crc32(payload), seq
SEGMENT_SUFFIX = ".seg"
STATE_FILE = "spool.json"
STATE_SAVE_INTERVAL = 1.0  # seconds between state writes caused by acknowledgements


class SpoolError(FlowscopeError):
    """The spool directory cannot be used as it is."""


@dataclass(slots=True)
class _Segment:
    path: Path
    first_seq: int
    last_seq: int
    size: int  # bytes in the file


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


class Spool:
    def __init__(self, directory: str | Path, limit_bytes: int = 1 << 30, *,
                 collector_id: str | None = None, segment_bytes: int | None = None,
                 fsync_interval: float | None = 1.0) -> None:
        self.directory = Path(directory)
        self.limit_bytes = int(limit_bytes)
        # at least two segments fit, so dropping the oldest always makes room
        self.segment_bytes = max(1, min(segment_bytes or 64 << 20, limit_bytes // 16 if
                                        segment_bytes is None else limit_bytes // 2))
        self.fsync_interval = fsync_interval
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SpoolError(f"spool directory {self.directory}: cannot create it: "
                             f"{e.strerror}") from None
        state = self._load_state()
        if collector_id is not None and state.get("collector_id", collector_id) != collector_id:
            raise SpoolError(f"spool directory {self.directory} belongs to collector "
                             f"{state['collector_id']!r}, not {collector_id!r}; give each "
                             "collector its own spool directory")
        self.collector_id = collector_id or state.get("collector_id")
        self.acked: int = state.get("acked", -1)  # highest local seq acknowledged
        self.dropped: int = state.get("dropped", 0)  # records dropped because the spool was full
        self.seq_base: int | None = state.get("seq_base")  # local seq + seq_base = server's seq
        self._segments: list[_Segment] = []
        self._seqs: list[int] = []  # every record held, in order
        self._where: list[tuple[_Segment, int, int]] = []  # (segment, payload offset, length)
        self._recover()
        last = self._seqs[-1] if self._seqs else -1
        self.next_seq: int = max(last + 1, state.get("next_seq", 0), self.acked + 1)
        self._active = None if not self._segments else open(self._segments[-1].path, "ab")  # noqa: SIM115
        self._dirty: set[Path] = set()
        self._state_saved = time.monotonic()
        if not (self.directory / STATE_FILE).exists():
            self._save_state(durable=False)  # claims the directory for this collector

    # -- opening ---------------------------------------------------------------------------

    def _load_state(self) -> dict:
        path = self.directory / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("spool %s: ignoring unreadable %s (%s)", self.directory, STATE_FILE, e)
            return {}
        return state if isinstance(state, dict) else {}

    def _recover(self) -> None:
        """Index every whole record; truncate a torn tail (a crash mid-append)."""
        paths = sorted(self.directory.glob("*" + SEGMENT_SUFFIX))
        for n, path in enumerate(paths):
            data = path.read_bytes()
            check_crc = n == len(paths) - 1  # only the newest segment can have a torn tail
            pos, first, last = 0, None, None
            while pos + RECORD.size <= len(data):
                length, crc, seq = RECORD.unpack_from(data, pos)
                end = pos + RECORD.size + length
                payload = data[pos + RECORD.size : end]
                if end > len(data) or (check_crc and zlib.crc32(payload) != crc):
                    break
                if last is not None and seq <= last:
                    break
                first = seq if first is None else first
                last = seq
                pos = end
            if pos < len(data):
                log.warning("spool %s: %s ends with %d bytes of a torn record; truncated",
                            self.directory, path.name, len(data) - pos)
                with open(path, "r+b") as f:
                    f.truncate(pos)
            if first is None or last is None:
                path.unlink()
                continue
            segment = _Segment(path, first, last, pos)
            self._segments.append(segment)
            pos = 0
            while pos < segment.size:
                length, _, seq = RECORD.unpack_from(data, pos)
                self._seqs.append(seq)
                self._where.append((segment, pos + RECORD.size, length))
                pos += RECORD.size + length

    # -- writing ---------------------------------------------------------------------------

    def append(self, payload: bytes) -> int:
        """Queue one encoded batch; its sequence number (local numbering)."""
        size = RECORD.size + len(payload)
        if size > self.limit_bytes:
            raise SpoolError(f"a {len(payload)}-byte batch does not fit in the spool's limit of "
                             f"{self.limit_bytes} bytes; raise the limit")
        with self._lock:
            seq = self.next_seq
            if self._active is None or self._segments[-1].size + size > self.segment_bytes:
                self._start_segment(seq)
            self._make_room(size)
            segment = self._segments[-1]
            assert self._active is not None
            self._active.write(RECORD.pack(len(payload), zlib.crc32(payload), seq))
            self._active.write(payload)
            self._active.flush()
            self._seqs.append(seq)
            self._where.append((segment, segment.size + RECORD.size, len(payload)))
            segment.size += size
            segment.last_seq = seq
            self.next_seq = seq + 1
            self._dirty.add(segment.path)
        if self.fsync_interval == 0:
            self.sync()
        return seq

    def _start_segment(self, first_seq: int) -> None:
        if self._active is not None:
            self._active.close()
        path = self.directory / _segment_name(first_seq)
        self._active = open(path, "wb")  # noqa: SIM115
        self._segments.append(_Segment(path, first_seq, first_seq - 1, 0))
        self._dirty.add(self.directory)  # the new directory entry

    def _make_room(self, size: int) -> None:
        """Drop the oldest segments (never the newest) until ``size`` more bytes fit."""
        used = sum(s.size for s in self._segments)
        while used + size > self.limit_bytes and len(self._segments) > 1:
            oldest = self._segments[0]
            lost = sum(1 for seq in self._seqs[: self._count(oldest)] if seq > self.acked)
            self.dropped += lost
            if lost:
                log.warning("spool %s full (%d bytes): dropped %d unacknowledged batches, "
                            "seq %d-%d", self.directory, self.limit_bytes, lost,
                            max(oldest.first_seq, self.acked + 1), oldest.last_seq)
            used -= oldest.size
            self._forget_oldest()

    def _count(self, segment: _Segment) -> int:
        return bisect.bisect_right(self._seqs, segment.last_seq) - bisect.bisect_left(
            self._seqs, segment.first_seq)

    def _forget_oldest(self) -> None:
        oldest = self._segments.pop(0)
        n = self._count(oldest)
        del self._seqs[:n]
        del self._where[:n]
        self._dirty.discard(oldest.path)
        self._dirty.add(self.directory)
        oldest.path.unlink(missing_ok=True)

    def lost(self, batches: int) -> None:
        """Count batches that never made it into the spool (an append failed)."""
        with self._lock:
            self.dropped += batches

    def sync(self) -> None:
        """Make every append so far durable (fsync), without holding the lock meanwhile."""
        with self._lock:
            fds = []
            for path in self._dirty:
                try:
                    fds.append(os.open(path, os.O_RDONLY))
                except FileNotFoundError:  # dropped meanwhile
                    pass
            self._dirty.clear()
        for fd in fds:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # -- reading and acknowledging ---------------------------------------------------------

    def read_after(self, seq: int) -> tuple[int, bytes] | None:
        """The first record with a sequence number above ``seq``, or None if there is none."""
        with self._lock:
            while True:
                i = bisect.bisect_right(self._seqs, seq)
                if i == len(self._seqs):
                    return None
                segment, offset, length = self._where[i]
                with open(segment.path, "rb") as f:
                    f.seek(offset - RECORD.size)
                    header = f.read(RECORD.size)
                    payload = f.read(length)
                if len(payload) == length and zlib.crc32(payload) == RECORD.unpack(header)[1]:
                    return self._seqs[i], payload
                log.error("spool %s: record seq %d in %s is corrupt; skipped",
                          self.directory, self._seqs[i], segment.path.name)
                self.dropped += 1
                seq = self._seqs[i]

    def ack(self, seq: int) -> None:
        """Every record up to ``seq`` is acknowledged: forget the segments wholly acknowledged."""
        with self._lock:
            if seq <= self.acked:
                return
            self.acked = seq
            while len(self._segments) > 1 and self._segments[0].last_seq <= seq:
                self._forget_oldest()
            if time.monotonic() - self._state_saved > STATE_SAVE_INTERVAL:
                self._save_state(durable=False)

    def backlog(self) -> tuple[int, int]:
        """(batches, payload bytes) held and not yet acknowledged."""
        with self._lock:
            i = bisect.bisect_right(self._seqs, self.acked)
            return len(self._seqs) - i, sum(w[2] for w in self._where[i:])

    def first_pending(self) -> int:
        """The sequence number of the oldest unacknowledged record (next_seq if none)."""
        with self._lock:
            i = bisect.bisect_right(self._seqs, self.acked)
            return self._seqs[i] if i < len(self._seqs) else self.next_seq

    # -- state -----------------------------------------------------------------------------

    def set_seq_base(self, base: int) -> None:
        """Fix the offset to the server's numbering; durable when this returns."""
        with self._lock:
            self.seq_base = base
            self._save_state(durable=True)

    def _save_state(self, durable: bool) -> None:
        state = {"collector_id": self.collector_id, "seq_base": self.seq_base,
                 "acked": self.acked, "dropped": self.dropped, "next_seq": self.next_seq}
        path = self.directory / STATE_FILE
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._state_saved = time.monotonic()

    def close(self) -> None:
        """Sync everything and record the state; the spool cannot be used afterwards."""
        self.sync()
        with self._lock:
            if self._active is not None:
                self._active.close()
                self._active = None
            self._save_state(durable=True)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
