"""AWS text flow logs -> partial :func:`~flowscope.flowlogs.connections.directions` rows, in one
pass over the bytes (a Numba kernel): the combiner in front of the SQL analysis.

The analysis is written once, in Ibis (:mod:`flowscope.flowlogs.connections`); its first stage,
``directions``, sums every record into its 5-tuple's row.  On a large text log that stage is
the cost of the whole run: DuckDB parses every field of every line as text, then hashes
address strings.  This kernel does the same sums for the records it can read exactly
(below), straight from the file's bytes, and leaves every other line to the SQL path, so the
two together give the rows ``directions`` gives (``tests/test_flowlogs_combine.py`` holds
them equal on generated logs).  What it reads itself (AWS VPC user guide, "Flow log
records"):

- ``log-status`` OK (or no such field), ``action`` ACCEPT or REJECT, ``reject-reason`` ``-``;
- addresses as canonical dotted IPv4 (``pkt-srcaddr``/``pkt-dstaddr`` ``-`` fall back to
  ``srcaddr``/``dstaddr``, as the SQL's coalesce does); ports 0-65535, protocol 0-255;
- numbers as plain decimal digits (``-`` not allowed: AWS writes numbers in OK records);
- fields separated by exactly one space, as AWS writes them.

Anything else (IPv6, NODATA/SKIPDATA, doubled spaces, a bad value, a repeated header) is a
"slow line": its number and byte range are returned, and the caller reads it the slow way
(and reports it if it is bad).  The direction of a record and the tuple's key follow the
SQL: ``a`` is the address that sorts first as text (the bytes are compared, not the
numbers), then the lower port.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from flowscope.flowlogs import aws_text
from flowscope.jit import njit

# roles of the fields the kernel reads; 0: skipped
(SRCADDR, DSTADDR, PKT_SRCADDR, PKT_DSTADDR, SRCPORT, DSTPORT, PROTOCOL, PACKETS, BYTES,
 START, END, ACTION, LOG_STATUS, TCP_FLAGS, INTERFACE_ID, REJECT_REASON) = range(1, 17)
ROLES = {"srcaddr": SRCADDR, "dstaddr": DSTADDR, "pkt-srcaddr": PKT_SRCADDR,
         "pkt-dstaddr": PKT_DSTADDR, "srcport": SRCPORT, "dstport": DSTPORT,
         "protocol": PROTOCOL, "packets": PACKETS, "bytes": BYTES, "start": START, "end": END,
         "action": ACTION, "log-status": LOG_STATUS, "tcp-flags": TCP_FLAGS,
         "interface-id": INTERFACE_ID, "reject-reason": REJECT_REASON}

MS_THRESHOLD = aws_text.MS_THRESHOLD  # larger start/end values are milliseconds
NONE = np.iinfo(np.int64).max  # "no value yet" of a minimum
MAX_INTERFACES = 1024  # distinct interface ids per file; lines of more are slow lines
SPACE, NEWLINE, CR, DASH = 32, 10, 13, 45

# a parsed record waiting in a batch: its key, slot, group, direction and values
(P_K1, P_K2, P_SLOT, P_GROUP, P_FROM_A, P_PACKETS, P_BYTES, P_START, P_END, P_FLAGS,
 P_ACTION, P_WIDTH) = range(12)
BATCH = 32  # records whose hash-table lookups are made together

# the kernel's stop reasons
DONE, TABLE_FULL, SLOW_FULL = 0, 1, 2

# a group's row (int64): its key (a<<32|b, then ap<<40|bp<<24|proto<<16|interface), records,
# records from a and from b, packets and bytes from a and from b, first start, last end,
# first close, first reject, flags OR-ed from a and from b, seen (1 rejected, 2 accepted).
# One row of 128 bytes: a record touches one slot and one row.
(K1, K2, RECORDS, XN, YN, XP, XB, YP, YB, FIRST, LAST, CLOSE, REJECT, XF, YF, SEEN,
 WIDTH) = range(17)


@njit(cache=True, inline="always")
def _ipv4(buf, s, e):  # type: ignore[no-untyped-def]
    """Canonical dotted IPv4 (no leading zeros, octets <= 255) -> (value, ok)."""
    value = np.uint32(0)
    octet, digits, dots = 0, 0, 0
    for i in range(s, e):
        c = buf[i]
        if c == 46:  # '.'
            if digits == 0 or dots == 3:
                return value, False
            value = np.uint32((value << np.uint32(8)) | np.uint32(octet))
            octet, digits = 0, 0
            dots += 1
        elif 48 <= c <= 57:
            if digits > 0 and octet == 0:  # a leading zero
                return value, False
            octet = octet * 10 + (c - 48)
            digits += 1
            if octet > 255:
                return value, False
        else:
            return value, False
    if digits == 0 or dots != 3:
        return value, False
    return np.uint32((value << np.uint32(8)) | np.uint32(octet)), True


@njit(cache=True, inline="always")
def _number(buf, s, e):  # type: ignore[no-untyped-def]
    """Plain decimal digits (at most 18) -> (value, ok)."""
    n = e - s
    if n == 0 or n > 18:
        return 0, False
    value = 0
    for i in range(s, e):
        c = buf[i]
        if c < 48 or c > 57:
            return 0, False
        value = value * 10 + (c - 48)
    return value, True


@njit(cache=True, inline="always")
def _before(buf, s1, e1, s2, e2):  # type: ignore[no-untyped-def]
    """-1, 0 or 1: the token [s1, e1) against [s2, e2) as text (bytes, shorter first on a
    common prefix: SQL's comparison of VARCHAR)."""
    n1, n2 = e1 - s1, e2 - s2
    for i in range(min(n1, n2)):
        c1, c2 = buf[s1 + i], buf[s2 + i]
        if c1 != c2:
            return -1 if c1 < c2 else 1
    return -1 if n1 < n2 else (1 if n1 > n2 else 0)


@njit(cache=True, inline="always")
def _is(buf, s, e, word):  # type: ignore[no-untyped-def]
    if e - s != word.size:
        return False
    for i in range(word.size):
        if buf[s + i] != word[i]:
            return False
    return True


@njit(cache=True, inline="always")
def _interface(buf, s, e, n, text, length):  # type: ignore[no-untyped-def]
    """The code of the interface id [s, e) among the ``n`` known (``n`` if new, then
    added; -1 if there is no room or it is too long)."""
    size = e - s
    for c in range(1, n):
        if length[c] == size:
            same = True
            for i in range(size):
                if text[c, i] != buf[s + i]:
                    same = False
                    break
            if same:
                return c
    if n >= length.size or size > text.shape[1]:
        return -1
    for i in range(size):
        text[n, i] = buf[s + i]
    length[n] = size
    return n


@njit(cache=True)
def _add(batch, m, slots, rows, groups):  # type: ignore[no-untyped-def]
    """Sum ``m`` parsed records (``batch``) into their groups; returns the group count.

    First every record's slot is read, then every slot's row, with no work in between: the
    cache misses of a batch overlap (the CPU has them in flight together) instead of
    coming one after another, each behind a line's parsing."""
    mask = slots.size - 1
    warm = 0
    for j in range(m):
        g = slots[batch[j, P_SLOT]]
        batch[j, P_GROUP] = g
    for j in range(m):
        g = batch[j, P_GROUP]
        if g >= 0:
            warm ^= rows[g, K1]
    batch[0, P_GROUP] = warm  # (kept: the loads above are not dead code)
    for j in range(m):
        # (2-D indexing throughout: a row view would cost a reference count per record)
        k1, k2, slot = batch[j, P_K1], batch[j, P_K2], batch[j, P_SLOT]
        while True:
            g = slots[slot]
            if g < 0:
                g = groups
                groups += 1
                slots[slot] = g
                for c in range(WIDTH):
                    rows[g, c] = 0
                rows[g, K1] = k1
                rows[g, K2] = k2
                rows[g, FIRST] = NONE
                rows[g, LAST] = -NONE
                rows[g, CLOSE] = NONE
                rows[g, REJECT] = NONE
                break
            if rows[g, K1] == k1 and rows[g, K2] == k2:
                break
            slot = (slot + 1) & mask
        start, stop, fl = batch[j, P_START], batch[j, P_END], batch[j, P_FLAGS]
        rows[g, RECORDS] += 1
        if batch[j, P_FROM_A]:
            rows[g, XN] += 1
            rows[g, XP] += batch[j, P_PACKETS]
            rows[g, XB] += batch[j, P_BYTES]
            rows[g, XF] |= fl
        else:
            rows[g, YN] += 1
            rows[g, YP] += batch[j, P_PACKETS]
            rows[g, YB] += batch[j, P_BYTES]
            rows[g, YF] |= fl
        rows[g, FIRST] = min(rows[g, FIRST], start)
        rows[g, LAST] = max(rows[g, LAST], stop)
        action = batch[j, P_ACTION]
        if action == 1:
            rows[g, SEEN] |= 1
            rows[g, REJECT] = min(rows[g, REJECT], start)
        elif action == 0:
            rows[g, SEEN] |= 2
            if fl & 5:  # FIN or RST while accepted
                rows[g, CLOSE] = min(rows[g, CLOSE], stop)
    return groups


@njit(cache=True)
def scan(buf, pos, line, groups, n_ifaces, roles, slots, rows, iface_text, iface_len, words,
         slow_line, slow_span):  # type: ignore[no-untyped-def]
    """Sum the records from byte ``pos`` (line number ``line``) into the groups.

    ``roles``: the role of each field of the format.  ``slots``: the hash table (-1 empty,
    else a group), ``rows``: the ``groups`` so far (see K1 ... SEEN); the ``n_ifaces``
    distinct interface ids so far in ``iface_text`` (one per row) and ``iface_len`` (row 0
    unused: code 0 is null); ``words``: b'ACCEPTREJECTOK'.  Slow lines: number and
    [start, end) into ``slow_line``/``slow_span``.  ``buf`` holds whole lines, the last one
    ending with a newline too (:func:`_blocks`): fields are scanned to the next byte at or
    below the space, with no bounds check.

    Returns (stop reason, next pos, next line, groups, interfaces, slow lines, records,
    blank lines)."""
    n = buf.size
    width = roles.size
    mask = slots.size - 1
    capacity = rows.shape[0]
    accept, reject, ok = words[0:6], words[6:12], words[12:14]
    slow = 0
    records = 0
    blank = 0
    batch = np.empty((BATCH, P_WIDTH), np.int64)
    pending = 0
    while pos < n:
        if groups + pending >= capacity:  # the batch could fill the table
            groups = _add(batch, pending, slots, rows, groups)
            pending = 0
            if groups >= capacity:
                return TABLE_FULL, pos, line, groups, n_ifaces, slow, records, blank
        if slow >= slow_line.size:
            groups = _add(batch, pending, slots, rows, groups)
            return SLOW_FULL, pos, line, groups, n_ifaces, slow, records, blank
        s = pos
        line += 1
        src_s = src_e = dst_s = dst_e = psrc_s = psrc_e = pdst_s = pdst_e = -1
        sport = dport = proto = 0
        packets = nbytes = start = stop = 0
        fl = 0
        action = -1  # 0 accept, 1 reject
        iface = 0
        good = True
        f = 0
        i = s
        # field by field: [fs, fe) up to the next space; the line ends at a newline
        while True:
            fs = i
            while buf[i] > SPACE:  # (the block ends with a newline: no bounds to check)
                i += 1
            fe = i
            c = buf[i]
            last = c == NEWLINE
            if c == CR and buf[i + 1] == NEWLINE:  # CRLF
                last = True
                i += 1
            stray = not last and c != SPACE  # a control byte (tab, NUL ...) in a field
            if f == 0 and last and fe == fs:
                break  # a blank line
            r = roles[f] if f < width else 0
            if fe <= fs or f >= width:  # an empty field (doubled spaces), or too many
                good = False
            elif r == 0:
                pass
            elif r == SRCADDR:
                src_s, src_e = fs, fe
            elif r == DSTADDR:
                dst_s, dst_e = fs, fe
            elif r == PKT_SRCADDR:
                if not (fe - fs == 1 and buf[fs] == DASH):
                    psrc_s, psrc_e = fs, fe
            elif r == PKT_DSTADDR:
                if not (fe - fs == 1 and buf[fs] == DASH):
                    pdst_s, pdst_e = fs, fe
            elif r == ACTION:
                if _is(buf, fs, fe, accept):
                    action = 0
                elif _is(buf, fs, fe, reject):
                    action = 1
                else:
                    good = False
            elif r == LOG_STATUS:
                good = _is(buf, fs, fe, ok)
            elif r == REJECT_REASON:
                good = fe - fs == 1 and buf[fs] == DASH
            elif r == INTERFACE_ID:
                if not (fe - fs == 1 and buf[fs] == DASH):
                    iface = _interface(buf, fs, fe, n_ifaces, iface_text, iface_len)
                    if iface == n_ifaces:
                        n_ifaces += 1
                    good = iface >= 0
            else:
                v, good = _number(buf, fs, fe)
                if r == SRCPORT:
                    sport = v
                    good = good and v <= 65535
                elif r == DSTPORT:
                    dport = v
                    good = good and v <= 65535
                elif r == PROTOCOL:
                    proto = v
                    good = good and v <= 255
                elif r == PACKETS:
                    packets = v
                elif r == BYTES:
                    nbytes = v
                elif r == START:
                    start = v // 1000 if v > MS_THRESHOLD else v
                elif r == END:
                    stop = v // 1000 if v > MS_THRESHOLD else v
                elif r == TCP_FLAGS:
                    good = good and v <= 2147483647
                    fl = v
            f += 1
            if stray:
                good = False
            if last:
                break
            i += 1
            if not good:  # the rest of the line, unread
                while i < n and buf[i] != NEWLINE:
                    i += 1
                fe = i
                if fe > s and buf[fe - 1] == CR:
                    fe -= 1
                break
        pos = i + 1
        if f == 0:
            blank += 1
            continue
        if good and f == width:
            if psrc_s >= 0:
                src_s, src_e = psrc_s, psrc_e
            if pdst_s >= 0:
                dst_s, dst_e = pdst_s, pdst_e
            src, ok1 = _ipv4(buf, src_s, src_e)
            dst, ok2 = _ipv4(buf, dst_s, dst_e)
            good = ok1 and ok2
        else:
            good = False
        if not good:
            slow_line[slow] = line
            slow_span[slow, 0] = s
            slow_span[slow, 1] = fe
            slow += 1
            continue
        order = _before(buf, src_s, src_e, dst_s, dst_e)
        from_a = order < 0 or (order == 0 and sport <= dport)
        if from_a:
            k1 = (np.int64(src) << 32) | np.int64(dst)
            k2 = (sport << 40) | (dport << 24)
        else:
            k1 = (np.int64(dst) << 32) | np.int64(src)
            k2 = (dport << 40) | (sport << 24)
        k2 |= (proto << 16) | iface
        h = k1 * -7046029254386353131 + k2 * -4417276706812531889
        batch[pending, P_K1] = k1
        batch[pending, P_K2] = k2
        batch[pending, P_SLOT] = (h ^ (h >> 29)) & mask
        batch[pending, P_FROM_A] = from_a
        batch[pending, P_PACKETS] = packets
        batch[pending, P_BYTES] = nbytes
        batch[pending, P_START] = start
        batch[pending, P_END] = stop
        batch[pending, P_FLAGS] = fl
        batch[pending, P_ACTION] = action
        pending += 1
        records += 1
        if pending == BATCH:
            groups = _add(batch, pending, slots, rows, groups)
            pending = 0
    groups = _add(batch, pending, slots, rows, groups)
    return DONE, pos, line, groups, n_ifaces, slow, records, blank


@njit(cache=True, inline="always")
def _dotted(v, data, at):  # type: ignore[no-untyped-def]
    """An IPv4 address (uint32) as dotted text into ``data`` from ``at``; returns the end."""
    for shift in (24, 16, 8, 0):
        octet = (v >> shift) & 255
        if octet >= 100:
            data[at] = 48 + octet // 100
            at += 1
        if octet >= 10:
            data[at] = 48 + octet // 10 % 10
            at += 1
        data[at] = 48 + octet % 10
        at += 1
        if shift:
            data[at] = 46
            at += 1
    return at


@njit(cache=True)
def columns(rows, n, text, offsets, ints, longs, valid):  # type: ignore[no-untyped-def]
    """The first ``n`` groups as the columns of directions rows, in one pass over the rows
    (no transposed copy): ``a`` and ``b`` as dotted text (``text`` [2, n * 15] and
    ``offsets`` [2, n + 1], int32); ``ints`` [6, n] int32: ap, bp, proto, interface code,
    x flags, y flags; ``longs`` [9, n]: records, x packets, x bytes,
    y packets, y bytes, first, last, close, reject; ``valid`` [6, n] (bytes): x side, y
    side, close, reject, rejected, accepted.  Returns the text lengths."""
    at_a = 0
    at_b = 0
    for g in range(n):
        k1 = rows[g, K1]
        k2 = rows[g, K2]
        at_a = _dotted((k1 >> 32) & 0xFFFFFFFF, text[0], at_a)
        offsets[0, g + 1] = at_a
        at_b = _dotted(k1 & 0xFFFFFFFF, text[1], at_b)
        offsets[1, g + 1] = at_b
        ints[0, g] = (k2 >> 40) & 0xFFFF
        ints[1, g] = (k2 >> 24) & 0xFFFF
        ints[2, g] = (k2 >> 16) & 0xFF
        ints[3, g] = k2 & 0xFFFF
        ints[4, g] = rows[g, XF]
        ints[5, g] = rows[g, YF]
        longs[0, g] = rows[g, RECORDS]
        longs[1, g] = rows[g, XP]
        longs[2, g] = rows[g, XB]
        longs[3, g] = rows[g, YP]
        longs[4, g] = rows[g, YB]
        longs[5, g] = rows[g, FIRST]
        longs[6, g] = rows[g, LAST]
        longs[7, g] = rows[g, CLOSE]
        longs[8, g] = rows[g, REJECT]
        valid[0, g] = rows[g, XN] > 0
        valid[1, g] = rows[g, YN] > 0
        valid[2, g] = rows[g, CLOSE] != NONE
        valid[3, g] = rows[g, REJECT] != NONE
        valid[4, g] = (rows[g, SEEN] & 1) != 0
        valid[5, g] = (rows[g, SEEN] & 2) != 0
    return at_a, at_b


# --- the driver: a file in blocks of whole lines through the kernel, groups to Arrow ---

BLOCK = 8 << 20  # bytes read per block (one buffer, reused; each page of it is a fault)
SLOW_BLOCK = 1 << 16  # slow lines noted per kernel call
GROUPS = 1 << 21  # groups held before they are handed on as partial rows (bounded memory)
REQUIRED = ("srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets", "bytes",
            "start", "end")
MOSTLY_SLOW = 1000  # slow lines, over half of the first block: the SQL path reads it all
WORDS = np.frombuffer(b"ACCEPTREJECTOK", np.uint8).copy()


@dataclass
class Combined:
    """What the kernel made of one text log."""

    tables: list[pa.Table]  # partial directions rows (one per full hash table, then the rest)
    slow: str | None  # a text log (with header) of the lines left to the SQL path
    lines: np.ndarray  # their line numbers in the original
    records: int = 0
    blank: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def _leave(out_file: BinaryIO, block: np.ndarray, spans: np.ndarray, lines: np.ndarray,
           width: int, out: Combined) -> np.ndarray:
    """Slow lines into the file the SQL path reads; returns the numbers of those written.
    A line with an empty field (a leading, trailing or doubled space) is re-split on its
    spaces first: written with single spaces if its values fill the format, else reported
    here (``13 fields where the format has 14``), never read into the wrong fields (a
    trailing space makes the count right for the CSV reader)."""
    data = block.data
    kept = []
    for (s, e), line in zip(spans.tolist(), lines.tolist(), strict=True):
        text = bytes(data[s:e])
        if b"  " in text or text.startswith(b" ") or text.endswith(b" "):
            parts = [p for p in text.split(b" ") if p]
            if len(parts) != width:
                if parts:
                    out.problems.append((line, f"{len(parts)} fields where the format has "
                                               f"{width}"))
                continue
            text = b" ".join(parts)
        out_file.write(text + b"\n")
        kept.append(line)
    return np.array(kept, np.int64)


def usable(names: tuple[str, ...]) -> bool:
    """Whether the kernel reads this format (else the SQL path reads the whole file)."""
    return all(n in names for n in REQUIRED)


def _blocks(stream: BinaryIO, size: int = BLOCK) -> Iterator[np.ndarray]:
    """The stream in blocks of whole lines, each ending with a newline (one is added after a
    last line without); each block is only valid until the next is asked for."""
    buf = np.empty(size, np.uint8)
    filled = 0
    while True:
        n = stream.readinto(buf.data[filled:])  # type: ignore[attr-defined]
        if not n:
            if filled:  # (there is room: a full buffer was cut at its last newline)
                if buf[filled - 1] != NEWLINE:
                    buf[filled] = NEWLINE
                    filled += 1
                yield buf[:filled]
            return
        filled += n
        if filled < buf.size:
            continue
        newlines = np.flatnonzero(buf[max(0, filled - (1 << 20)):filled] == NEWLINE)
        if not newlines.size:
            newlines = np.flatnonzero(buf[:filled] == NEWLINE)
            if not newlines.size:  # one line longer than the buffer
                buf = np.concatenate([buf, np.empty(buf.size, np.uint8)])
                continue
        else:
            newlines += max(0, filled - (1 << 20))
        cut = int(newlines[-1]) + 1
        yield buf[:cut]
        rest = filled - cut
        buf[:rest] = buf[cut:filled].copy()
        filled = rest


class _Groups:
    """The kernel's hash table and group columns."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.reset()

    def reset(self) -> None:
        c = self.capacity
        self.slots = np.full(2 * c, -1, np.int32)
        self.rows = np.empty((c, WIDTH), np.int64)
        self.n = 0


def combine(source: str, names: tuple[str, ...], header: bool, workdir: str,
            spill: Callable[[pa.Table], None] | None = None) -> Combined | None:
    """Read the text log ``source`` (plain or gzip) with the kernel.  ``None`` when the
    kernel does not read this format, or when most of the first block are slow lines (IPv6
    logs, say): the SQL path reads such a file whole, faster than line by line.

    ``spill``: where the rows of a full hash table go (the engine's storage, which spills
    to disk), so memory holds one table however many connections the log has; without it
    they are kept in ``tables``."""
    if not usable(names):
        return None
    roles = np.array([ROLES.get(n, 0) for n in names], np.int64)
    present = set(names)
    _, stream = aws_text._open(source)
    # about 100 bytes a record, 10 to 1 in gzip: at most one group a record
    estimate = os.path.getsize(source) // (10 if isinstance(stream, gzip.GzipFile) else 100)
    groups = _Groups(min(GROUPS, 1 << max(12, int(estimate).bit_length())))
    iface_text = np.zeros((MAX_INTERFACES, 128), np.uint8)
    iface_len = np.zeros(MAX_INTERFACES, np.int64)
    n_ifaces = 1
    slow_line = np.empty(SLOW_BLOCK, np.int64)
    slow_span = np.empty((SLOW_BLOCK, 2), np.int64)
    out = Combined([], None, np.empty(0, np.int64))
    slow_lines: list[np.ndarray] = []
    slow_file = None
    line = 0
    first = True
    try:
        for block in _blocks(stream):
            pos = 0
            if first and header:  # the header line
                nl = np.flatnonzero(block == NEWLINE)
                pos = int(nl[0]) + 1 if nl.size else block.size
                line = 1
            while True:
                reason, pos, line, groups.n, n_ifaces, slow, records, blank = scan(
                    block, pos, line, groups.n, n_ifaces, roles, groups.slots, groups.rows,
                    iface_text, iface_len, WORDS, slow_line, slow_span)
                out.records += records
                out.blank += blank
                if slow:
                    if first and slow > (records + slow) // 2 and slow >= MOSTLY_SLOW:
                        return None  # mostly slow lines: the SQL path reads it all
                    if slow_file is None:
                        slow_file = open(os.path.join(workdir, f"slow-{len(os.listdir(workdir))}"
                                                      ".log"), "wb")  # noqa: SIM115
                        slow_file.write(" ".join(names).encode() + b"\n")
                    slow_lines.append(_leave(slow_file, block, slow_span[:slow],
                                             slow_line[:slow], len(names), out))
                first = False
                if reason == TABLE_FULL:
                    full = _table(groups, iface_text, iface_len, n_ifaces, present)
                    spill(full) if spill else out.tables.append(full)
                    groups.reset()
                elif reason == DONE:
                    break
    finally:
        stream.close()
        if slow_file is not None:
            slow_file.close()
    if groups.n or not out.tables:
        out.tables.append(_table(groups, iface_text, iface_len, n_ifaces, present))
    if slow_file is not None:
        out.slow = slow_file.name
        out.lines = np.concatenate(slow_lines)
    return out


def _strings(offsets: np.ndarray, data: np.ndarray, valid: np.ndarray | None = None
             ) -> pa.Array:
    mask = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.string(), offsets.size - 1,
                                 [mask, pa.py_buffer(offsets), pa.py_buffer(data)])


NUMPY = {pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64}


def _values(values: np.ndarray, typ: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    values = np.ascontiguousarray(values, NUMPY[typ])
    mask = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(typ, values.size, [mask, pa.py_buffer(values)])


def _bools(values: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    mask = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    data = pa.py_buffer(np.packbits(values.astype(bool), bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), values.size, [mask, data])


def _table(g: _Groups, iface_text: np.ndarray, iface_len: np.ndarray, n_ifaces: int,
           present: set[str]) -> pa.Table:
    """The groups as :func:`connections.directions` rows (its columns, types and nulls)."""
    n = g.n
    text = np.empty((2, max(n, 1) * 15), np.uint8)
    offsets = np.zeros((2, n + 1), np.int32)
    ints = np.empty((6, n), np.int32)
    longs = np.empty((9, n), np.int64)
    valid = np.empty((6, n), np.bool_)
    ends = columns(g.rows, n, text, offsets, ints, longs, valid)
    has_action = "action" in present
    has_flags = "tcp-flags" in present
    none = np.zeros(n, bool)
    every = np.ones(n, bool)
    # interface ids: the few distinct ones, then one per row by code (0: null)
    lengths = iface_len[:n_ifaces].copy()
    lengths[0] = 0
    ids = _strings(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32),
                   np.concatenate([iface_text[c, :lengths[c]] for c in range(n_ifaces)]),
                   np.arange(n_ifaces) > 0)
    xn, yn = valid[0], valid[1]
    return pa.table({
        "status": _strings(np.arange(n + 1, dtype=np.int32) * 2,
                           np.frombuffer(b"OK" * n, np.uint8)),
        "a": _strings(offsets[0], text[0, :ends[0]]),
        "ap": _values(ints[0], pa.int32()),
        "b": _strings(offsets[1], text[1, :ends[1]]),
        "bp": _values(ints[1], pa.int32()),
        "proto": _values(ints[2], pa.int16()),
        "interface_id": ids.take(_values(ints[3], pa.int32())) if "interface-id" in present
        else pa.nulls(n, pa.string()),
        "records": _values(longs[0], pa.int64()),
        "x_packets": _values(longs[1], pa.int64(), xn),
        "x_bytes": _values(longs[2], pa.int64(), xn),
        "x_flags": _values(ints[4], pa.int32(), xn if has_flags else none),
        "y_packets": _values(longs[3], pa.int64(), yn),
        "y_bytes": _values(longs[4], pa.int64(), yn),
        "y_flags": _values(ints[5], pa.int32(), yn if has_flags else none),
        "first": _values(longs[5], pa.int64()),
        "last": _values(longs[6], pa.int64()),
        "close_ts": _values(longs[7], pa.int64(), valid[2] & has_action & has_flags),
        "reject_first": _values(longs[8], pa.int64(), valid[3] & has_action),
        "rejected": _bools(valid[4], every if has_action else none),
        "accepted": _bools(valid[5], every if has_action else none),
        "reject_reason": pa.nulls(n, pa.string()),
    })
