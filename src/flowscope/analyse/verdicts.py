"""Policy: from finished connection state to Zeek ``conn_state``, a verdict and its evidence.

The trackers (:mod:`flowscope.analyse.conn`) know states, not meanings; this module is the
one place that says what a state means to someone debugging an incident.  Everything is
vectorised over the finished connections of a flush.

Verdicts (shared with the flow-log path):

=================  ==========================================================================
``ok``             established and closed (SF), or a datagram exchange in both directions
``open``           established, not closed while we watched (S1, S2, S3)
``unanswered``     SYN (or a request) with no reply (S0, SH; UDP/ICMP one way)
``refused``        SYN answered by RST (REJ)
``reset_by_orig``  the originator aborted (RSTO, RSTOS0)
``reset_by_resp``  the responder aborted (RSTR, RSTRH)
``lossy``          established, but retransmitting (>= 3 and >= 1% of its data packets)
``unreachable``    ICMP destination unreachable / time exceeded
``midstream``      started before the capture (OTH, SHR)
``unknown``        the evidence cannot tell (mirror loss hid the reply, copies cut short)
=================  ==========================================================================
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowscope.analyse import conn as c

PROBLEMS = ("unanswered", "refused", "reset_by_orig", "reset_by_resp", "lossy", "unreachable",
            "unknown", "congested", "nak", "error")
RSTOS0_HISTORY = re.compile(r"\^?S[^HAFGIQ]*R.*")  # main.zeek conn_state()
LOSSY_MIN_RETRANS = 3
LOSSY_MIN_SHARE = 0.01


STATES = ("OTH", "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH",
          "SHR")
(OTH, S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR) = range(len(STATES))


def conn_state(st: np.ndarray, history: pa.Array) -> np.ndarray:
    """Zeek's ``conn_state()`` (scripts/base/protocols/conn/main.zeek), vectorised over
    :data:`conn.SUMMARY` rows; codes into :data:`STATES`."""
    os_, rs = st["state"][:, 0], st["state"][:, 1]
    o_inactive = (os_ == c.INACTIVE) | (os_ == c.PARTIAL)
    r_inactive = (rs == c.INACTIVE) | (rs == c.PARTIAL)
    size = st["size"]
    no_bytes = (size[:, 0] == 0) & (size[:, 1] == 0)
    syn_then_rst = np.zeros(st.shape[0], bool)
    ask = np.flatnonzero((os_ == c.RESET) & (rs != c.RESET) & r_inactive)  # the regex decides
    syn_then_rst[ask] = [RSTOS0_HISTORY.fullmatch(h) is not None
                         for h in history.take(pa.array(ask)).to_pylist()]
    tcp = np.select(
        [rs == c.RESET,
         os_ == c.RESET,
         (rs == c.CLOSED) & (os_ == c.CLOSED),
         os_ == c.CLOSED,
         rs == c.CLOSED,
         (os_ == c.SYN_SENT) & (rs == c.INACTIVE),
         (os_ == c.ESTABLISHED) & (rs == c.ESTABLISHED)],
        [np.where((os_ == c.SYN_SENT) | (os_ == c.SYN_ACK_SENT) | ((os_ == c.RESET) & no_bytes),
                  REJ, np.where(o_inactive, RSTRH, RSTR)),
         np.where(r_inactive, np.where(syn_then_rst, RSTOS0, OTH), RSTO),
         SF,
         np.where(r_inactive, SH, S2),
         np.where(o_inactive, SHR, S3),
         S0,
         S1],
        OTH)
    o_active = st["pkts"][:, 0] > 0
    r_active = st["pkts"][:, 1] > 0
    udp = np.where(o_active, np.where(r_active, SF, S0), np.where(r_active, SHR, OTH))
    kind = st["kind"]
    return np.where(kind == c.KIND_TCP, tcp, np.where(kind == c.KIND_UDP, udp, OTH)).astype(np.int8)


def history_strings(st: np.ndarray) -> pa.Array:
    """The history letters as an Arrow string column, built from the bytes directly."""
    n = st.shape[0]
    length = st["hist_len"].astype(np.int32)
    present = np.arange(c.HISTORY_LEN)[None, :] < length[:, None]
    data = np.ascontiguousarray(st["history"])[present]
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(length, out=offsets[1:])
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data.tobytes()))


_TCP_VERDICT = {"SF": "ok", "S1": "open", "S2": "open", "S3": "open", "S0": "unanswered",
                "SH": "unanswered", "REJ": "refused", "RSTO": "reset_by_orig",
                "RSTOS0": "reset_by_orig", "RSTR": "reset_by_resp", "RSTRH": "reset_by_resp",
                "SHR": "midstream", "OTH": "midstream"}
VERDICTS = ("ok", "open", "unanswered", "refused", "reset_by_orig", "reset_by_resp", "lossy",
            "unreachable", "midstream", "unknown", "congested", "nak", "error", "healthy")
V = {name: code for code, name in enumerate(VERDICTS)}
TCP_VERDICTS = np.array([V[_TCP_VERDICT[s]] for s in STATES], np.int8)
IS_PROBLEM = np.array([name in PROBLEMS for name in VERDICTS])
_STATE_WORDS = {
    "S0": "SYN sent, no reply seen",
    "SH": "SYN then FIN from the originator, no SYN-ACK seen",
    "REJ": "SYN answered by RST: nothing listening, or a firewall rejecting",
    "RSTO": "established, then the originator sent RST",
    "RSTOS0": "SYN then RST from the originator, no SYN-ACK seen: it gave up",
    "RSTR": "established, then the responder sent RST",
    "RSTRH": "SYN-ACK then RST from the responder, the SYN was not seen",
    "SF": "handshake completed, closed with FIN both ways",
    "S1": "handshake completed, not closed during the capture",
    "S2": "established, the originator closed; no FIN from the responder yet",
    "S3": "established, the responder closed; no FIN from the originator yet",
    "SHR": "SYN-ACK then FIN from the responder, the SYN was not seen",
    "OTH": "no SYN seen: the connection started before the capture",
}
_ORIGIN_WORDS = {
    c.ORIG_SYNACK: "SYN not seen: the originator is the SYN-ACK receiver",
    c.ORIG_PORTS: "no SYN seen: the originator is the ephemeral-port side",
    c.ORIG_FIRST: "no SYN seen: the originator is the first sender",
}
ICMP_UNREACHABLE = {3: "destination unreachable", 11: "time exceeded"}  # ICMPv4 types
ICMP6_UNREACHABLE = {1: "destination unreachable", 3: "time exceeded"}


class Evidence:
    """Per-row lists of short sentences, assembled sentence kind by sentence kind.

    ``add(mask, template, *columns)`` formats ``template`` (``{}`` = a column's value) for
    the rows where ``mask`` holds, with Arrow kernels: no Python per row.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.rows: list[np.ndarray] = []
        self.texts: list[pa.Array] = []

    def add(self, mask: np.ndarray, template: str, *columns: np.ndarray) -> None:
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return
        self.rows.append(rows)
        self.texts.append(fmt(template, rows.size, *(col[rows] for col in columns)))

    def lists(self) -> pa.Array:
        counts = np.zeros(self.n, np.int32)
        for rows in self.rows:
            counts[rows] += 1
        offsets = np.zeros(self.n + 1, np.int32)
        np.cumsum(counts, out=offsets[1:])
        if not self.rows:
            return pa.ListArray.from_arrays(pa.array(offsets), pa.array([], pa.string()))
        # each sentence kind in turn goes to the next free slot of its rows' lists
        fill = offsets[:-1].copy()
        order = np.empty(int(offsets[-1]), np.int64)
        start = 0
        for rows in self.rows:
            order[fill[rows]] = np.arange(start, start + rows.size)
            fill[rows] += 1
            start += rows.size
        values = pa.concat_arrays(self.texts).take(pa.array(order))
        return pa.ListArray.from_arrays(pa.array(offsets), values)


def fmt(template: str, n: int, *columns: np.ndarray) -> pa.Array:
    """``template`` with each ``{}`` replaced by a column's values (n rows), vectorised."""
    parts = template.split("{}")
    if not columns:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                              pa.array([template])).cast(pa.string())
    pieces: list[pa.Array | str] = []
    for col, text in zip(columns, parts[1:], strict=True):
        pieces.append(pc.cast(pa.array(col), pa.string()))
        pieces.append(text)
    if parts[0]:
        pieces.insert(0, parts[0])
    return pc.binary_join_element_wise(*[p for p in pieces if not (isinstance(p, str) and not p)],
                                       "")


