"""The small vocabularies the decoder writes into its columns: layer names (for ``encap``),
error reason codes and quirk bits.  Index = code; names are the user-visible strings."""

from __future__ import annotations

# Layers, outermost first, as they appear in the ``encap`` list.
LAYERS = (
    "",  # 0: no layer
    "eth", "vlan", "sll", "sll2", "ipv4", "ipv6", "gre",
    "erspan1", "erspan2", "erspan3", "udp", "tcp", "icmp", "icmpv6", "vxlan", "geneve",
    "arp", "sctp", "bth",
)
L_ETH, L_VLAN, L_SLL, L_SLL2, L_IPV4, L_IPV6, L_GRE = 1, 2, 3, 4, 5, 6, 7
L_ERSPAN1, L_ERSPAN2, L_ERSPAN3, L_UDP, L_TCP, L_ICMP, L_ICMPV6 = 8, 9, 10, 11, 12, 13, 14
L_VXLAN, L_GENEVE, L_ARP, L_SCTP, L_BTH = 15, 16, 17, 18, 19
MAX_LAYERS = 24

# Tunnel kinds: what a mirror stream is carried in (the first tunnel layer).
TUNNELS = {L_GRE: "gre", L_ERSPAN1: "erspan1", L_ERSPAN2: "erspan2", L_ERSPAN3: "erspan3",
           L_VXLAN: "vxlan", L_GENEVE: "geneve"}

# Error reason codes: the first problem found ends decoding of that frame.
ERRORS = (
    None,  # 0: decoded
    "truncated",  # a header runs past the captured bytes
    "bad_ip_version",  # the version nibble is not what the link layer announced
    "ipv4_bad_header",  # IHL < 5
    "ipv4_bad_length",  # total length shorter than the header or longer than the frame
    "ipv6_bad_length",  # payload length longer than the frame
    "ipv6_bad_ext",  # an extension header runs past the payload
    "gre_bad_version",  # GRE version other than 0
    "gre_bad_routing",  # RFC 1701 routing entries never terminate inside the frame
    "erspan_bad_version",  # ERSPAN version nibble unknown
    "erspan_bad_frame_type",  # Type III frame type the draft does not define
    "geneve_bad_version",  # Geneve version other than 0
    "geneve_bad_options",  # option length runs past the packet
    "udp_bad_length",  # UDP length shorter than its header
    "tcp_bad_header",  # TCP data offset < 5
    "too_deep",  # more nested tunnels than the depth limit
    "unknown_linktype",  # capture link type flowscope does not decode
)
E_TRUNCATED, E_BAD_IP_VERSION, E_IPV4_BAD_HEADER, E_IPV4_BAD_LENGTH = 1, 2, 3, 4
E_IPV6_BAD_LENGTH, E_IPV6_BAD_EXT, E_GRE_BAD_VERSION, E_GRE_BAD_ROUTING = 5, 6, 7, 8
E_ERSPAN_BAD_VERSION, E_ERSPAN_BAD_FT, E_GENEVE_BAD_VERSION, E_GENEVE_BAD_OPTIONS = 9, 10, 11, 12
E_UDP_BAD_LENGTH, E_TCP_BAD_HEADER, E_TOO_DEEP, E_UNKNOWN_LINKTYPE = 13, 14, 15, 16

# Quirks: departures from the drafts/RFCs that real devices make.  Decoding goes on; the
# bit says what was seen so nobody has to guess.
QUIRKS = (
    "erspan3_without_seq",  # Type III sent without the GRE S bit (no loss accounting)
    "erspan_version_mismatch",  # 0x88BE carrying a version-2 header or 0x22EB a version-1 one
    "erspan_vlan_en_mismatch",  # Type II En=00 (untagged) with a non-zero VLAN
    "erspan_cisco_ft7_pad",  # Type III O=0 FT=7: 8 bytes skipped before the frame
    "mirror_truncated",  # ERSPAN T bit, or inner IP longer than the copy: the mirror sliced it
    "vxlan_no_i_flag",  # VXLAN I flag clear: VNI not announced as valid
    "gre_routing",  # RFC 1701 routing present
    "ip_fragment",  # a tunnel or inner IP packet is a fragment (not reassembled)
)
(Q_ERSPAN3_NO_SEQ, Q_ERSPAN_VERSION_MISMATCH, Q_VLAN_EN_MISMATCH, Q_CISCO_FT7, Q_MIRROR_TRUNCATED,
 Q_VXLAN_NO_I, Q_GRE_ROUTING, Q_IP_FRAGMENT) = (1 << i for i in range(8))


def quirk_names(mask: int) -> list[str]:
    return [name for i, name in enumerate(QUIRKS) if mask & (1 << i)]


# Capture link types (tcpdump.org/linktypes.html) the decoder understands.
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_DLT_RAW_12 = 12
LINKTYPE_DLT_RAW_14 = 14
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

DIRECTIONS = (None, "ingress", "egress")  # 0 unknown, 1 ingress, 2 egress
