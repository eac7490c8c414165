"""What sampling and slicing hide: sessions seen through a sampled or sliced stream.

A collector (or the switch before it) may keep 1 frame in N (``BatchMeta.sample_rate``) or
cut frames to ``snaplen`` bytes.  The session analysers assume they see every packet of a
connection, so for a session that had frames from a sampled batch:

- TCP and RoCE verdicts become ``unknown``: the state machine, the history letters,
  retransmission and PSN analysis all need every packet, and a sample shows handshakes
  half-done and sequence holes that are not loss;
- a verdict drawn from an absence (``unanswered``: no reply seen) becomes ``unknown`` too,
  since the reply may have been sampled out; a UDP/ICMP exchange seen both ways stays ``ok``;
- the evidence says ``sampled 1-in-N`` (the largest N seen for it).

Slicing keeps every packet: headers cut short are already handled by the analysers (a copy
ending inside the TCP header or before the BTH is counted and makes the verdict unknown);
here the evidence says ``sliced to N bytes``, since payload beyond that was not seen.

Sessions are matched by (IP version, mirror session, the two addresses unordered): coarser
than a session key (all sessions between the two hosts in that mirror session are marked), so
it errs towards "unknown", never towards a false verdict.  Keys are NumPy hashes, one
``np.unique`` per batch; no Python per packet.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

M1 = np.uint64(0x9E3779B97F4A7C15)
M2 = np.uint64(0xBF58476D1CE4E5B9)


def _mix(h: np.ndarray, v: np.ndarray) -> np.ndarray:
    h = (h ^ v.astype(np.uint64)) * M1
    return h ^ (h >> np.uint64(29))


def host_pair_keys(ipver: np.ndarray, mirror_session: np.ndarray, a: np.ndarray,
                   b: np.ndarray) -> np.ndarray:
    """One 64-bit key per row from IP version, mirror session and the two 16-byte
    addresses ``a`` and ``b`` (either order gives the same key)."""
    wa = np.ascontiguousarray(a).view(">u8").reshape(-1, 2).astype(np.uint64)
    wb = np.ascontiguousarray(b).view(">u8").reshape(-1, 2).astype(np.uint64)
    a_first = (wa[:, 0] < wb[:, 0]) | ((wa[:, 0] == wb[:, 0]) & (wa[:, 1] <= wb[:, 1]))
    lo = np.where(a_first[:, None], wa, wb)
    hi = np.where(a_first[:, None], wb, wa)
    h = np.full(ipver.shape[0], M2, np.uint64)
    for v in (ipver, mirror_session.astype(np.int64).view(np.uint64), lo[:, 0], lo[:, 1],
              hi[:, 0], hi[:, 1]):
        h = _mix(h, v)
    return h


def row_mirror_session(rows: np.ndarray) -> np.ndarray:
    """analyse.copies.mirror_session, vectorised: ERSPAN session id, else VNI, else -1."""
    et = rows["erspan_type"]
    es = rows["erspan_session"]
    erspan = (et >= 2) | ((et == 1) & (es >= 0))
    return np.where(erspan, es.astype(np.int64), rows["vni"].astype(np.int64))


class Coverage:
    """Host pairs seen in sampled or sliced batches, with the sample rate and snaplen."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.uint64)  # sorted, unique
        self.rate = np.zeros(0, np.int64)  # largest 1-in-N seen (1: not sampled)
        self.snaplen = np.zeros(0, np.int64)  # smallest snaplen seen (0: not sliced)

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def update(self, rows: np.ndarray, sample_rate: int, snaplen: int) -> None:
        if sample_rate <= 1 and snaplen <= 0:
            return
        ip = rows[rows["ipver"] > 0]
        if ip.shape[0] == 0:
            return
        keys = np.unique(host_pair_keys(ip["ipver"], row_mirror_session(ip), ip["src"],
                                        ip["dst"]))
        big = np.iinfo(np.int64).max
        keys = np.concatenate([self.keys, keys])
        rate = np.concatenate([self.rate, np.full(keys.shape[0] - self.rate.shape[0],
                                                  max(sample_rate, 1), np.int64)])
        snap = np.concatenate([np.where(self.snaplen > 0, self.snaplen, big),
                               np.full(keys.shape[0] - self.snaplen.shape[0],
                                       snaplen if snaplen > 0 else big, np.int64)])
        order = np.argsort(keys, kind="stable")
        keys, rate, snap = keys[order], rate[order], snap[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        self.keys = keys[starts]
        self.rate = np.maximum.reduceat(rate, starts)
        snap = np.minimum.reduceat(snap, starts)
        self.snaplen = np.where(snap == big, 0, snap)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sample rate, snaplen) for each key; (1, 0) where the pair was never sampled or
        sliced."""
        if self.keys.shape[0] == 0 or keys.shape[0] == 0:
            return np.ones(keys.shape[0], np.int64), np.zeros(keys.shape[0], np.int64)
        pos = np.minimum(np.searchsorted(self.keys, keys), self.keys.shape[0] - 1)
        hit = self.keys[pos] == keys
        return np.where(hit, self.rate[pos], 1), np.where(hit, self.snaplen[pos], 0)

    def mark(self, table: pa.Table, keys: np.ndarray) -> pa.Table:
        """The SESSIONS ``table`` (one key per row) with what sampling and slicing hide."""
        rate, snap = self.lookup(keys)
        sampled = rate > 1
        sliced = snap > 0
        if not (sampled.any() or sliced.any()):
            return table
        proto = table.column("proto").to_numpy(zero_copy_only=False)
        verdict = table.column("verdict").to_numpy(zero_copy_only=False).astype(object)
        whole = np.isin(proto, ["tcp", "roce"]) | (verdict == "unanswered")
        unknown = sampled & whole
        verdict[unknown] = "unknown"
        problem = table.column("problem").to_numpy(zero_copy_only=False) | unknown
        evidence = table.column("evidence").combine_chunks()
        evidence = append_sentences(evidence, sampled, pc.binary_join_element_wise(
            "sampled 1-in-", pc.cast(pa.array(rate), pa.string()),
            " by the collector: packets are missing, so the verdict cannot rest on what "
            "was not seen", ""))
        evidence = append_sentences(evidence, sliced, pc.binary_join_element_wise(
            "copies sliced to ", pc.cast(pa.array(snap), pa.string()),
            " bytes by the collector: payload beyond that not seen", ""))
        for name, column in (("verdict", pa.array(verdict, pa.string())),
                             ("problem", pa.array(problem, pa.bool_())),
                             ("evidence", evidence)):
            i = table.schema.get_field_index(name)
            table = table.set_column(i, table.schema.field(i), column)
        return table


def append_sentences(lists: pa.ListArray, mask: np.ndarray, texts: pa.Array) -> pa.ListArray:
    """``lists`` with ``texts[i]`` appended to row i where ``mask`` holds (vectorised)."""
    if not mask.any():
        return lists
    old_offsets = lists.offsets.to_numpy().astype(np.int64)
    lengths = np.diff(old_offsets)
    old_values = lists.values.slice(old_offsets[0], old_offsets[-1] - old_offsets[0])
    new_lengths = lengths + mask
    offsets = np.zeros(lengths.shape[0] + 1, np.int64)
    np.cumsum(new_lengths, out=offsets[1:])
    order = np.empty(int(offsets[-1]), np.int64)
    n_old = int(lengths.sum())
    within = np.arange(n_old) - np.repeat(old_offsets[:-1] - old_offsets[0], lengths)
    order[np.repeat(offsets[:-1], lengths) + within] = np.arange(n_old)
    rows = np.flatnonzero(mask)
    order[offsets[rows] + lengths[rows]] = n_old + rows
    values = pa.concat_arrays([old_values.cast(pa.string()), texts.cast(pa.string())])
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values.take(
        pa.array(order)))
