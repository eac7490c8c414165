"""Decode: PacketBatch in, decoded columns (a DECODED structured array) out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.decode import geneve, vxlan
from flowscope.decode.columns import DECODED, allocate
from flowscope.decode.kernel import decode_batch

__all__ = ["DecodeConfig", "decode", "DECODED"]


@dataclass(frozen=True)
class DecodeConfig:
    vxlan_ports: tuple[int, ...] = vxlan.DEFAULT_PORTS
    geneve_ports: tuple[int, ...] = (geneve.DEFAULT_PORT,)
    max_tunnels: int = 4  # nesting limit (ERSPAN in VXLAN in Geneve ... counts 3)


def decode(batch: PacketBatch, config: DecodeConfig = DecodeConfig(),
           reuse: np.ndarray | None = None) -> np.ndarray:
    """Decoded rows for the batch; with ``reuse`` (a DECODED array at least as long), its
    memory is used instead of fresh pages, and the previous rows it held are overwritten."""
    n = len(batch)
    out = reuse[:n] if reuse is not None and reuse.shape[0] >= n else allocate(n)
    decode_batch(batch.buf, batch.offset, batch.caplen, batch.wirelen, batch.linktype, out,
                 np.asarray(config.vxlan_ports, np.int64),
                 np.asarray(config.geneve_ports, np.int64), config.max_tunnels)
    out["frame"] = batch.frame
    out["ts_ns"] = batch.ts_ns
    out["caplen"] = batch.caplen
    out["wirelen"] = batch.wirelen
    out["linktype"] = batch.linktype
    return out
