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

import numpy as np
import pyarrow as pa

from flowscope.analyse import conn as c
from flowscope.analyse.evidence import Evidence

PROBLEMS = ("unanswered", "refused", "reset_by_orig", "reset_by_resp", "lossy", "unreachable",
            "unknown", "congested", "nak", "error")
# main.zeek conn_state(): an originator reset without a reply is RSTOS0 when the history
# matches /^?S[^HAFGIQ]*R.*/ (SYN, then RST before any handshake, ACK, FIN, gap or flip)
_STOPS = np.zeros(256, bool)
_STOPS[list(b"HAFGIQR")] = True
LOSSY_MIN_RETRANS = 3
LOSSY_MIN_SHARE = 0.01


STATES = ("OTH", "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH",
          "SHR")
(OTH, S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR) = range(len(STATES))


def syn_then_rst(history: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Does each history (rows of letters, ``length`` of them valid) fully match
    ``^?S[^HAFGIQ]*R.*``?  That is: 'S' first (after an optional '^'), and the first of
    H, A, F, G, I, Q, R after it is an R."""
    n = history.shape[0]
    if n == 0:
        return np.zeros(0, bool)
    row = np.arange(n)
    start = (history[:, 0] == ord("^")).astype(np.int64)
    begins = (start < length) & (history[row, start] == ord("S"))
    pos = np.arange(history.shape[1])[None, :]
    stops = _STOPS[history] & (pos > start[:, None]) & (pos < length[:, None])
    first = np.argmax(stops, axis=1)
    return begins & stops[row, first] & (history[row, first] == ord("R"))


def conn_state(st: c.Summary) -> np.ndarray:
    """Zeek's ``conn_state()`` (scripts/base/protocols/conn/main.zeek), vectorised over
    finished connections; codes into :data:`STATES`."""
    os_, rs = st["state"][:, 0], st["state"][:, 1]
    o_inactive = (os_ == c.INACTIVE) | (os_ == c.PARTIAL)
    r_inactive = (rs == c.INACTIVE) | (rs == c.PARTIAL)
    size = st["size"]
    no_bytes = (size[:, 0] == 0) & (size[:, 1] == 0)
    rstos0 = np.zeros(st.shape[0], bool)
    ask = np.flatnonzero((os_ == c.RESET) & (rs != c.RESET) & r_inactive)  # the history decides
    rstos0[ask] = syn_then_rst(st["history"][ask], st["hist_len"][ask])
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
         np.where(r_inactive, np.where(rstos0, RSTOS0, OTH), RSTO),
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


def history_strings(st: c.Summary) -> pa.Array:
    """The history letters as an Arrow string column, built from the bytes directly."""
    n = st.shape[0]
    length = st["hist_len"]
    present = np.arange(c.HISTORY_LEN)[None, :] < length[:, None]
    data = st["history"][present]
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(length, out=offsets[1:])
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


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


def judge(st: c.Summary, states: np.ndarray) -> tuple[np.ndarray, pa.Array]:
    """Verdict (codes into :data:`VERDICTS`) and evidence for every finished connection
    (``states``: codes from :func:`conn_state`)."""
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
