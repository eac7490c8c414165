"""PacketBatch: the unit every stage passes on — one byte buffer plus NumPy columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class PacketBatch:
    buf: np.ndarray  # uint8: the captured bytes of every frame in the batch
    offset: np.ndarray  # int64: where each frame starts in buf
    caplen: np.ndarray  # int32: bytes captured
    wirelen: np.ndarray  # int32: bytes on the wire
    ts_ns: np.ndarray  # int64: capture time, ns since the Unix epoch
    linktype: np.ndarray  # int32: LINKTYPE_* of each frame (pcapng mixes interfaces)
    frame: np.ndarray  # int64: 1-based position in the input

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    def take(self, index: np.ndarray) -> PacketBatch:
        """The frames at ``index``, sharing this batch's buffer."""
        return PacketBatch(self.buf, self.offset[index], self.caplen[index],
                           self.wirelen[index], self.ts_ns[index], self.linktype[index],
                           self.frame[index])

    def frame_bytes(self, i: int) -> bytes:
        o = int(self.offset[i])
        return self.buf[o : o + int(self.caplen[i])].tobytes()