def judge(st: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, pa.Array]:
    """Verdict (codes into :data:`VERDICTS`) and evidence for every finished connection
    (:data:`conn.SUMMARY` rows; ``states``: codes from :func:`conn_state`)."""
    n = st.shape[0]
    kind = st["kind"]
    tcp = kind == c.KIND_TCP
    ev = Evidence(n)
    verdict = TCP_VERDICTS[states]  # codes into VERDICTS
    pkts = st["pkts"]
    both = (pkts[:, 0] > 0) & (pkts[:, 1] > 0)
    # UDP, ICMP and other protocols: a reply or not
    dgram = ~tcp
    verdict[dgram] = np.where(both[dgram], V["ok"], V["unanswered"])
    icmp = kind == c.KIND_ICMP
    unreach = icmp & (((st["proto"] == 1) & np.isin(st["port"][:, 0], list(ICMP_UNREACHABLE)))
                      | ((st["proto"] == 58)
                         & np.isin(st["port"][:, 0], list(ICMP6_UNREACHABLE))))
    verdict[unreach] = V["unreachable"]
    ev.add(unreach, "ICMP error message (the reporting router or host is orig_h)")
    ev.add(dgram & ~icmp & ~both & (kind == c.KIND_UDP),
           "no reply seen (normal for one-way protocols such as syslog)")
    ev.add(kind == c.KIND_OTHER, "protocol not analysed beyond packet counts")
    # TCP
    for state, words in _STATE_WORDS.items():
        ev.add(tcp & (states == STATES.index(state)), words)
    guess = st["orig_guess"]
    for how, words in _ORIGIN_WORDS.items():
        ev.add(tcp & (guess == how), words)
    ev.add(tcp & (st["syns"] > 1), "{} SYNs sent", st["syns"])
    retrans = st["retrans"].sum(axis=1)
    data_pkts = np.maximum(pkts.sum(axis=1), 1)
    lossy = tcp & ((verdict == V["ok"]) | (verdict == V["open"])) \
        & (retrans >= LOSSY_MIN_RETRANS) \
        & (retrans >= LOSSY_MIN_SHARE * data_pkts)
    verdict[lossy] = V["lossy"]
    ev.add(tcp & (retrans > 0), "{} retransmissions (orig {}, resp {})", retrans,
           st["retrans"][:, 0], st["retrans"][:, 1])
    holes = st["holes"].sum(axis=1)
    mirror_holes = st["mirror_holes"].sum(axis=1)
    ev.add(tcp & (holes > mirror_holes),
           "{} sequence holes not explained by mirror loss: lost before the mirror point",
           holes - mirror_holes)
    ev.add(tcp & (mirror_holes > 0),
           "{} sequence holes while the mirror itself lost packets: mirror loss, not network "
           "loss", mirror_holes)
    zero = st["zero_window"].sum(axis=1)
    ev.add(tcp & (zero > 0), "{} zero-window advertisements", zero)
    # what the mirror hides
    gaps = st["mirror_gaps_seen"]
    hidden = (gaps > 0) & (verdict == V["unanswered"])
    verdict[hidden] = V["unknown"]
    ev.add(hidden, "unknown: the mirror lost packets during this connection, the reply may "
                   "have been among them")
    ev.add((gaps > 0) & ~hidden, "the mirror stream lost packets {} times meanwhile", gaps)
    ev.add(st["truncated_t"] > 0,
           "{} copies truncated by the mirror (ERSPAN T bit): payload not visible",
           st["truncated_t"])
    cut = st["cut"]
    all_cut = cut >= pkts.sum(axis=1)
    verdict[tcp & (cut > 0) & all_cut] = V["unknown"]
    ev.add(cut > 0, "{} copies end inside the TCP header: their flags are unknown", cut)
    ev.add(st["copies"] > 0, "{} duplicate mirror copies counted once", st["copies"])
    return verdict, ev.lists()
