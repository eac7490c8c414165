"""ERSPAN Type II and Type III headers, written as a switch's mirror session would
(draft-foschiano-erspan-03).

Type II (§4.1): GRE protocol 0x88BE with S, then 8 bytes: Ver=1, VLAN, COS, En, T,
Session ID, Index.  The mirrored frame's own 802.1Q/802.1ad tag, when it has one, gives
VLAN and COS and stays in the frame (En=11, "VLAN tag preserved in frame"); an untagged
frame is sent with VLAN 0 and En=00.  Index is the mirrored port (its ifindex, 20 bits).

Type III (§4.2): GRE protocol 0x22EB with S, then 12 bytes: Ver=2, VLAN, COS, BSO=00
(good frame), T, Session ID, 32-bit timestamp, SGT=0, P, FT, HW ID, D, Gra, O=1, and the
8-byte platform specific sub-header of §4.3 with Platf ID 0x5: Switch ID, Port ID/Index
and the timestamp's seconds.

Timestamp choice: Gra=10 (IEEE 1588).  The 32-bit field holds the nanoseconds within
the second and the platform 0x5 sub-header the seconds, so a collector restores the
capture time to the nanosecond with no unwrapping and no guess at the epoch (flowscope's
decoder: analyse.mirrors._hw_time, platform 5/6).  The seconds are the sender's system
clock (POSIX/UTC seconds as AF_PACKET stamps frames), not TAI; a PTP-disciplined clock
gives PTP-quality times, an NTP one NTP-quality times.

T (both types) is set when the copy is shorter than the frame on the wire (caplen <
wirelen: sliced by --snaplen or by the capture ring).  D (Type III) is 1 for frames the
host sent (AF_PACKET's PACKET_OUTGOING), 0 for frames it received.  FT=0 and P=1 carry an
Ethernet frame; a raw-IP interface (tun, no link header) is carried with FT=2, P=0.
"""

from __future__ import annotations

import numpy as np

from flowscope.decode import erspan as hdr
from flowscope.decode import ethernet, gre
from flowscope.decode.codes import LINKTYPE_ETHERNET
from flowscope.decode.layout import read
from flowscope.encap import gre as gre_out
from flowscope.encap.fields import put, zero
from flowscope.jit import njit

TYPE2_LEN = gre_out.HEADER_LEN + hdr.TYPE2_LEN  # GRE + ERSPAN II: 16 bytes
TYPE3_LEN = gre_out.HEADER_LEN + hdr.TYPE3_LEN + hdr.PLATFORM_LEN  # GRE + III + sub-header: 28

MAX_SESSION = 0x3FF  # 10 bits
MAX_INDEX = 0xFFFFF  # Type II Index: 20 bits
MAX_HW_ID = 0x3F
MAX_SWITCH_ID = 0x3FF
MAX_PORT_ID = 0xFFFF  # platform 0x5 Port ID/Index: 16 bits

EN_UNTAGGED = 0b00
EN_TAG_KEPT = 0b11  # "VLAN tag preserved in frame"
BSO_GOOD = 0b00
PLATFORM = 5  # §4.3 Platf ID 0x5: Switch ID (10), Port ID/Index (16), Timestamp seconds (32)
_SWITCH_ID = hdr.PLATFORM_FIELDS[PLATFORM]["switch_id"]
_PORT_ID = hdr.PLATFORM_FIELDS[PLATFORM]["port_index"]
_SECONDS = hdr.PLATFORM_FIELDS[PLATFORM]["timestamp_sec"]
_VLAN_PCP = ethernet.VLAN_FIELDS["pcp"]
NS = 1_000_000_000
EGRESS = 2  # codes.DIRECTIONS


