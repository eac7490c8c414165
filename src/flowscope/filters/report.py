"""``flowscope match``: how many frames of a capture each switch rule would select.

Before a UDF/ACL rule goes onto a switch, run it over a capture of the same traffic: per
rule and for all of them ANDed, the frames matched and their share, and the first matching
frames with the 16-bit word each UDF rule saw — enough to see an offset that is off by two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.filters import Selector
from flowscope.filters.expr import Columns, Filter
from flowscope.filters.udf import FrameBases, UdfRule
from flowscope.sinks.arrow import ip_strings

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp"}


@dataclass
class RuleLine:
    rule: str  # as written (a filter expression or a UDF rule)
    source: str  # "filter", "udf" or "preset NAME"
    test: Filter | UdfRule
    matched: int = 0


@dataclass
class MatchReport:
    """Counts per rule and combined, and the first ``examples`` frames matching them all."""

    selector: Selector
    examples: int = 5
    frames: int = 0
    matched: int = 0
    lines: list[RuleLine] = field(default_factory=list)
    found: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        sel = self.selector
        if sel.filter is not None:
            self.lines.append(RuleLine(sel.filter.text, "filter", sel.filter))
        n_preset = len(sel.preset.rules) if sel.preset is not None else 0
        if sel.preset is not None and sel.preset_filter is not None:
            self.lines.append(RuleLine(sel.preset_filter.text, f"preset {sel.preset.name}",
                                       sel.preset_filter))
        for i, rule in enumerate(sel.rules):
            source = f"preset {sel.preset.name}" if sel.preset and i < n_preset else "udf"
            self.lines.append(RuleLine(str(rule), source, rule))

    def update(self, batch: PacketBatch, rows: np.ndarray) -> None:
        cols, bases = Columns(rows), FrameBases(batch, rows)
        combined = np.ones(rows.shape[0], bool)
        words: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for line in self.lines:
            if isinstance(line.test, UdfRule):
                word, present = words[line.rule] = line.test.words(bases)
                hit = present & ((word & np.uint16(line.test.mask))
                                 == np.uint16(line.test.value))
            else:
                hit = line.test.mask(rows, cols)
            line.matched += int(np.count_nonzero(hit))
            combined &= hit
        self.frames += rows.shape[0]
        self.matched += int(np.count_nonzero(combined))
        want = self.examples - len(self.found)
        if want > 0:
            index = np.flatnonzero(combined)[:want]
            if index.size:
                self._keep_examples(rows[index], {r: (w[index], p[index])
                                                  for r, (w, p) in words.items()})

    def _keep_examples(self, rows: np.ndarray, words: dict[str, tuple[np.ndarray, np.ndarray]]
                       ) -> None:
        src = ip_strings(rows["ipver"], rows["src"]).to_pylist()
        dst = ip_strings(rows["ipver"], rows["dst"]).to_pylist()
        for k in range(rows.shape[0]):
            r = rows[k]
            proto = int(r["proto"])
            self.found.append({
                "frame": int(r["frame"]), "ts": int(r["ts_ns"]) / 1e9,
                "proto": PROTO_NAMES.get(proto, proto if proto >= 0 else None),
                "src": src[k], "sport": int(r["sport"]) if r["sport"] >= 0 else None,
                "dst": dst[k], "dport": int(r["dport"]) if r["dport"] >= 0 else None,
                "words": {rule: (f"0x{int(w[k]):04x}" if p[k] else None)
                          for rule, (w, p) in words.items()},
            })

    # -- output -------------------------------------------------------------------------

    def rule_rows(self) -> list[dict[str, Any]]:
        counts = [(line.rule, line.source, line.matched) for line in self.lines]
        counts.append(("all of the above", "combined", self.matched))
        return [{"rule": rule, "source": source, "matched": matched, "frames": self.frames,
                 "percent": round(100.0 * matched / self.frames, 3) if self.frames else 0.0}
                for rule, source, matched in counts]

    def write_jsonl(self, out: TextIO) -> None:
        for row in self.rule_rows():
            out.write(json.dumps({"type": "rule", **row}) + "\n")
        for i, ex in enumerate(self.found, 1):
            out.write(json.dumps({"type": "example", "example": i, **ex}) + "\n")

    def write_table(self, out: TextIO) -> None:
        rows = self.rule_rows()
        w_rule = max(4, *(len(r["rule"]) for r in rows))
        w_src = max(6, *(len(r["source"]) for r in rows))
        out.write(f"{'rule':<{w_rule}}  {'source':<{w_src}}  {'matched':>9}  {'share':>8}\n")
        for r in rows:
            out.write(f"{r['rule']:<{w_rule}}  {r['source']:<{w_src}}  {r['matched']:>9,}  "
                      f"{r['percent']:>7.2f}%\n")
        out.write(f"{self.frames:,} frames\n")
        if not self.found:
            return
        rules = list(self.found[0]["words"])
        out.write(f"\nfirst {len(self.found)} matching frames:\n")
        widths = [max(len(r), 6) for r in rules]
        head = "".join(f"  {r:>{w}}" for r, w in zip(rules, widths, strict=True))
        out.write(f"{'frame':>8}  {'proto':<5}  {'source':<28}  {'destination':<28}{head}\n")
        for ex in self.found:
            cells = "".join(f"  {ex['words'][r] or '-':>{w}}"
                            for r, w in zip(rules, widths, strict=True))
            out.write(f"{ex['frame']:>8}  {str(ex['proto'] or '-'):<5}  "
                      f"{_endpoint(ex['src'], ex['sport']):<28}  "
                      f"{_endpoint(ex['dst'], ex['dport']):<28}{cells}\n")


def _endpoint(addr: str | None, port: int | None) -> str:
    if addr is None:
        return "-"
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
