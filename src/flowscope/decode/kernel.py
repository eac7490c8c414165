"""The compiled fast path: walk each frame's header chain and fill its decoded row.

One loop over the frames of a batch, each frame walked layer by layer with the layouts
declared in the protocol modules.  No allocation per frame; a malformed frame stops at the
first problem with an error code (codes.ERRORS) and never raises.
"""

from __future__ import annotations

from flowscope.decode import codes as c
from flowscope.decode import erspan, ethernet, geneve, gre, ip, roce, transport, vxlan
from flowscope.decode.columns import NO_TS
from flowscope.decode.layout import read
from flowscope.jit import njit

# What the walk expects next.
N_DONE, N_ETH, N_IP_SNIFF, N_IPV4, N_IPV6, N_SLL, N_SLL2 = 0, 1, 2, 3, 4, 5, 6
N_GRE, N_ERSPAN1, N_ERSPAN2, N_ERSPAN3, N_UDP, N_TCP, N_ICMP = 7, 8, 9, 10, 11, 12, 13
N_ICMPV6, N_VXLAN, N_GENEVE, N_SCTP, N_ARP, N_BTH = 14, 15, 16, 17, 18, 19


@njit(inline="always", cache=True)
def _after_ethertype(et: int) -> int:  # pragma: no cover - compiled
    if et == ethernet.ETHERTYPE_IPV4:
        return N_IPV4
    if et == ethernet.ETHERTYPE_IPV6:
        return N_IPV6
    if et == ethernet.ETHERTYPE_ARP:
        return N_ARP
    return N_DONE


@njit(inline="always", cache=True)
def _after_ip_proto(proto: int) -> int:  # pragma: no cover - compiled
    if proto == ip.PROTO_TCP:
        return N_TCP
    if proto == ip.PROTO_UDP:
        return N_UDP
    if proto == ip.PROTO_GRE:
        return N_GRE
    if proto == ip.PROTO_ICMP:
        return N_ICMP
    if proto == ip.PROTO_ICMPV6:
        return N_ICMPV6
    if proto == ip.PROTO_SCTP:
        return N_SCTP
    return N_DONE


@njit(cache=True)
def _init_row(r) -> None:  # pragma: no cover - compiled
    r.n_layers = 0
    r.error = 0
    r.quirks = 0
    r.tunnels = 0
    r.tunnel = 0
    r.outer_ipver = 0
    for k in range(16):
        r.outer_src[k] = 0
        r.outer_dst[k] = 0
    for k in range(c.MAX_LAYERS):
        r.encap[k] = 0
    r.gre_seq = -1
    r.gre_key = -1
    r.erspan_type = 0
    r.erspan_session = -1
    r.erspan_vlan = -1
    r.erspan_cos = -1
    r.erspan_en = -1
    r.erspan_t = -1
    r.erspan_index = -1
    r.erspan_ts = -1
    r.erspan_sgt = -1
    r.erspan_p = -1
    r.erspan_ft = -1
    r.erspan_hw_id = -1
    r.erspan_gra = -1
    r.erspan_platform = -1
    r.erspan_platform_info = -1
    r.direction = 0
    r.vni = -1
    r.geneve_opt_classes = 0
    r.gcp_network_id = -1
    r.gcp_direction = -1
    r.vlan = -1
    _clear_inner(r)
    r.inner_off = -1
    r.inner_link = 0
    r.inner_caplen = -1
    r.stream = -1
    r.orig_ts = NO_TS
    r.mirror_gaps = -1


@njit(inline="always", cache=True)
def _clear_inner(r) -> None:  # pragma: no cover - compiled
    """Entering a tunnel payload: what was 'innermost' so far is now the carrier."""
    r.ipver = 0
    for k in range(16):
        r.src[k] = 0
        r.dst[k] = 0
    r.proto = -1
    r.ecn = -1
    r.l3_off = -1
    r.ip_len = -1
    r.l4_off = -1
    r.sport = -1
    r.dport = -1
    r.tcp_flags = -1
    r.tcp_seq = -1
    r.tcp_ack = -1
    r.tcp_window = -1
    r.payload_len = -1
    r.ip_id = -1
    r.icmp_type = -1
    r.icmp_code = -1
    r.bth_opcode = -1
    r.bth_flags = 0
    r.bth_qp = -1
    r.bth_psn = -1
    r.aeth_syndrome = -1