@njit(inline="always", cache=True)
def _tag(src: np.ndarray, o: int, n: int) -> tuple[bool, int, int]:  # pragma: no cover
    """(tagged, VID, PCP) of the frame's outer 802.1Q/802.1ad tag."""
    if n >= ethernet.HEADER_LEN + ethernet.VLAN_LEN:
        et = read(src, o, ethernet.ETHERTYPE)
        if (et == ethernet.TPID_8021Q or et == ethernet.TPID_8021AD
                or et == ethernet.TPID_QINQ_OLD):
            tag = o + ethernet.HEADER_LEN
            return True, read(src, tag, ethernet.VLAN_VID), read(src, tag, _VLAN_PCP)
    return False, 0, 0


@njit(cache=True)
def encapsulate_type2(src: np.ndarray, offset: np.ndarray, caplen: np.ndarray,
                      wirelen: np.ndarray, out: np.ndarray, out_off: np.ndarray, seq0: int,
                      session: int, index: int) -> None:  # pragma: no cover - compiled
    for i in range(offset.shape[0]):
        o = offset[i]
        n = caplen[i]
        p = out_off[i]
        gre_out.write_header(out, p, gre.PROTO_ERSPAN_I_II, (seq0 + i) % gre_out.SEQ_MOD)
        h = p + gre_out.HEADER_LEN
        zero(out, h, hdr.TYPE2_LEN)
        tagged, vid, pcp = _tag(src, o, n)
        put(out, h, hdr.VER, hdr.VERSION_II)
        put(out, h, hdr.VLAN, vid)
        put(out, h, hdr.COS, pcp)
        put(out, h, hdr.EN, EN_TAG_KEPT if tagged else EN_UNTAGGED)
        put(out, h, hdr.T, 1 if n < wirelen[i] else 0)
        put(out, h, hdr.SESSION, session)
        put(out, h, hdr.INDEX, index)
        out[p + TYPE2_LEN : p + TYPE2_LEN + n] = src[o : o + n]


@njit(cache=True)
def encapsulate_type3(src: np.ndarray, offset: np.ndarray, caplen: np.ndarray,
                      wirelen: np.ndarray, linktype: np.ndarray, ts_ns: np.ndarray,
                      direction: np.ndarray, out: np.ndarray, out_off: np.ndarray, seq0: int,
                      session: int, hw_id: int, switch_id: int,
                      port_id: int) -> None:  # pragma: no cover - compiled
    for i in range(offset.shape[0]):
        o = offset[i]
        n = caplen[i]
        p = out_off[i]
        gre_out.write_header(out, p, gre.PROTO_ERSPAN_III, (seq0 + i) % gre_out.SEQ_MOD)
        h = p + gre_out.HEADER_LEN
        zero(out, h, hdr.TYPE3_LEN + hdr.PLATFORM_LEN)
        ether = linktype[i] == LINKTYPE_ETHERNET
        tagged, vid, pcp = _tag(src, o, n) if ether else (False, 0, 0)
        sec = ts_ns[i] // NS
        put(out, h, hdr.VER, hdr.VERSION_III)
        put(out, h, hdr.VLAN, vid)
        put(out, h, hdr.COS, pcp)
        put(out, h, hdr.BSO, BSO_GOOD)
        put(out, h, hdr.T, 1 if n < wirelen[i] else 0)
        put(out, h, hdr.SESSION, session)
        put(out, h, hdr.TIMESTAMP, ts_ns[i] - sec * NS)  # ns within the second
        put(out, h, hdr.SGT, 0)
        put(out, h, hdr.P, 1 if ether else 0)
        put(out, h, hdr.FT, hdr.FT_ETHERNET if ether else hdr.FT_IP)
        put(out, h, hdr.HW_ID, hw_id)
        put(out, h, hdr.D, 1 if direction[i] == EGRESS else 0)
        put(out, h, hdr.GRA, hdr.GRA_IEEE1588)
        put(out, h, hdr.O, 1)
        s = h + hdr.TYPE3_LEN
        put(out, s, hdr.PLATFORM_ID, PLATFORM)
        put(out, s, _SWITCH_ID, switch_id)
        put(out, s, _PORT_ID, port_id)
        put(out, s, _SECONDS, sec)
        out[p + TYPE3_LEN : p + TYPE3_LEN + n] = src[o : o + n]
