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

NAK_TYPE = pa.struct([
    pa.field("psn_seq_err", pa.int64()), pa.field("invalid_req", pa.int64()),
    pa.field("remote_access", pa.int64()), pa.field("remote_op", pa.int64()),
    pa.field("invalid_rd", pa.int64()), pa.field("rnr", pa.int64()),
])

SESSIONS = pa.schema([
    pa.field("proto", pa.string(), False, {"doc": "tcp, udp, icmp, roce, or the IP protocol"}),
    pa.field("orig_h", pa.string(), False, {"doc": "originator (TCP: the SYN sender)"}),
    pa.field("orig_p", pa.int32(), True, {"doc": "ICMP: type"}),
    pa.field("resp_h", pa.string(), False),
    pa.field("resp_p", pa.int32(), True, {"doc": "ICMP: code"}),
    pa.field("mirror_session", pa.int64(), True, {"doc": "ERSPAN session id, else VNI"}),
    pa.field("ts", pa.float64(), False, {"doc": "first packet, seconds since the epoch"}),
    pa.field("duration", pa.float64(), False, {"doc": "seconds, first to last packet"}),
    pa.field("orig_pkts", pa.int64(), False, {"doc": "mirror copies counted once"}),
    pa.field("resp_pkts", pa.int64(), False),
    pa.field("orig_bytes", pa.int64(), False, {"doc": "payload bytes"}),
    pa.field("resp_bytes", pa.int64(), False),
    pa.field("conn_state", pa.string(), True, {"doc": "Zeek conn_state (TCP, UDP, ICMP)"}),
    pa.field("history", pa.string(), True, {"doc": "Zeek history letters"}),
    pa.field("verdict", pa.string(), False, {"doc": "one word: what happened"}),
    pa.field("evidence", pa.list_(pa.string()), False, {"doc": "why, and what is unknown"}),
    # TCP
    pa.field("rtt_ms", pa.float64(), True,
             {"doc": "TCP: SYN to SYN-ACK at the mirror; RoCE: mean request to ACK"}),
    pa.field("ack_rtt_ms", pa.float64(), True, {"doc": "TCP: SYN-ACK to ACK at the mirror"}),
    pa.field("retrans", pa.int64(), True, {"doc": "Wireshark tcp.analysis.retransmission"}),
    pa.field("out_of_order", pa.int64(), True),
    pa.field("dup_acks", pa.int64(), True),
    pa.field("zero_window", pa.int64(), True),
    pa.field("reset_by", pa.string(), True, {"doc": "orig or resp: who sent the first RST"}),
    # RoCEv2
    pa.field("dest_qp", pa.int64(), True, {"doc": "the responder's queue pair"}),
    pa.field("opcodes", pa.list_(pa.string()), True, {"doc": "BTH opcodes seen"}),
    pa.field("messages", pa.int64(), True),
    pa.field("psn_gaps", pa.int64(), True, {"doc": "forward PSN jumps in requests"}),
    pa.field("duplicates", pa.int64(), True, {"doc": "requests with a PSN already seen"}),
    pa.field("gbn_bursts", pa.int64(), True, {"doc": "go-back-N retransmission bursts"}),
    pa.field("cnp", pa.int64(), True, {"doc": "congestion notifications for this flow"}),
    pa.field("nak", NAK_TYPE, True, {"doc": "NAKs by AETH syndrome"}),
    pa.field("ce_marked", pa.int64(), True, {"doc": "packets with ECN CE"}),
    pa.field("ect_pkts", pa.int64(), True, {"doc": "packets with ECN ECT(0)/ECT(1)/CE"}),
    # bookkeeping (Zeek conn.log and the mirror)
    pa.field("uid", pa.string(), False, {"doc": "stable id, Zeek-style"}),
    pa.field("orig_ip_bytes", pa.int64(), False),
    pa.field("resp_ip_bytes", pa.int64(), False),
    pa.field("missed_bytes", pa.int64(), True, {"doc": "TCP bytes in sequence holes"}),
    pa.field("mirror_copies", pa.int64(), False, {"doc": "duplicate mirror copies dropped"}),
    pa.field("problem", pa.bool_(), False, {"doc": "the verdict is a failure or degradation"}),
])

TIMELINE = pa.schema([
    pa.field("interval_start", pa.float64(), False),
    pa.field("interval", pa.float64(), False, {"doc": "seconds"}),
    pa.field("new_sessions", pa.int64(), False),
    pa.field("failures", pa.map_(pa.string(), pa.int64()), False,
             {"doc": "sessions started in the interval that failed, by conn_state/verdict"}),
    pa.field("retrans", pa.int64(), False),
    pa.field("cnp", pa.int64(), False),
    pa.field("nak", pa.int64(), False),
    pa.field("ce_marked", pa.int64(), False),
    pa.field("packets", pa.int64(), False),
])
