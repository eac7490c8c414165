"""The command line as a user meets it: JSON keys (the contract), decap output Wireshark opens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .tshark import needs_tshark

SHARED = Path(__file__).resolve().parents[2] / "shared" / "captures"
FLOWSCOPE = [sys.executable, "-m", "flowscope"]
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/captures not present")

PACKET_KEYS = ["frame", "ts", "encap", "erspan_type", "erspan_session", "gre_seq", "vni",
               "direction", "vlan", "src", "dst", "proto", "sport", "dport", "tcp_flags", "len",
               "orig_ts", "error", "quirks"]
MIRROR_KEYS = ["outer_src", "outer_dst", "encap", "erspan_type", "session", "vni", "gre_key",
               "direction", "packets", "bytes", "first_ts", "last_ts", "loss_measurable", "lost",
               "duplicates", "reordered", "seq_resets", "quirks"]


def _jsonl(*args: str) -> list[dict]:
    out = subprocess.run(FLOWSCOPE + list(args), capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


@needs_shared
def test_packets_jsonl_keys_and_values() -> None:
    rows = _jsonl("packets", str(SHARED / "zeek__erspanII.pcap"), "--format", "jsonl")
    assert len(rows) == 4
    assert list(rows[0]) == PACKET_KEYS
    assert rows[0]["encap"] == ["eth", "ipv4", "gre", "erspan2", "eth", "ipv4", "icmp"]
    assert (rows[0]["erspan_type"], rows[0]["erspan_session"], rows[0]["gre_seq"],
            rows[0]["vlan"]) == (2, 100, 1796, 23)
    assert (rows[0]["src"], rows[0]["dst"], rows[0]["proto"]) == ("23.0.0.2", "23.0.0.3", 1)
    assert rows[0]["direction"] is None and rows[0]["error"] is None


@needs_shared
def test_packets_limit_and_tcp_flags() -> None:
    rows = _jsonl("packets", str(SHARED / "zeek__tunnels_vxlan-encapsulated-http.pcap"),
                  "--format", "jsonl", "--limit", "3")
    assert [r["frame"] for r in rows] == [1, 2, 3]
    assert [r["tcp_flags"] for r in rows] == ["S", "SA", "A"]
    assert [r["vni"] for r in rows] == [1, 1, 1]


@needs_shared
def test_mirrors_jsonl_counts_sequence_and_directions() -> None:
    rows = _jsonl("mirrors", str(SHARED / "tcpdump__erspan-type-ii-3.pcap"),
                  str(SHARED / "zeek__erspanIII.pcap"), "--format", "jsonl")
    assert list(rows[0]) == MIRROR_KEYS
    by_session = {(r["encap"], r["session"]): r for r in rows}
    ii = by_session[("erspan2", 101)]
    assert (ii["packets"], ii["loss_measurable"], ii["lost"], ii["duplicates"]) == (
        108, True, 0, 0)
    iii = by_session[("erspan3", 0)]
    assert iii["direction"] == "both"


@needs_shared
def test_mirrors_without_sequence_numbers_are_not_measurable() -> None:
    rows = _jsonl("mirrors", str(SHARED / "zeek__erspanI.pcap"),
                  str(SHARED / "tcpdump__vxlan.pcap"), "--format", "jsonl")
    assert {r["encap"] for r in rows} == {"erspan1", "vxlan"}
    assert all(r["loss_measurable"] is False and r["lost"] is None for r in rows)


@needs_tshark
@needs_shared
def test_decap_of_every_shared_capture_opens_in_tshark(tmp_path: Path) -> None:
    out = tmp_path / "inner.pcapng"
    captures = sorted(str(p) for p in SHARED.glob("*.pcap"))
    r = subprocess.run(FLOWSCOPE + ["decap", *captures, "-o", str(out)], capture_output=True,
                       text=True, check=True)
    assert "wrote 576 frames" in r.stderr
    t = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.interface_id",
                        "-e", "frame.len", "-e", "frame.cap_len"], capture_output=True, text=True,
                       check=True)
    lines = [line.split("\t") for line in t.stdout.splitlines()]
    assert len(lines) == 576
    assert all(int(wire) >= int(cap) for _, wire, cap in lines)


@needs_tshark
@needs_shared
def test_decap_recovers_the_inner_frame_bytes(tmp_path: Path) -> None:
    """The inner frames, byte for byte, as tshark sees them inside the ERSPAN packets."""
    src = SHARED / "zeek__erspanII.pcap"
    out = tmp_path / "inner.pcapng"
    subprocess.run(FLOWSCOPE + ["decap", str(src), "-o", str(out)], check=True,
                   capture_output=True)
    theirs = subprocess.run(["tshark", "-r", str(src), "-T", "fields", "-e", "eth.src",
                             "-e", "eth.dst", "-e", "ip.id"], capture_output=True, text=True,
                            check=True).stdout
    inner = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "eth.src", "-e",
                            "eth.dst", "-e", "ip.id", "-e", "frame.comment"], capture_output=True,
                           text=True, check=True).stdout
    for outer, mine in zip(theirs.splitlines(), inner.splitlines(), strict=True):
        o = [f.split(",")[-1] for f in outer.split("\t")]
        m = mine.split("\t")
        assert m[:3] == o
        assert m[3].startswith("erspan2 session=100 seq=")


@pytest.mark.parametrize(("env", "want"), [({}, "False system"),
                                         ({"NUMPY_MADVISE_HUGEPAGE": "1",
                                           "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"},
                                          "True mimalloc")])
def test_commands_run_on_small_pages(env: dict[str, str], want: str) -> None:
    """The command line turns off NumPy's huge-page madvise and Arrow's mimalloc (page faults
    that wait for the kernel to compact memory), unless the user chose otherwise."""
    import os

    environ = {k: v for k, v in os.environ.items()
               if k not in ("NUMPY_MADVISE_HUGEPAGE", "ARROW_DEFAULT_MEMORY_POOL")}
    out = subprocess.run(
        [sys.executable, "-c", "import flowscope.cli, numpy, pyarrow; "
         "print(numpy._core.multiarray._get_madvise_hugepage(), "
         "pyarrow.default_memory_pool().backend_name)"],
        capture_output=True, text=True, env=environ | env, check=True)
    assert out.stdout.strip() == want
