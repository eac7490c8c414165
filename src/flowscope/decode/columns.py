"""The decoded columns: one NumPy structured array per batch, one field per column.

A structured array keeps the columns of one batch together for the compiled decoder
(``out[i].vni = ...``) while every column stays addressable by name (``decoded["vni"]``).
Missing values are -1 (or INT64_MIN for timestamps); the sinks turn them into nulls.
"""

from __future__ import annotations

import numpy as np

from flowscope.decode.codes import MAX_LAYERS

NO_TS = np.iinfo(np.int64).min

DECODED = np.dtype([
    # capture record
    ("frame", np.int64),  # 1-based position in the (merged) input
    ("ts_ns", np.int64),  # capture time, ns since the Unix epoch
    ("caplen", np.int32),
    ("wirelen", np.int32),
    ("linktype", np.int32),
    # decode outcome
    ("n_layers", np.uint8),
    ("encap", np.uint8, (MAX_LAYERS,)),  # layer codes, outermost first (codes.LAYERS)
    ("error", np.uint8),  # codes.ERRORS
    ("quirks", np.uint16),  # codes.QUIRKS bits
    ("tunnels", np.uint8),  # number of tunnel layers crossed
    ("tunnel", np.uint8),  # layer code of the outermost tunnel (the mirror stream's kind)
    # outermost tunnel endpoints (the mirror source and the collector)
    ("outer_ipver", np.uint8),
    ("outer_src", np.uint8, (16,)),
    ("outer_dst", np.uint8, (16,)),
    # GRE (outermost)
    ("gre_seq", np.int64),
    ("gre_key", np.int64),
    # ERSPAN (outermost)
    ("erspan_type", np.int8),
    ("erspan_session", np.int16),
    ("erspan_vlan", np.int16),
    ("erspan_cos", np.int8),
    ("erspan_en", np.int8),  # Type II encapsulation type; Type III: BSO
    ("erspan_t", np.int8),
    ("erspan_index", np.int32),
    ("erspan_ts", np.int64),  # Type III 32-bit timestamp, raw
    ("erspan_sgt", np.int32),
    ("erspan_p", np.int8),
    ("erspan_ft", np.int8),
    ("erspan_hw_id", np.int8),
    ("erspan_gra", np.int8),
    ("erspan_platform", np.int8),  # platform sub-header id, -1 when O=0
    ("erspan_platform_info", np.int64),  # its 58 bits after the id
    ("direction", np.int8),  # codes.DIRECTIONS
    # VXLAN / Geneve (outermost)
    ("vni", np.int32),
    ("geneve_opt_classes", np.uint8),  # number of Geneve options seen
    ("gcp_network_id", np.int64),  # Geneve class 0x0132 options (Google Cloud)
    ("gcp_direction", np.int8),
    # innermost packet
    ("vlan", np.int16),  # ERSPAN VLAN when present, else the innermost 802.1Q VID
    ("ipver", np.uint8),
    ("src", np.uint8, (16,)),
    ("dst", np.uint8, (16,)),
    ("proto", np.int16),
    ("ecn", np.int8),
    ("ip_id", np.int32),  # IPv4 identification, -1 for IPv6
    ("l3_off", np.int64),
    ("ip_len", np.int32),  # innermost IP packet's wire length (its length field), -1 if none
    ("l4_off", np.int64),
    ("sport", np.int32),
    ("dport", np.int32),
    ("tcp_flags", np.int16),
    ("tcp_seq", np.int64),
    ("tcp_ack", np.int64),
    ("tcp_window", np.int32),
    ("payload_len", np.int32),  # L4 payload bytes on the wire
    ("icmp_type", np.int16),
    ("icmp_code", np.int16),
    # RoCEv2 (UDP 4791): InfiniBand BTH and AETH
    ("bth_opcode", np.int16),
    ("bth_flags", np.int8),  # roce.F_BECN | F_FECN | F_ACKREQ
    ("bth_qp", np.int32),  # DestQP
    ("bth_psn", np.int32),
    ("aeth_syndrome", np.int16),
    # the mirrored frame, for decapsulation
    ("inner_off", np.int64),  # buffer offset of the innermost tunnel payload, -1 if none
    ("inner_link", np.int32),  # its link type: 1 Ethernet, 101 raw IP
    ("inner_caplen", np.int32),
    ("len", np.int32),  # inner wire length (the frame's own when not tunnelled)
    # filled after decoding
    ("stream", np.int32),  # mirror stream id (analyse.mirrors), -1 if not tunnelled
    ("orig_ts", np.int64),  # restored hardware timestamp, ns, NO_TS if none
    ("mirror_gaps", np.int64),  # GRE sequence gaps of its stream so far (-1: not measured)
])


def allocate(n: int) -> np.ndarray:
    """Room for n decoded rows; the decoder initialises every field of every row."""
    return np.empty(n, dtype=DECODED)
