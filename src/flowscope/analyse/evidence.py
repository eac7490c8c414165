"""Evidence: per-row lists of short sentences, rendered as one Arrow ``list<string>`` column.

Policy (:mod:`flowscope.analyse.verdicts`) says which sentence applies to which rows and with
which numbers, one sentence kind at a time: ``add(mask, template, *columns)``, where ``{}`` in
the template stands for a column's value.  A row's sentences keep the order they were added
in.  :meth:`Evidence.lists` then places every sentence (row offsets from the counts, each
kind going to the next free slot of its rows: no sort) and one compiled pass writes the text
straight into the Arrow buffers: template pieces copied, numbers printed in decimal.  No
Python string per row, and no text copied twice.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from flowscope.jit import njit

MAX_ARGS = 3  # numbers per sentence


@njit(inline="always", cache=True)
def _digits(v):  # pragma: no cover - compiled
    """Characters of v in decimal (with a minus sign if negative)."""
    size = 1 if v >= 0 else 2
    v = abs(v)
    while v >= 10:
        v //= 10
        size += 1
    return size


@njit(cache=True)
def render(template, args, text, piece_start, first_piece):  # pragma: no cover - compiled
    """Sentence i is template[i]: its pieces first_piece[t] .. first_piece[t + 1] - 1 (bytes
    text[piece_start[p]:piece_start[p + 1]]) with args[i, j] printed after piece j.  Returns
    the Arrow string offsets and data."""
    m = template.shape[0]
    offsets = np.empty(m + 1, np.int64)
    offsets[0] = 0
    for i in range(m):
        t = template[i]
        size = 0
        for p in range(first_piece[t], first_piece[t + 1]):
            size += piece_start[p + 1] - piece_start[p]
            if p + 1 < first_piece[t + 1]:
                size += _digits(args[i, p - first_piece[t]])
        offsets[i + 1] = offsets[i] + size
    data = np.empty(offsets[m], np.uint8)
    for i in range(m):
        t = template[i]
        at = offsets[i]
        for p in range(first_piece[t], first_piece[t + 1]):
            for b in range(piece_start[p], piece_start[p + 1]):
                data[at] = text[b]
                at += 1
            if p + 1 < first_piece[t + 1]:
                v = args[i, p - first_piece[t]]
                end = at + _digits(v)
                if v < 0:
                    data[at] = ord("-")
                    v = -v
                k = end - 1
                while True:  # digits from the last
                    data[k] = ord("0") + v % 10
                    v //= 10
                    k -= 1
                    if v == 0:
                        break
                at = end
    return offsets, data


class Evidence:
    """Sentences for ``n`` rows, added sentence kind by sentence kind."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rows: list[np.ndarray] = []
        self.args: list[np.ndarray] = []
        self.templates: list[str] = []

    def add(self, mask: np.ndarray, template: str, *columns: np.ndarray) -> None:
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return
        if template.count("{}") != len(columns) or len(columns) > MAX_ARGS:
            raise ValueError(f"{template!r} needs {template.count('{}')} columns")
        self.rows.append(rows)
        self.args.append(np.stack([np.asarray(c)[rows] for c in columns], axis=1)
                         if columns else np.zeros((rows.size, 0), np.int64))
        self.templates.append(template)

    def lists(self) -> pa.Array:
        counts = np.zeros(self.n, np.int64)
        for rows in self.rows:
            counts[rows] += 1
        offsets = np.zeros(self.n + 1, np.int32)
        np.cumsum(counts, out=offsets[1:])
        m = int(offsets[-1])
        # each sentence kind in turn goes to the next free slot of its rows' lists
        fill = offsets[:-1].astype(np.int64)
        template = np.empty(m, np.int32)
        args = np.zeros((m, MAX_ARGS), np.int64)
        for t, (rows, values) in enumerate(zip(self.rows, self.args, strict=True)):
            at = fill[rows]
            template[at] = t
            args[at, : values.shape[1]] = values
            fill[rows] += 1
        pieces = [piece.encode() for t in self.templates for piece in t.split("{}")]
        piece_start = np.zeros(len(pieces) + 1, np.int64)
        np.cumsum([len(p) for p in pieces], out=piece_start[1:])
        first_piece = np.zeros(len(self.templates) + 1, np.int64)
        np.cumsum([t.count("{}") + 1 for t in self.templates], out=first_piece[1:])
        text = np.frombuffer(b"".join(pieces) or b"\0", np.uint8)
        value_offsets, data = render(template, args, text, piece_start, first_piece)
        if data.size >= 1 << 31:
            raise OverflowError("evidence text over 2 GiB in one batch")
        values = pa.StringArray.from_buffers(m, pa.py_buffer(value_offsets.astype(np.int32)),
                                             pa.py_buffer(data))
        return pa.ListArray.from_buffers(pa.list_(pa.string()), self.n,
                                         [None, pa.py_buffer(offsets)], children=[values])
