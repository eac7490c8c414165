"""Differential tests: flowscope against tshark on every shared capture.

For every frame both decode, the innermost addresses and ports, and the ERSPAN session,
VLAN and GRE sequence number must be equal.  Where flowscope knowingly decodes more than
tshark 4.0, the test names the frames and says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flowscope.decode.codes import L_IPV4, L_IPV6
from flowscope.pipeline import decode_files
from flowscope.sinks.arrow import packets_table

from .tshark import fields, needs_tshark

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures"
ALL = sorted(CAPTURES.glob("*.pcap"))
needs_shared = pytest.mark.skipif(not ALL, reason=f"shared captures not found at {CAPTURES}")

FIELDS = ["frame.number", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport",
          "tcp.dstport", "udp.srcport", "udp.dstport", "erspan.spanid", "erspan.vlan",
          "gre.sequence_number", "vxlan.vni", "geneve.vni"]

def _occurrence(values: list[str], k: int) -> str | None:
    return values[k] if 0 <= k < len(values) else None


@needs_tshark
@needs_shared
@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_inner_fields_equal_tshark(path: Path) -> None:
    rows = decode_files([str(path)])
    ours = packets_table(rows).to_pylist()
    theirs = fields(str(path), FIELDS)
    assert len(ours) == len(theirs)
    mismatches = []
    for r, t, o in zip(rows, theirs, ours, strict=True):
        layers = list(r["encap"][: r["n_layers"]])
        n4, n6 = layers.count(L_IPV4), layers.count(L_IPV6)
        if r["ipver"] == 4:
            want = (_occurrence(t["ip.src"], n4 - 1), _occurrence(t["ip.dst"], n4 - 1))
        elif r["ipver"] == 6:
            want = (_occurrence(t["ipv6.src"], n6 - 1), _occurrence(t["ipv6.dst"], n6 - 1))
        else:
            want = (None, None)
        got = (o["src"], o["dst"])
        if r["proto"] == 6:
            k = layers.count(12) - 1
            want += (_occurrence(t["tcp.srcport"], k), _occurrence(t["tcp.dstport"], k))
        elif r["proto"] == 17:
            k = layers.count(11) - 1
            want += (_occurrence(t["udp.srcport"], k), _occurrence(t["udp.dstport"], k))
        else:
            want += (None, None)
        got += (None if o["sport"] is None else str(o["sport"]),
                None if o["dport"] is None else str(o["dport"]))
        if r["erspan_type"] >= 2:
            want += (_occurrence(t["erspan.spanid"], 0), _occurrence(t["erspan.vlan"], 0))
            got += (str(o["erspan_session"]), str(o["vlan"]))
        if o["gre_seq"] is not None:
            want += (_occurrence(t["gre.sequence_number"], 0),)
            got += (str(o["gre_seq"]),)
        if o["vni"] is not None:
            vni = t["vxlan.vni"] + t["geneve.vni"]
            want += (str(int(vni[0], 0)) if vni else None,)
            got += (str(o["vni"]),)
        if want != got:
            mismatches.append((o["frame"], want, got, o["error"]))
    # flowscope decodes the headers a first IP fragment carries (quirk ip_fragment) where
    # tshark shows only data and decodes the reassembled packet on the last fragment: those
    # frames, and only those, may differ.
    fragments = {int(o["frame"]) for o in ours if "ip_fragment" in o["quirks"]}
    assert [m for m in mismatches if m[0] not in fragments] == []
