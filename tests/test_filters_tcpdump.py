"""tcpdump as the oracle: the frames a filter or a UDF rule selects are the frames tcpdump's
BPF selects, on scapy-encoded captures — plain, and mirrored then decapsulated.

UDF rules are compared with the BPF byte loads that say the same thing (``l4+8`` on UDP is
``udp[8:2]``, ``l3`` is ``ip[...]``/``ip6[...]``, ``l2`` is ``ether[...]``, ``l5`` on TCP
is ``tcp[((tcp[12] & 0xf0) >> 2) + off : 2]``).  libpcap's ``tcp[]``/``udp[]`` are IPv4
only and skip non-first fragments; the flowscope side says ``ip and udp`` to match.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope.filters import Selector
from flowscope.pipeline import PacketRun

from .filters_gen import (
    HOSTS4,
    HOSTS6,
    PORTS,
    needs_tcpdump,
    plain_frames,
    tcpdump_frames,
    tunnelled,
    write_pcap,
)

pytestmark = needs_tcpdump

N_FRAMES = 400


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("filters")
    records = plain_frames(N_FRAMES)
    plain = write_pcap(d / "plain.pcap", records)
    mirrored = tunnelled(d, records)
    decapped = d / "decapped.pcapng"
    subprocess.run([sys.executable, "-m", "flowscope", "decap", str(mirrored.path), "-o",
                    str(decapped), "--split-by", "none"], check=True, capture_output=True)
    return {"plain": plain, "mirrored": mirrored.path, "decapped": decapped}


def selected(path: Path, selector: Selector) -> list[int]:
    frames: list[int] = []
    for batch, rows in PacketRun([str(path)]).batches():
        frames.extend(int(f) for f in rows["frame"][selector.mask(batch, rows)])
    return frames


EXPRESSIONS = [
    "tcp", "udp", "icmp", "icmp6", "sctp", "ip", "ip6",
    "host 10.0.0.1", "src host 10.0.0.1", "dst host 10.0.0.2", "host 2001:db8::1",
    "ip6 host 2001:db8::2", "ip host 10.0.1.5", "src 192.168.1.10",
    "host 10.0.0.1 or 10.0.0.2", "src host 10.0.0.1 and dst host 10.0.0.2",
    "host 10.0.0.1 and not 10.0.0.2", "src and dst net 10.0.0.0/16",
    "src or dst net 10.0.0.0/16", "net 10.0.0.0/8", "net 10", "net 192.168 or net 172.16.0.0/12",
    "net 10.0.0.0 mask 255.255.254.0", "net 2001:db8::/32", "dst net 2001:db8:1::/48",
    "port 443", "tcp port 443", "udp port 53", "src port 22", "dst port 80 or 443",
    "tcp dst port 80 or 443", "portrange 1000-5000", "tcp portrange 0-1024",
    "udp dst portrange 4000-5000", "sctp port 5000", "port http or domain",
    "not tcp", "! udp and ip6", "tcp and not port 22", "tcp or udp and host 10.0.0.1",
    "not (port 80 or port 443)", "(tcp or udp) and not (src net 10.0.0.0/24)",
    "tcp && port 443 || icmp", "proto 132", "ip proto 1", "ip6 proto 58", "proto \\udp",
    "less 100", "greater 200", "less 80 and tcp", "ip and not tcp and not udp",
]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_expression_selects_what_tcpdump_selects(captures: dict[str, Path], expr: str) -> None:
    want = tcpdump_frames(captures["plain"], expr)
    assert selected(captures["plain"], Selector(expr)) == want


@pytest.mark.parametrize("expr", EXPRESSIONS[::3])
def test_expression_on_mirrored_frames_matches_tcpdump_on_decapsulated(
        captures: dict[str, Path], expr: str) -> None:
    want = tcpdump_frames(captures["decapped"], expr)
    assert want == tcpdump_frames(captures["plain"], expr)  # the decapsulation is faithful
    assert selected(captures["mirrored"], Selector(expr)) == want


# -- generated expressions -----------------------------------------------------------------

def _primitives() -> st.SearchStrategy[str]:
    host = st.sampled_from(HOSTS4 + HOSTS6)
    port = st.sampled_from(PORTS)
    direction = st.sampled_from(["", "src ", "dst ", "src or dst ", "src and dst "])
    return st.one_of(
        st.sampled_from(["tcp", "udp", "icmp", "icmp6", "sctp", "ip", "ip6"]),
        st.builds(lambda d, h: f"{d}host {h}", direction, host),
        st.builds(lambda d, n: f"{d}net {n}", direction,
                  st.sampled_from(["10.0.0.0/8", "10.0.0.0/24", "192.168.0.0/16", "10.0",
                                   "2001:db8::/32", "2001:db8:1::/48", "fe80::/10"])),
        st.builds(lambda p, d, n: f"{p}{d}port {n}", st.sampled_from(["", "tcp ", "udp "]),
                  direction, port),
        st.builds(lambda a, b: f"portrange {min(a, b)}-{max(a, b)}", port, port),
        st.builds(lambda op, n: f"{op} {n}", st.sampled_from(["less", "greater"]),
                  st.integers(40, 200)),
    )


def _expressions() -> st.SearchStrategy[str]:
    return st.recursive(
        _primitives(),
        lambda inner: st.one_of(
            st.builds(lambda a, op, b: f"{a} {op} {b}", inner,
                      st.sampled_from(["and", "or", "&&", "||"]), inner),
            st.builds(lambda a: f"not {a}", inner),
            st.builds(lambda a: f"({a})", inner),
            # tcpdump's shorthand: a bare value after `or`/`and` reuses the qualifiers
            st.builds(lambda h, g, op: f"host {h} {op} {g}", st.sampled_from(HOSTS4),
                      st.sampled_from(HOSTS4), st.sampled_from(["or", "and not"])),
        ),
        max_leaves=6)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expr=_expressions())
def test_generated_expressions_select_what_tcpdump_selects(
        captures: dict[str, Path], expr: str) -> None:
    assert selected(captures["plain"], Selector(expr)) == tcpdump_frames(captures["plain"], expr)


# -- UDF rules -----------------------------------------------------------------------------

# (flowscope filter, UDF base as flowscope spells it, the BPF load of the same word)
BASES = [
    (None, "l2", "ether[{o}:2]"),
    ("ip", "l3", "ip[{o}:2]"),
    ("ip6", "l3", "ip6[{o}:2]"),
    ("ip and udp", "l4", "udp[{o}:2]"),
    ("ip and tcp", "l4", "tcp[{o}:2]"),
    ("ip and udp", "l5", "udp[8 + {o}:2]"),
    ("ip and tcp", "l5", "tcp[((tcp[12] & 0xf0) >> 2) + {o}:2]"),
    ("ip6 and udp", "l4", "ip6 and ip6[6] = 17 and ip6[40 + {o}:2]"),
]


def _bpf(load: str, offset: int, value: int, mask: int) -> str:
    return f"{load.format(o=offset)} & {mask:#x} = {value:#x}"


@pytest.mark.parametrize(("expr", "base", "load"), BASES)
@pytest.mark.parametrize(("offset", "value", "mask"), [
    (8, 0x8100, 0xFF00), (20, 0x6000, 0xE000), (0, 0x0800, 0xFFFF), (12, 0x0002, 0x0002),
    (2, 0x12B7, 0xFFFF), (9, 0x0011, 0x00FF), (60, 0, 0), (126, 0, 0),
])
def test_udf_rule_selects_what_the_bpf_load_selects(
        captures: dict[str, Path], expr: str | None, base: str, load: str, offset: int,
        value: int, mask: int) -> None:
    rule = f"{base}+{offset}={value:#x}/{mask:#x}"
    want = tcpdump_frames(captures["plain"], _bpf(load, offset, value, mask))
    assert selected(captures["plain"], Selector(expr, udf=[rule])) == want


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(BASES), offset=st.integers(0, 126),
       value=st.integers(0, 0xFFFF), mask=st.integers(0, 0xFFFF))
def test_generated_udf_rules_select_what_the_bpf_load_selects(
        captures: dict[str, Path], base: tuple[str | None, str, str], offset: int, value: int,
        mask: int) -> None:
    expr, name, load = base
    value &= mask
    rule = f"{name}+{offset}={value:#x}/{mask:#x}"
    want = tcpdump_frames(captures["plain"], _bpf(load, offset, value, mask))
    assert selected(captures["plain"], Selector(expr, udf=[rule])) == want


PRESET_BPF = {
    "rdma-cnp": "udp dst port 4791 and udp[8:2] & 0xff00 = 0x8100",
    "rdma-nak-psn": "udp dst port 4791 and udp[8:2] & 0xff00 = 0x1100 "
                    "and udp[20:2] & 0xff00 = 0x6000",
    "rdma-nak-any": "udp dst port 4791 and udp[8:2] & 0xff00 = 0x1100 "
                    "and udp[20:2] & 0xe000 = 0x6000",
    "tcp-syn": "tcp[tcpflags] & tcp-syn != 0",
    "tcp-rst": "tcp[tcpflags] & tcp-rst != 0",
}


@pytest.mark.parametrize("name", sorted(PRESET_BPF))
def test_preset_selects_what_tcpdump_selects(captures: dict[str, Path], name: str) -> None:
    # libpcap's udp[]/tcp[] are IPv4 only: compare the IPv4 frames
    want = tcpdump_frames(captures["plain"], f"ip and {PRESET_BPF[name]}")
    got = selected(captures["plain"], Selector("ip", preset=name))
    assert got == want
    assert want  # the capture holds such frames


@pytest.mark.parametrize("name", sorted(PRESET_BPF))
def test_preset_on_mirrored_frames_matches_tcpdump_on_decapsulated(
        captures: dict[str, Path], name: str) -> None:
    want = tcpdump_frames(captures["decapped"], f"ip and {PRESET_BPF[name]}")
    assert selected(captures["mirrored"], Selector("ip", preset=name)) == want


# -- real captures (tcpdump, Zeek, Arkime, Suricata test suites) ---------------------------

SHARED = Path(__file__).resolve().parents[2] / "shared" / "captures"
SHARED_FILES = sorted(p.name for p in SHARED.glob("*.pcap")) if SHARED.exists() else []
SHARED_RULES = [  # (flowscope expression, UDF rules, tcpdump expression)
    ("ip", (), "ip"), ("ip6", (), "ip6"), ("tcp", (), "tcp"), ("udp", (), "udp"),
    ("icmp", (), "icmp"), ("port 80 or port 53", (), "port 80 or port 53"),
    ("tcp and greater 100", (), "tcp and greater 100"),
    # flowscope's host/net match IP packets only; tcpdump's match ARP too
    ("net 10.0.0.0/8 or net 192.168.0.0/16", (),
     "ip and (net 10.0.0.0/8 or net 192.168.0.0/16)"),
    ("ip and tcp", ("l4+12=0x0002/0x0002",), "tcp[12:2] & 0x0002 = 0x0002"),
    ("ip and udp", ("l5+0=0x0000/0x8000",), "udp[8:2] & 0x8000 = 0"),
]


def _records(data: bytes) -> list[bytes]:
    """The records (header and bytes) of a nanosecond pcap tcpdump wrote."""
    import struct

    out, pos = [], 24
    while pos < len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        out.append(data[pos : pos + 16 + caplen])
        pos += 16 + caplen
    return out


def _dump(path: Path, expr: str) -> list[bytes] | None:
    done = subprocess.run(["tcpdump", "-O", "-r", str(path), "-w", "-",
                           "--time-stamp-precision=nano", expr], capture_output=True)
    return _records(done.stdout) if done.returncode == 0 else None


def _positions(everything: list[bytes], chosen: list[bytes]) -> list[int]:
    """0-based positions in file order of the frames tcpdump chose (a subsequence)."""
    positions, i = [], 0
    for record in chosen:
        while everything[i] != record:
            i += 1
        positions.append(i)
        i += 1
    return positions


@pytest.mark.skipif(not SHARED_FILES, reason="../shared/captures not present")
@pytest.mark.parametrize("name", SHARED_FILES)
def test_real_mirror_captures_agree_with_tcpdump_on_their_decapsulation(
        tmp_path: Path, name: str) -> None:
    decapped = tmp_path / "inner.pcapng"
    subprocess.run([sys.executable, "-m", "flowscope", "decap", str(SHARED / name), "-o",
                    str(decapped), "--split-by", "none"], check=True, capture_output=True)
    everything = _dump(decapped, "")
    if everything is None:
        pytest.skip(f"tcpdump cannot read the decapsulation of {name} (nothing mirrored)")
    for expr, udf, bpf in SHARED_RULES:
        # flowscope looks through an 802.1Q tag, as a switch's parser; BPF needs `vlan and`
        chosen = _dump(decapped, f"({bpf}) or (vlan and ({bpf}))")
        if chosen is None:  # not Ethernet: no 802.1Q either
            chosen = _dump(decapped, bpf)
        assert chosen is not None
        sel, got, k = Selector(expr, udf=udf), [], 0
        for batch, rows in PacketRun([str(SHARED / name)]).batches():
            mirrored = (rows["inner_off"] >= 0) & (rows["inner_caplen"] >= 0)
            hit = sel.mask(batch, rows)[mirrored]
            got.extend(int(j) + k for j in np.flatnonzero(hit))
            k += int(mirrored.sum())
        assert got == _positions(everything, chosen), (expr, bpf)
