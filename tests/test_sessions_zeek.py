"""Sessions against Zeek itself: the conn.log Zeek's own test suite expects for the shared
captures (tests/data/zeek, see SOURCES.md), compared field by field, and the conn.log
flowscope writes read back with a strict parser of Zeek's log format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .zeeklog import read_log

DATA = Path(__file__).parent / "data" / "zeek"
CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures"
COMPARED = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "duration",
            "orig_bytes", "resp_bytes", "conn_state", "missed_bytes", "history", "orig_pkts",
            "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")
TUNNEL_PORTS = {4789, 6081}  # Zeek also logs the tunnels themselves; flowscope the mirrored traffic


def flowscope_conn_log(capture: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "flowscope", "sessions", str(capture),
                          "--format", "zeek"], capture_output=True, text=True, check=True)
    return out.stdout


def key(row: dict) -> tuple:
    return tuple(row[f] for f in COMPARED)


@pytest.mark.parametrize("name", sorted(p.name.removesuffix(".conn.log")
                                        for p in DATA.glob("*.conn.log")))
def test_matches_zeek_baseline(name: str) -> None:
    capture = CAPTURES / f"{name}.pcap"
    if not capture.exists():
        pytest.skip(f"{capture} not present (../shared beside the checkout)")
    _, expected = read_log((DATA / f"{name}.conn.log").read_text(), btest=True)
    expected = [r for r in expected
                if not (r["proto"] == "udp" and r["id.resp_p"] in TUNNEL_PORTS)]
    _, got = read_log(flowscope_conn_log(capture))
    assert sorted(map(key, got)) == sorted(map(key, expected))


def test_zeek_output_is_strict_zeek_format(tmp_path: Path) -> None:
    meta, rows = read_log(flowscope_conn_log(CAPTURES / "zeek__tunnels_gre-sample.pcap"))
    assert meta["path"] == "conn"
    assert meta["fields"].split("\t")[:6] == ["ts", "uid", "id.orig_h", "id.orig_p",
                                              "id.resp_h", "id.resp_p"]
    assert len({r["uid"] for r in rows}) == len(rows) == 7
    assert all(r["uid"].startswith("C") and len(r["uid"]) == 18 for r in rows)


def test_single_packet_connection_has_unset_duration_like_zeek() -> None:
    _, rows = read_log(flowscope_conn_log(CAPTURES / "zeek__tunnels_vxlan-triple-v2.pcap"))
    dns = [r for r in rows if r["id.resp_p"] == 53]
    assert len(dns) == 1
    assert (dns[0]["duration"], dns[0]["orig_bytes"], dns[0]["resp_bytes"]) == (None, None, None)
    assert dns[0]["history"] == "D" and dns[0]["conn_state"] == "S0"


@pytest.mark.parametrize("name", ["zeek__erspanII", "zeek__tunnels_vxlan-encapsulated-http"])
def test_decapsulated_capture_keeps_zeeks_ip_bytes(name: str, tmp_path: Path) -> None:
    """Untunnelled frames (here, the inner frames `flowscope decap` wrote) count the IP
    length fields too, like Zeek's *_ip_bytes, whatever their place in the read buffer."""
    capture = CAPTURES / f"{name}.pcap"
    if not capture.exists():
        pytest.skip(f"{capture} not present (../shared beside the checkout)")
    inner = tmp_path / "inner.pcapng"
    subprocess.run([sys.executable, "-m", "flowscope", "decap", str(capture), "-o", str(inner)],
                   capture_output=True, text=True, check=True)
    fields = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
              "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")
    _, expected = read_log((DATA / f"{name}.conn.log").read_text(), btest=True)
    expected = [r for r in expected
                if not (r["proto"] == "udp" and r["id.resp_p"] in TUNNEL_PORTS)]
    _, got = read_log(flowscope_conn_log(inner))
    assert sorted(tuple(r[f] for f in fields) for r in got) == \
        sorted(tuple(r[f] for f in fields) for r in expected)