@njit(cache=True)
def decode_frame(buf, start, caplen, wirelen, linktype, r, vxlan_ports, geneve_ports,
                 max_tunnels):  # pragma: no cover - compiled
    _init_row(r)
    pos = start
    cap_end = start + caplen  # bytes we have
    wire_end = start + max(wirelen, caplen)  # bytes the frame had on the wire
    n = 0
    err = 0
    eth_vlan = -1
    inner_wire_end = -1
    inner_cap_end = -1
    fragmented = False  # a carrying IP packet is a first fragment

    if linktype == c.LINKTYPE_ETHERNET:
        nxt = N_ETH
    elif (linktype == c.LINKTYPE_RAW or linktype == c.LINKTYPE_DLT_RAW_12
          or linktype == c.LINKTYPE_DLT_RAW_14):
        nxt = N_IP_SNIFF
    elif linktype == c.LINKTYPE_IPV4:
        nxt = N_IPV4
    elif linktype == c.LINKTYPE_IPV6:
        nxt = N_IPV6
    elif linktype == c.LINKTYPE_LINUX_SLL:
        nxt = N_SLL
    elif linktype == c.LINKTYPE_LINUX_SLL2:
        nxt = N_SLL2
    else:
        nxt = N_DONE
        err = c.E_UNKNOWN_LINKTYPE

    while nxt != N_DONE:
        if n >= c.MAX_LAYERS:
            err = c.E_TOO_DEEP
            break
        if nxt == N_ETH:
            if pos + ethernet.HEADER_LEN > cap_end:
                err = c.E_TRUNCATED
                break
            r.encap[n] = c.L_ETH
            n += 1
            et = read(buf, pos, ethernet.ETHERTYPE)
            pos += ethernet.HEADER_LEN
            eth_vlan = -1
            while (et == ethernet.TPID_8021Q or et == ethernet.TPID_8021AD
                   or et == ethernet.TPID_QINQ_OLD):
                if pos + ethernet.VLAN_LEN > cap_end:
                    err = c.E_TRUNCATED
                    break
                if n < c.MAX_LAYERS:
                    r.encap[n] = c.L_VLAN
                    n += 1
                if eth_vlan < 0:
                    eth_vlan = read(buf, pos, ethernet.VLAN_VID)
                et = read(buf, pos, ethernet.VLAN_ETHERTYPE)
                pos += ethernet.VLAN_LEN
            if err:
                break
            nxt = _after_ethertype(et)
        elif nxt == N_SLL or nxt == N_SLL2:
            hlen = ethernet.SLL_LEN if nxt == N_SLL else ethernet.SLL2_LEN
            if pos + hlen > cap_end:
                err = c.E_TRUNCATED
                break
            if nxt == N_SLL:
                r.encap[n] = c.L_SLL
                et = read(buf, pos, ethernet.SLL_PROTOCOL)
            else:
                r.encap[n] = c.L_SLL2
                et = read(buf, pos, ethernet.SLL2_PROTOCOL)
            n += 1
            pos += hlen
            nxt = _after_ethertype(et)
        elif nxt == N_IP_SNIFF:
            if pos + 1 > cap_end:
                err = c.E_TRUNCATED
                break
            v = buf[pos] >> 4
            if v == 4:
                nxt = N_IPV4
            elif v == 6:
                nxt = N_IPV6
            else:
                err = c.E_BAD_IP_VERSION
                break
        elif nxt == N_IPV4:
            if pos + ip.IPV4_MIN_LEN > cap_end:
                err = c.E_TRUNCATED
                break
            if read(buf, pos, ip.V4_VERSION) != 4:
                err = c.E_BAD_IP_VERSION
                break
            hlen = read(buf, pos, ip.V4_IHL) * 4
            if hlen < ip.IPV4_MIN_LEN:
                err = c.E_IPV4_BAD_HEADER
                break
            tlen = read(buf, pos, ip.V4_TOTAL_LENGTH)
            if tlen < hlen:
                err = c.E_IPV4_BAD_LENGTH
                break
            if pos + tlen > wire_end:
                if r.tunnels == 0:  # the capture's own packet: the length field lies
                    err = c.E_IPV4_BAD_LENGTH
                    break
                # inside a tunnel: the copy is shorter than the packet it carries, because
                # the mirror sliced it or the tunnel packet is a first fragment (flowscope
                # does not reassemble); the IP length is the original
                r.quirks |= c.Q_IP_FRAGMENT if fragmented else c.Q_MIRROR_TRUNCATED
                inner_wire_end = max(inner_wire_end, pos + tlen)
            if pos + hlen > cap_end:
                err = c.E_TRUNCATED
                break
            r.encap[n] = c.L_IPV4
            n += 1
            wire_end = pos + tlen  # drops Ethernet padding
            cap_end = min(cap_end, wire_end)
            r.ipver = 4
            for k in range(4):
                r.src[k] = buf[pos + ip.V4_SRC_OFFSET + k]
                r.dst[k] = buf[pos + ip.V4_DST_OFFSET + k]
            for k in range(4, 16):
                r.src[k] = 0
                r.dst[k] = 0
            proto = read(buf, pos, ip.V4_PROTOCOL)
            r.proto = proto
            r.ecn = buf[pos + 1] & 3
            r.ip_id = read(buf, pos, ip.V4_ID)
            r.l3_off = pos
            r.ip_len = tlen
            r.sport = -1
            r.dport = -1
            r.tcp_flags = -1
            pos += hlen
            r.l4_off = pos
            if read(buf, r.l3_off, ip.V4_FRAG_OFFSET) != 0:
                r.quirks |= c.Q_IP_FRAGMENT  # a later fragment: no L4 header here
                break
            if read(buf, r.l3_off, ip.V4_MORE_FRAGMENTS):
                r.quirks |= c.Q_IP_FRAGMENT  # a first fragment: headers here, the rest later
                fragmented = True
            nxt = _after_ip_proto(proto)
        elif nxt == N_IPV6:
            if pos + ip.IPV6_LEN > cap_end:
                err = c.E_TRUNCATED
                break
            if (buf[pos] >> 4) != 6:
                err = c.E_BAD_IP_VERSION
                break
            plen = read(buf, pos, ip.V6_PAYLOAD_LENGTH)
            if plen != 0:  # 0 = jumbogram (RFC 2675): length in a hop-by-hop option
                if pos + ip.IPV6_LEN + plen > wire_end:
                    if r.tunnels == 0:
                        err = c.E_IPV6_BAD_LENGTH
                        break
                    r.quirks |= c.Q_IP_FRAGMENT if fragmented else c.Q_MIRROR_TRUNCATED
                    inner_wire_end = max(inner_wire_end, pos + ip.IPV6_LEN + plen)
                wire_end = pos + ip.IPV6_LEN + plen
                cap_end = min(cap_end, wire_end)
            r.encap[n] = c.L_IPV6
            n += 1
            r.ipver = 6
            for k in range(16):
                r.src[k] = buf[pos + ip.V6_SRC_OFFSET + k]
                r.dst[k] = buf[pos + ip.V6_DST_OFFSET + k]
            r.ecn = (buf[pos + 1] >> 4) & 3
            r.l3_off = pos
            r.ip_len = wire_end - pos  # 40 + payload length, or to the frame end (jumbogram)
            r.sport = -1
            r.dport = -1
            r.tcp_flags = -1
            nh = read(buf, pos, ip.V6_NEXT_HEADER)
            p = pos + ip.IPV6_LEN
            fragment = False
            while (nh == ip.EXT_HOP_BY_HOP or nh == ip.EXT_ROUTING or nh == ip.EXT_DEST_OPTS
                   or nh == ip.EXT_FRAGMENT or nh == ip.EXT_AH or nh == ip.EXT_MOBILITY):
                if p + 8 > wire_end:
                    err = c.E_IPV6_BAD_EXT
                    break
                if p + 8 > cap_end:
                    err = c.E_TRUNCATED
                    break
                if nh == ip.EXT_FRAGMENT:
                    elen = 8
                    r.quirks |= c.Q_IP_FRAGMENT
                    if read(buf, p, ip.FRAG_OFFSET) != 0:
                        fragment = True
                    elif read(buf, p, ip.FRAG_MORE):
                        fragmented = True
                elif nh == ip.EXT_AH:
                    elen = (read(buf, p, ip.EXT_LEN) + 2) * 4
                else:
                    elen = (read(buf, p, ip.EXT_LEN) + 1) * 8
                nh = read(buf, p, ip.EXT_NEXT)
                p += elen
                if p > wire_end:
                    err = c.E_IPV6_BAD_EXT
                    break
            if err:
                break
            r.proto = nh
            pos = p
            r.l4_off = pos
            if fragment:
                r.quirks |= c.Q_IP_FRAGMENT
                break
            nxt = _after_ip_proto(nh)
        elif nxt == N_GRE:
            if pos + gre.BASE_LEN > cap_end:
                err = c.E_TRUNCATED
                break
            flags = read(buf, pos, gre.FLAGS)
            version = read(buf, pos, gre.VERSION)
            if version == 1:  # enhanced GRE (PPTP, RFC 2637): not a mirror; stop here
                r.encap[n] = c.L_GRE
                n += 1
                break
            if version != 0:
                err = c.E_GRE_BAD_VERSION
                break
            if r.tunnels >= max_tunnels:
                err = c.E_TOO_DEEP
                break
            r.encap[n] = c.L_GRE
            n += 1
            gproto = read(buf, pos, gre.PROTOCOL)
            p = pos + gre.BASE_LEN
            if flags & (gre.FLAG_C | gre.FLAG_R):
                p += 4
            key = -1
            seq = -1
            if flags & gre.FLAG_K:
                if p + 4 > cap_end:
                    err = c.E_TRUNCATED
                    break
                key = read(buf, p, gre.WORD)
                p += 4
            if flags & gre.FLAG_S:
                if p + 4 > cap_end:
                    err = c.E_TRUNCATED
                    break
                seq = read(buf, p, gre.WORD)
                p += 4
            if flags & gre.FLAG_R:
                r.quirks |= c.Q_GRE_ROUTING
                while True:
                    if p + gre.SRE_HEADER_LEN > cap_end:
                        err = c.E_GRE_BAD_ROUTING
                        break
                    fam = read(buf, p, gre.SRE_FAMILY)
                    slen = read(buf, p, gre.SRE_LENGTH)
                    p += gre.SRE_HEADER_LEN + slen
                    if fam == 0 and slen == 0:
                        break
                if err:
                    break
            if p > cap_end:
                err = c.E_TRUNCATED
                break
            if r.tunnels == 0:
                r.gre_seq = seq
                r.gre_key = key
            if gproto == gre.PROTO_ERSPAN_I_II:
                nxt = N_ERSPAN2 if flags & gre.FLAG_S else N_ERSPAN1
            elif gproto == gre.PROTO_ERSPAN_III:
                nxt = N_ERSPAN3
                if not flags & gre.FLAG_S:
                    r.quirks |= c.Q_ERSPAN3_NO_SEQ
            elif gproto == ethernet.ETHERTYPE_TEB:
                nxt = N_ETH
            elif gproto == ethernet.ETHERTYPE_IPV4:
                nxt = N_IPV4
            elif gproto == ethernet.ETHERTYPE_IPV6:
                nxt = N_IPV6
            else:
                nxt = N_DONE
            if nxt == N_ETH or nxt == N_IPV4 or nxt == N_IPV6:
                # plain GRE carrying a frame or a packet: the GRE header is the tunnel
                if r.tunnels == 0:
                    r.tunnel = c.L_GRE
                    _copy_outer(r)
                r.tunnels += 1
                r.inner_off = p
                r.inner_link = c.LINKTYPE_ETHERNET if nxt == N_ETH else c.LINKTYPE_RAW
                inner_wire_end = wire_end
                inner_cap_end = cap_end
                _clear_inner(r)
            pos = p
        elif nxt == N_ERSPAN1 or nxt == N_ERSPAN2 or nxt == N_ERSPAN3:
            layer = c.L_ERSPAN1
            hlen = 0
            payload = N_ETH
            if nxt != N_ERSPAN1:
                if pos + erspan.TYPE2_LEN > cap_end:
                    err = c.E_TRUNCATED
                    break
                ver = read(buf, pos, erspan.VER)
                if ver == erspan.VERSION_II:
                    layer = c.L_ERSPAN2
                    hlen = erspan.TYPE2_LEN
                elif ver == erspan.VERSION_III:
                    layer = c.L_ERSPAN3
                    hlen = erspan.TYPE3_LEN
                else:
                    err = c.E_ERSPAN_BAD_VERSION
                    break
                if (nxt == N_ERSPAN2) != (layer == c.L_ERSPAN2):
                    r.quirks |= c.Q_ERSPAN_VERSION_MISMATCH
                if pos + hlen > cap_end:
                    err = c.E_TRUNCATED
                    break
            first = r.tunnels == 0
            r.encap[n] = layer
            n += 1
            if first:
                r.tunnel = layer
                _copy_outer(r)
                r.erspan_type = layer - c.L_ERSPAN1 + 1
            if layer != c.L_ERSPAN1:
                vlan = read(buf, pos, erspan.VLAN)
                en = read(buf, pos, erspan.EN)
                t = read(buf, pos, erspan.T)
                if t:
                    r.quirks |= c.Q_MIRROR_TRUNCATED
                if first:
                    r.erspan_vlan = vlan
                    r.erspan_cos = read(buf, pos, erspan.COS)
                    r.erspan_en = en
                    r.erspan_t = t
                    r.erspan_session = read(buf, pos, erspan.SESSION)
            if layer == c.L_ERSPAN2:
                if en == 0 and vlan != 0:
                    r.quirks |= c.Q_VLAN_EN_MISMATCH
                if first:
                    r.erspan_index = read(buf, pos, erspan.INDEX)
            elif layer == c.L_ERSPAN3:
                ft = read(buf, pos, erspan.FT)
                o = read(buf, pos, erspan.O)
                if first:
                    r.erspan_ts = read(buf, pos, erspan.TIMESTAMP)
                    r.erspan_sgt = read(buf, pos, erspan.SGT)
                    r.erspan_p = read(buf, pos, erspan.P)
                    r.erspan_ft = ft
                    r.erspan_hw_id = read(buf, pos, erspan.HW_ID)
                    r.erspan_gra = read(buf, pos, erspan.GRA)
                    r.direction = 1 + read(buf, pos, erspan.D)
                if o:
                    if pos + hlen + erspan.PLATFORM_LEN > cap_end:
                        err = c.E_TRUNCATED
                        break
                    if first:
                        r.erspan_platform = read(buf, pos + hlen, erspan.PLATFORM_ID)
                        r.erspan_platform_info = read(buf, pos + hlen, erspan.PLATFORM_INFO)
                    hlen += erspan.PLATFORM_LEN
                if ft == erspan.FT_IP:
                    payload = N_IP_SNIFF
                elif ft == erspan.FT_CISCO_QUIRK and o == 0:
                    r.quirks |= c.Q_CISCO_FT7
                    hlen += erspan.CISCO_QUIRK_LEN
                    if pos + hlen > cap_end:
                        err = c.E_TRUNCATED
                        break
                elif ft != erspan.FT_ETHERNET:
                    err = c.E_ERSPAN_BAD_FT
                    break
            r.tunnels += 1
            pos += hlen
            r.inner_off = pos
            r.inner_link = c.LINKTYPE_ETHERNET if payload == N_ETH else c.LINKTYPE_RAW
            inner_wire_end = wire_end
            inner_cap_end = cap_end
            _clear_inner(r)
            nxt = payload
        elif nxt == N_UDP:
            if pos + transport.UDP_LEN > cap_end:
                err = c.E_TRUNCATED
                break
            ulen = read(buf, pos, transport.UDP_LENGTH)
            if ulen < transport.UDP_LEN:
                err = c.E_UDP_BAD_LENGTH
                break
            r.encap[n] = c.L_UDP
            n += 1
            sport = read(buf, pos, transport.SRC_PORT)
            dport = read(buf, pos, transport.DST_PORT)
            r.sport = sport
            r.dport = dport
            r.payload_len = wire_end - pos - transport.UDP_LEN
            pos += transport.UDP_LEN
            nxt = N_DONE
            for k in range(vxlan_ports.shape[0]):
                if dport == vxlan_ports[k]:
                    nxt = N_VXLAN
            for k in range(geneve_ports.shape[0]):
                if dport == geneve_ports[k]:
                    nxt = N_GENEVE
            if nxt == N_DONE and dport == roce.UDP_PORT:
                nxt = N_BTH
        elif nxt == N_BTH:
            if pos + roce.BTH_LEN > cap_end:
                break  # a sliced copy: the UDP datagram is known, its BTH is not
            r.encap[n] = c.L_BTH
            n += 1
            opcode = read(buf, pos, roce.OPCODE)
            r.bth_opcode = opcode
            r.bth_flags = (read(buf, pos, roce.BECN) * roce.F_BECN
                           | read(buf, pos, roce.FECN) * roce.F_FECN
                           | read(buf, pos, roce.ACKREQ) * roce.F_ACKREQ)
            r.bth_qp = read(buf, pos, roce.DEST_QP)
            r.bth_psn = read(buf, pos, roce.PSN)
            if opcode != roce.CNP and (opcode & 0x1F) in roce.AETH_OPERATIONS:
                if pos + roce.BTH_LEN + roce.AETH_LEN <= cap_end:
                    r.aeth_syndrome = read(buf, pos + roce.BTH_LEN, roce.SYNDROME)
            nxt = N_DONE
        elif nxt == N_VXLAN or nxt == N_GENEVE:
            if pos + vxlan.HEADER_LEN > cap_end:
                err = c.E_TRUNCATED
                break
            if r.tunnels >= max_tunnels:
                err = c.E_TOO_DEEP
                break
            hlen = vxlan.HEADER_LEN
            payload = N_ETH
            if nxt == N_VXLAN:
                layer = c.L_VXLAN
                if not read(buf, pos, vxlan.FLAGS) & vxlan.FLAG_I:
                    r.quirks |= c.Q_VXLAN_NO_I
                vni = read(buf, pos, vxlan.VNI)
            else:
                layer = c.L_GENEVE
                if read(buf, pos, geneve.VER) != 0:
                    err = c.E_GENEVE_BAD_VERSION
                    break
                hlen += read(buf, pos, geneve.OPT_LEN) * 4
                if pos + hlen > wire_end:
                    err = c.E_GENEVE_BAD_OPTIONS
                    break
                if pos + hlen > cap_end:
                    err = c.E_TRUNCATED
                    break
                vni = read(buf, pos, geneve.VNI)
                gp = read(buf, pos, geneve.PROTOCOL)
                if gp == ethernet.ETHERTYPE_TEB:
                    payload = N_ETH
                elif gp == ethernet.ETHERTYPE_IPV4:
                    payload = N_IPV4
                elif gp == ethernet.ETHERTYPE_IPV6:
                    payload = N_IPV6
                else:
                    payload = N_DONE
                err = _geneve_options(buf, pos + geneve.HEADER_LEN, pos + hlen, r,
                                      r.tunnels == 0)
                if err:
                    break
            r.encap[n] = layer
            n += 1
            if r.tunnels == 0:
                r.tunnel = layer
                _copy_outer(r)
                r.vni = vni
            r.tunnels += 1
            pos += hlen
            if payload != N_DONE:
                r.inner_off = pos
                r.inner_link = c.LINKTYPE_ETHERNET if payload == N_ETH else c.LINKTYPE_RAW
                inner_wire_end = wire_end
                inner_cap_end = cap_end
                _clear_inner(r)
            nxt = payload
        elif nxt == N_TCP:
            if pos + transport.TCP_MIN_LEN > cap_end:
                err = c.E_TRUNCATED
                break
            doff = read(buf, pos, transport.TCP_DATA_OFFSET) * 4
            if doff < transport.TCP_MIN_LEN:
                err = c.E_TCP_BAD_HEADER
                break
            r.encap[n] = c.L_TCP
            n += 1
            r.sport = read(buf, pos, transport.SRC_PORT)
            r.dport = read(buf, pos, transport.DST_PORT)
            r.tcp_flags = read(buf, pos, transport.TCP_FLAGS)
            r.tcp_seq = read(buf, pos, transport.TCP_SEQ)
            r.tcp_ack = read(buf, pos, transport.TCP_ACK)
            r.tcp_window = read(buf, pos, transport.TCP_WINDOW)
            r.payload_len = max(0, wire_end - pos - doff)
            nxt = N_DONE
        elif nxt == N_SCTP:
            if pos + transport.SCTP_MIN_LEN > cap_end:
                err = c.E_TRUNCATED
                break
            r.encap[n] = c.L_SCTP
            n += 1
            r.sport = read(buf, pos, transport.SRC_PORT)
            r.dport = read(buf, pos, transport.DST_PORT)
            nxt = N_DONE
        elif nxt == N_ICMP or nxt == N_ICMPV6:
            if pos + transport.ICMP_MIN_LEN > cap_end:
                err = c.E_TRUNCATED
                break
            r.encap[n] = c.L_ICMP if nxt == N_ICMP else c.L_ICMPV6
            n += 1
            r.icmp_type = read(buf, pos, transport.ICMP_TYPE)
            r.icmp_code = read(buf, pos, transport.ICMP_CODE)
            r.payload_len = max(0, wire_end - pos - transport.ICMP_HEADER_LEN)
            nxt = N_DONE
        elif nxt == N_ARP:
            r.encap[n] = c.L_ARP
            n += 1
            nxt = N_DONE
        else:
            nxt = N_DONE

    r.n_layers = n
    r.error = err
    r.vlan = r.erspan_vlan if r.erspan_type >= 2 else eth_vlan
    if r.inner_off >= 0:
        r.inner_caplen = max(0, min(inner_cap_end, start + caplen) - r.inner_off)
        r.len = max(0, inner_wire_end - r.inner_off)
    else:
        r.len = wirelen


