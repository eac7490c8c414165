"""Reading a byte stream in large chunks, and the ledger of input problems.

Files, gzip members and stdin are all read the same way: ``readinto`` fills a fresh chunk
after the unconsumed tail of the previous one, so a record never straddles two chunks and
each batch owns the chunk it points into.  Memory stays bounded by the chunk size.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

CHUNK_BYTES = 16 << 20
READ_BYTES = 1 << 20
MAX_RECORD = 8 << 20  # no capture writer emits a larger frame; a bigger length is corruption


@dataclass
class Problem:
    source: str
    where: int  # byte offset in the (decompressed) input, or frame number for decode errors
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.source}: byte {self.where}: {self.code}: {self.detail}"


@dataclass
class Problems:
    """Everything wrong with the input, counted and located; nothing is dropped silently."""

    items: list[Problem] = field(default_factory=list)

    def add(self, source: str, where: int, code: str, detail: str) -> None:
        self.items.append(Problem(source, where, code, detail))

    def __len__(self) -> int:
        return len(self.items)


class ChunkReader:
    def __init__(self, stream: io.BufferedIOBase, chunk_bytes: int = CHUNK_BYTES):
        self._stream = stream
        self._chunk_bytes = chunk_bytes
        self._tail = np.empty(0, np.uint8)
        self.position = 0  # stream offset of the first unconsumed byte
        self.error: Exception | None = None

    def read_exact(self, n: int) -> bytes:
        data = self._stream.read(n)
        if data is None or len(data) < n:
            raise EOFError
        self.position += n
        return data

    def _fill(self, chunk: np.ndarray, start: int) -> int:
        view = chunk.data[start:]
        got = start
        while got < chunk.shape[0]:
            try:
                # at most 1 MiB per call: a stream that fails mid-call loses no more
                n = self._stream.readinto(view[got - start : got - start + READ_BYTES])
            except (OSError, EOFError, ValueError) as e:  # e.g. a cut gzip stream
                self.error = e  # raised once the bytes read before it are used
                break
            if not n:
                break
            got += n
        return got

    def chunks(self) -> Iterator[tuple[np.ndarray, int]]:
        """Yield (chunk, stream offset of chunk[0]); the caller reports how much of each it
        used with :meth:`consumed`; the rest is carried into the next chunk."""
        while True:
            carry = self._tail.shape[0]
            chunk = np.empty(max(self._chunk_bytes, 2 * carry), np.uint8)
            chunk[:carry] = self._tail
            end = self._fill(chunk, carry)
            if end == carry:  # nothing new: end of stream
                if self.error is not None:
                    raise self.error
                return
            self._used = 0
            yield chunk[:end], self.position
            self._tail = chunk[self._used : end]
            self.position += self._used
            if self.error is not None:
                raise self.error

    def consumed(self, n: int) -> None:
        self._used = n

    def leftover(self) -> int:
        return int(self._tail.shape[0])
