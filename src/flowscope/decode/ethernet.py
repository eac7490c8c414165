"""Ethernet II, IEEE 802.1Q/802.1ad tags, Linux cooked captures (SLL v1/v2).

Sources: IEEE 802.3 §3.1.1, IEEE 802.1Q §9.6; tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html
and LINKTYPE_LINUX_SLL2.html.
"""

from flowscope.decode.layout import Field

HEADER_LEN = 14
FIELDS = {
    "dst": Field(0, 6, 0, (1 << 48) - 1),
    "src": Field(6, 6, 0, (1 << 48) - 1),
    "ethertype": Field(12, 2, 0, 0xFFFF),
}
ETHERTYPE = FIELDS["ethertype"]

# A VLAN tag is 4 bytes: TCI (PCP 3, DEI 1, VID 12) then the next ethertype.
VLAN_LEN = 4
VLAN_FIELDS = {
    "pcp": Field(0, 1, 5, 0x7),
    "vid": Field(0, 2, 0, 0x0FFF),
    "ethertype": Field(2, 2, 0, 0xFFFF),
}
VLAN_VID = VLAN_FIELDS["vid"]
VLAN_ETHERTYPE = VLAN_FIELDS["ethertype"]
TPID_8021Q = 0x8100
TPID_8021AD = 0x88A8
TPID_QINQ_OLD = 0x9100

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_ARP = 0x0806
ETHERTYPE_TEB = 0x6558  # transparent Ethernet bridging (RFC 1701 protocol types)

# Linux cooked v1: 16 bytes, protocol at 14.  v2: 20 bytes, protocol at 0.
SLL_LEN = 16
SLL_FIELDS = {"pkttype": Field(0, 2, 0, 0xFFFF), "protocol": Field(14, 2, 0, 0xFFFF)}
SLL_PROTOCOL = SLL_FIELDS["protocol"]
SLL2_LEN = 20
SLL2_FIELDS = {"protocol": Field(0, 2, 0, 0xFFFF), "ifindex": Field(4, 4, 0, 0xFFFFFFFF)}
SLL2_PROTOCOL = SLL2_FIELDS["protocol"]