@njit(inline="always", cache=True)
def _copy_outer(r) -> None:  # pragma: no cover - compiled
    r.outer_ipver = r.ipver
    for k in range(16):
        r.outer_src[k] = r.src[k]
        r.outer_dst[k] = r.dst[k]


@njit(cache=True)
def _geneve_options(buf, p, end, r, first) -> int:  # pragma: no cover - compiled
    """Walk the Geneve option TLVs (RFC 8926 §3.5); surface Google Cloud's (class 0x0132)."""
    count = 0
    while p < end:
        if p + geneve.OPTION_HEADER_LEN > end:
            return c.E_GENEVE_BAD_OPTIONS
        cls = read(buf, p, geneve.OPT_CLASS)
        typ = read(buf, p, geneve.OPT_TYPE)
        dlen = read(buf, p, geneve.OPT_DATA_LEN) * 4
        data = p + geneve.OPTION_HEADER_LEN
        if data + dlen > end:
            return c.E_GENEVE_BAD_OPTIONS
        count += 1
        if (first and cls == geneve.CLASS_GOOGLE and typ == geneve.GOOGLE_TYPE_NETWORK_ID
                and dlen >= 4):
            r.gcp_network_id = read(buf, data, geneve.GOOGLE_NETWORK_ID)
            r.gcp_direction = read(buf, data, geneve.GOOGLE_DIRECTION)
            if r.direction == 0:
                r.direction = 1 + r.gcp_direction
        p = data + dlen
    if first:
        r.geneve_opt_classes = min(count, 255)
    return 0


@njit(cache=True)
def decode_batch(buf, offset, caplen, wirelen, linktype, out, vxlan_ports, geneve_ports,
                 max_tunnels):  # pragma: no cover - compiled
    for i in range(offset.shape[0]):
        decode_frame(buf, offset[i], caplen[i], wirelen[i], linktype[i], out[i], vxlan_ports,
                     geneve_ports, max_tunnels)
