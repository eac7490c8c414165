"""The packet path wired once: sources -> decode -> mirror accounting, batch by batch.
The CLI commands and the library API both start here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from flowscope.analyse.mirrors import MirrorTracker
from flowscope.batch import PacketBatch
from flowscope.decode import DecodeConfig, decode
from flowscope.decode.codes import ERRORS
from flowscope.sources import Problems, read_captures


@dataclass
class PacketRun:
    """One pass over some captures: the decoded batches, and what was learnt on the way."""

    paths: list[str]
    config: DecodeConfig = field(default_factory=DecodeConfig)
    problems: Problems = field(default_factory=Problems)
    mirrors: MirrorTracker = field(default_factory=MirrorTracker)
    frames: int = 0
    error_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(ERRORS), np.int64))
    # Streaming consumers that finish with each batch's rows before asking for the next let
    # the decoder reuse one row buffer (no fresh pages to fault in per batch).
    reuse_rows: bool = False

    def batches(self) -> Iterator[tuple[PacketBatch, np.ndarray]]:
        spare: np.ndarray | None = None
        for batch in read_captures(self.paths, self.problems):
            rows = decode(batch, self.config, spare)
            if self.reuse_rows and (spare is None or spare.shape[0] < rows.shape[0]):
                spare = rows
            self.mirrors.update(rows)
            self.frames += len(batch)
            self.error_counts += np.bincount(rows["error"], minlength=len(ERRORS))
            yield batch, rows

    def error_summary(self) -> dict[str, int]:
        return {ERRORS[i]: int(n) for i, n in enumerate(self.error_counts) if i and n}


def decode_files(paths: Iterable[str], config: DecodeConfig | None = None) -> np.ndarray:
    """Every frame of the given captures, decoded (small inputs; for tests and notebooks)."""
    run = PacketRun(list(paths), config or DecodeConfig())
    parts = [rows for _, rows in run.batches()]
    from flowscope.decode.columns import DECODED

    return np.concatenate(parts) if parts else np.zeros(0, DECODED)
