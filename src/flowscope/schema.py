"""Every table flowscope emits, as one Arrow schema each, documented in one place.
JSON keys, CSV headers and Parquet columns all come from these schemas."""

from __future__ import annotations

import pyarrow as pa

PACKETS = pa.schema([
    pa.field("frame", pa.int64(), False, {"doc": "1-based position in the (merged) input"}),
    pa.field("ts", pa.float64(), False, {"doc": "capture time, seconds since the epoch"}),
    pa.field("encap", pa.list_(pa.string()), False, {"doc": "layers, outermost first"}),
    pa.field("erspan_type", pa.int8(), True, {"doc": "1, 2 or 3"}),
    pa.field("erspan_session", pa.int16(), True),
    pa.field("gre_seq", pa.int64(), True, {"doc": "GRE sequence number (RFC 2890)"}),
    pa.field("vni", pa.int32(), True, {"doc": "VXLAN/Geneve network identifier"}),
    pa.field("direction", pa.string(), True, {"doc": "ingress/egress (ERSPAN III D bit, GCP)"}),
    pa.field("vlan", pa.int16(), True, {"doc": "ERSPAN VLAN, else the inner 802.1Q VID"}),
    pa.field("src", pa.string(), True, {"doc": "innermost IP source"}),
    pa.field("dst", pa.string(), True, {"doc": "innermost IP destination"}),
    pa.field("proto", pa.int16(), True, {"doc": "innermost IP protocol number"}),
    pa.field("sport", pa.int32(), True),
    pa.field("dport", pa.int32(), True),
    pa.field("tcp_flags", pa.string(), True, {"doc": "e.g. SA (SYN+ACK)"}),
    pa.field("len", pa.int32(), False, {"doc": "inner frame's wire length"}),
    pa.field("orig_ts", pa.float64(), True, {"doc": "restored hardware timestamp (ERSPAN III)"}),
    pa.field("error", pa.string(), True, {"doc": "null, or why decoding stopped"}),
    pa.field("quirks", pa.list_(pa.string()), False, {"doc": "departures from the specs seen"}),
])

MIRRORS = pa.schema([
    pa.field("outer_src", pa.string(), True, {"doc": "mirror source (tunnel source address)"}),
    pa.field("outer_dst", pa.string(), True, {"doc": "collector (tunnel destination address)"}),
    pa.field("encap", pa.string(), False, {"doc": "erspan1/2/3, gre, vxlan, geneve"}),
    pa.field("erspan_type", pa.int8(), True),
    pa.field("session", pa.int16(), True, {"doc": "ERSPAN session id"}),
    pa.field("vni", pa.int32(), True),
    pa.field("gre_key", pa.int64(), True),
    pa.field("direction", pa.string(), True, {"doc": "ingress, egress, both, or null"}),
    pa.field("packets", pa.int64(), False),
    pa.field("bytes", pa.int64(), False, {"doc": "outer frame bytes on the wire"}),
    pa.field("first_ts", pa.float64(), False),
    pa.field("last_ts", pa.float64(), False),
    pa.field("loss_measurable", pa.bool_(), False,
             {"doc": "the stream has GRE sequence numbers that advance"}),
    pa.field("lost", pa.int64(), True),
    pa.field("duplicates", pa.int64(), True),
    pa.field("reordered", pa.int64(), True),
    pa.field("seq_resets", pa.int64(), True),
    pa.field("quirks", pa.list_(pa.string()), False),
])
