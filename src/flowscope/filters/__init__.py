"""Filters: which mirrored frames to keep, and how much of each — a switch's rules in software.

A :class:`Selector` combines a filter expression (:mod:`.expr`, tcpdump's primitives plus
mirror fields), switch-style UDF rules (:mod:`.udf`) or a named preset (:mod:`.presets`),
1-in-N sampling and slicing (:mod:`.sampling`).  The live collector and the software mirror
source call it on every decoded batch::

    sel = Selector("tcp port 443", udf=["l4+12=0x0002/0x0002"], sample=10, snaplen=128)
    batch, rows = sel.apply(batch, rows)   # filter, then sample, then slice
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.decode import DecodeConfig, decode
from flowscope.errors import FlowscopeError
from flowscope.filters.errors import FilterSyntaxError
from flowscope.filters.expr import Columns, Filter, parse_filter
from flowscope.filters.presets import PRESETS, Preset, preset
from flowscope.filters.presets import preset as find_preset
from flowscope.filters.sampling import Sampler, Slicer
from flowscope.filters.udf import MAX_RULES, FrameBases, UdfRule, match_rules, parse_rule

__all__ = ["Selector", "Filter", "FilterSyntaxError", "UdfRule", "FrameBases", "Preset",
           "PRESETS", "parse_filter", "parse_rule", "preset"]

# Columns the pipeline fills after decoding (mirror accounting); kept when a sliced frame
# is decoded again.
_AFTER_DECODE = ("stream", "orig_ts", "mirror_gaps")


class Selector:
    """Filter AND UDF rules AND preset, then 1-in-``sample``, then slice to ``snaplen``.

    ``mask`` only evaluates (no counting); ``apply`` counts: ``matched`` frames passed the
    filter, ``filtered_out`` did not, ``sampled_out`` matched but were not sampled,
    ``sliced`` were cut.  ``config`` is the decoder configuration used to decode sliced
    frames again, so the rows returned describe the copy that is kept.
    """

    def __init__(self, expr: str | None = None, udf: Sequence[str] = (),
                 preset: str | None = None, sample: int = 1, snaplen: int = 0, *,
                 config: DecodeConfig | None = None) -> None:
        if udf is None:  # tolerated: an unset CLI option
            udf = ()
        elif isinstance(udf, str):
            udf = (udf,)
        self.expr = expr if expr is not None and expr.strip() else None
        self.udf = tuple(udf)
        self.preset: Preset | None = find_preset(preset) if preset else None
        self.filter = Filter(self.expr) if self.expr is not None else None
        self.preset_filter = (Filter(self.preset.expr)
                              if self.preset is not None and self.preset.expr else None)
        self.rules: tuple[UdfRule, ...] = tuple(
            [parse_rule(r) for r in (self.preset.rules if self.preset else ())]
            + [parse_rule(r) for r in self.udf])
        if len(self.rules) > MAX_RULES:
            raise FlowscopeError(f"udf: {len(self.rules)} rules (preset included); a switch "
                                 f"ANDs at most {MAX_RULES}")
        if sample < 1:
            raise FlowscopeError(f"--sample {sample}: sample 1 in N needs N >= 1")
        if snaplen < 0:
            raise FlowscopeError(f"--snaplen {snaplen}: the length must be 0 (off) or more")
        self.sample = sample
        self.snaplen = snaplen
        self.sampler = Sampler(sample) if sample > 1 else None
        self.slicer = Slicer(snaplen) if snaplen > 0 else None
        self.config = config or DecodeConfig()
        self.matched = 0
        self.filtered_out = 0
        self.sampled_out = 0

    @property
    def sliced(self) -> int:
        return self.slicer.sliced if self.slicer is not None else 0

    @property
    def selects_all(self) -> bool:
        """True when nothing is filtered, sampled or sliced."""
        return (self.filter is None and self.preset is None and not self.rules
                and self.sampler is None and self.slicer is None)

    def mask(self, batch: PacketBatch, rows: np.ndarray) -> np.ndarray:
        """Which frames pass the filter, the UDF rules and the preset (no sampling)."""
        keep = np.ones(rows.shape[0], bool)
        if self.filter is not None or self.preset_filter is not None:
            cols = Columns(rows)
            for f in (self.filter, self.preset_filter):
                if f is not None:
                    keep &= f.mask(rows, cols)
        if self.rules:
            keep &= match_rules(self.rules, FrameBases(batch, rows))
        return keep

    def apply(self, batch: PacketBatch, rows: np.ndarray) -> tuple[PacketBatch, np.ndarray]:
        """The frames kept (filter, then sample, then slice): their batch and decoded rows.
        The rows are a copy; sliced frames are decoded again from the shortened copy."""
        keep = self.mask(batch, rows)
        index = np.flatnonzero(keep)
        self.matched += index.size
        self.filtered_out += rows.shape[0] - index.size
        if self.sampler is not None:
            sampled = self.sampler.keep(index.size)
            self.sampled_out += index.size - int(np.count_nonzero(sampled))
            index = index[sampled]
        kept_batch, kept_rows = batch.take(index), rows[index]
        if self.slicer is not None:
            kept_batch, cut = self.slicer.slice(kept_batch, kept_rows)
            if cut.any():
                again = decode(kept_batch.take(np.flatnonzero(cut)), self.config)
                for name in _AFTER_DECODE:
                    again[name] = kept_rows[name][cut]
                kept_rows[cut] = again
        return kept_batch, kept_rows

    def describe(self) -> str:
        """The rules as written, for capture metadata: ``filter: tcp; sample: 1-in-10``."""
        parts = []
        if self.expr is not None:
            parts.append(f"filter: {self.expr}")
        if self.preset is not None:
            parts.append(f"preset: {self.preset.name}")
        if self.udf:
            parts.append(f"udf: {' '.join(self.udf)}")
        if self.sampler is not None:
            parts.append(f"sample: 1-in-{self.sample}")
        if self.slicer is not None:
            parts.append(f"snaplen: {self.snaplen}")
        return "; ".join(parts) if parts else "all frames"
