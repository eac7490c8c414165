"""Exact-value tests of the decoder on captures generated independently with scapy
(tests/generated.py): every expected value comes from what was handed to scapy."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scapy.packet import Raw

from flowscope.pipeline import PacketRun, decode_files
from flowscope.sinks.arrow import mirrors_table, packets_table

from . import generated as gen

FLOWSCOPE = [sys.executable, "-m", "flowscope"]

# Truth keys that name a raw decoded column rather than a packets-table column.
RAW_COLUMNS = {"orig_ts_ns": "orig_ts", "inner_caplen": "inner_caplen",
               "erspan_platform": "erspan_platform", "gcp_network_id": "gcp_network_id",
               "gcp_direction": "gcp_direction", "inner_link": "inner_link"}


def decoded(cap: gen.Capture) -> tuple[np.ndarray, list[dict[str, Any]]]:
    rows = decode_files([str(cap.path)])
    return rows, packets_table(rows).to_pylist()


def mirror_rows(cap: gen.Capture) -> list[dict[str, Any]]:
    run = PacketRun([str(cap.path)])
    for _ in run.batches():
        pass
    return mirrors_table(run.mirrors).to_pylist()


def frame_mismatches(cap: gen.Capture) -> list[tuple[int, str, Any, Any]]:
    rows, table = decoded(cap)
    assert len(table) == len(cap.frames)
    bad = []
    for i, truth in enumerate(cap.frames):
        for key, want in truth.items():
            got = int(rows[i][RAW_COLUMNS[key]]) if key in RAW_COLUMNS else table[i][key]
            if got != want:
                bad.append((i + 1, key, want, got))
    return bad


def stream_mismatches(cap: gen.Capture) -> list[tuple[int, str, Any, Any]]:
    streams = mirror_rows(cap)
    assert len(streams) == len(cap.streams)
    return [(j, key, want, streams[j][key])
            for j, truth in enumerate(cap.streams)
            for key, want in truth.items() if streams[j][key] != want]


def check(cap: gen.Capture) -> None:
    """Every frame and stream of the capture decodes to its ground truth."""
    assert frame_mismatches(cap) == []
    if cap.streams:
        assert stream_mismatches(cap) == []


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*FLOWSCOPE, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- a minimal pcapng reader for the decap output (little-endian sections, as written) --------

def _options(raw: bytes) -> dict[int, bytes]:
    opts, p = {}, 0
    while p + 4 <= len(raw):
        code, length = struct.unpack_from("<HH", raw, p)
        if code == 0:
            break
        opts[code] = raw[p + 4 : p + 4 + length]
        p += 4 + length + (-length) % 4
    return opts


def read_pcapng(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    data = path.read_bytes()
    assert data[:4] == b"\x0a\x0d\x0d\x0a"
    assert struct.unpack_from("<I", data, 8)[0] == 0x1A2B3C4D
    interfaces: list[dict[str, Any]] = []
    packets: list[dict[str, Any]] = []
    p = 0
    while p < len(data):
        btype, blen = struct.unpack_from("<II", data, p)
        assert struct.unpack_from("<I", data, p + blen - 4)[0] == blen
        body = data[p + 8 : p + blen - 4]
        if btype == 1:  # Interface Description Block
            link, _, _snap = struct.unpack_from("<HHI", body)
            opts = _options(body[8:])
            interfaces.append({"link": link, "name": opts.get(2, b"").decode(),
                               "tsresol": opts.get(9)})
        elif btype == 6:  # Enhanced Packet Block
            iface, hi, lo, caplen, origlen = struct.unpack_from("<IIIII", body)
            opts = _options(body[20 + caplen + (-caplen) % 4 :])
            flags = struct.unpack("<I", opts[2])[0] if 2 in opts else None
            packets.append({"iface": iface, "ts": (hi << 32) | lo, "caplen": caplen,
                            "len": origlen, "data": body[20 : 20 + caplen], "flags": flags,
                            "comment": opts.get(1, b"").decode()})
        p += blen
    return interfaces, packets


def decap(tmp_path: Path, *inputs: gen.Capture, extra: tuple[str, ...] = ()) -> Path:
    out = tmp_path / "out.pcapng"
    run_cli("decap", *(str(c.path) for c in inputs), "-o", str(out), *extra)
    return out


# -- ERSPAN II ------------------------------------------------------------------------------

def test_erspan2_over_ipv6_outer_with_destination_options(tmp_path: Path) -> None:
    cap = gen.erspan2_over_ipv6(tmp_path)
    check(cap)
    rows, _ = decoded(cap)
    assert rows["outer_ipver"].tolist() == [6, 6, 6]
    assert rows["erspan_index"].tolist() == [0x12345] * 3


def test_erspan2_t_bit_sets_mirror_truncated_quirk(tmp_path: Path) -> None:
    cap = gen.erspan2_t_bit(tmp_path)
    cap.frames, cap.records = cap.frames[:1], cap.records[:1]
    gen.write_pcap(cap.path, cap.records)
    check(cap)


def test_sliced_mirror_copy_keeps_headers_and_original_length(tmp_path: Path) -> None:
    cap = gen.erspan2_t_bit(tmp_path)
    check(cap)
    rows, table = decoded(cap)
    # the IPv4 total length of the mirrored packet (1040) + its Ethernet header
    assert table[1]["len"] == 14 + 20 + 20 + 1000
    assert int(rows[1]["inner_caplen"]) == 64


def test_erspan1_has_no_session_and_loss_not_measurable(tmp_path: Path) -> None:
    check(gen.erspan1(tmp_path))


def test_erspan2_carrying_vxlan_decodes_to_inner_tcp(tmp_path: Path) -> None:
    cap = gen.erspan2_carrying_vxlan(tmp_path)
    check(cap)
    _, table = decoded(cap)
    assert table[0]["encap"][-5:] == ["udp", "vxlan", "eth", "ipv4", "tcp"]


# -- ERSPAN III -----------------------------------------------------------------------------

@pytest.mark.parametrize("platform", sorted(gen.PLATFORMS))
def test_erspan3_platform_timestamp_restored_exactly(tmp_path: Path, platform: int) -> None:
    cap = gen.erspan3_platform(tmp_path, platform)
    check(cap)
    rows, table = decoded(cap)
    hw0 = gen.PLATFORMS[platform][1]
    assert rows["orig_ts"].tolist() == [hw0, hw0 + gen.STEP_NS]
    assert table[0]["orig_ts"] == pytest.approx(hw0 / 1e9, abs=1e-6)
    assert rows["erspan_gra"].tolist() == [gen.PLATFORMS[platform][0]] * 2


def test_erspan3_100us_timestamp_unwraps_across_32bit_rollover(tmp_path: Path) -> None:
    hw0 = gen.ROLLOVER_100US_HW0
    cap = gen.erspan3_platform(tmp_path, 1, hw0=hw0, capture0=hw0 + 250_000_000)
    check(cap)
    rows, _ = decoded(cap)
    assert rows["erspan_ts"].tolist() == [2**32 - 5, 5]
    assert rows["orig_ts"].tolist() == [hw0, hw0 + gen.STEP_NS]


def test_erspan3_ip_payload_ft2_decodes_without_ethernet(tmp_path: Path) -> None:
    check(gen.erspan3_ip_payload(tmp_path))


def test_erspan3_d_bit_gives_egress_direction(tmp_path: Path) -> None:
    check(gen.erspan3_directions(tmp_path))


def test_erspan3_without_gre_sequence_sets_quirk(tmp_path: Path) -> None:
    check(gen.erspan3_without_seq(tmp_path))


# -- GRE sequence accounting ----------------------------------------------------------------

def test_gre_sequence_gaps_count_exact_loss(tmp_path: Path) -> None:
    check(gen.gre_sequence(tmp_path, "gaps"))


def test_gre_sequence_duplicates_counted(tmp_path: Path) -> None:
    check(gen.gre_sequence(tmp_path, "duplicates"))


def test_gre_sequence_swapped_pair_is_reordering_not_loss(tmp_path: Path) -> None:
    check(gen.gre_sequence(tmp_path, "reordered"))


def test_gre_sequence_counter_reset_is_not_loss(tmp_path: Path) -> None:
    check(gen.gre_sequence(tmp_path, "reset"))


def test_gre_sequence_wraparound_is_not_a_reset(tmp_path: Path) -> None:
    check(gen.gre_sequence(tmp_path, "wraparound"))


def test_gre_sequence_reordering_at_capture_start_does_not_hide_loss(tmp_path: Path) -> None:
    check(gen.gre_sequence(tmp_path, "reordered_at_start"))


def test_gre_sequence_straggler_beyond_window_is_not_loss(tmp_path: Path) -> None:
    check(gen.gre_sequence(tmp_path, "late_beyond_window"))


def test_gre_sequence_stuck_at_zero_is_not_measurable(tmp_path: Path) -> None:
    check(gen.gre_sequence(tmp_path, "stuck_at_zero"))


def test_mirrors_cli_reports_exact_loss(tmp_path: Path) -> None:
    cap = gen.gre_sequence(tmp_path, "gaps")
    streams = jsonl(run_cli("mirrors", str(cap.path), "--format", "jsonl").stdout)
    assert [(s["session"], s["packets"], s["lost"], s["loss_measurable"]) for s in streams] == [
        (9, 6, 4, True)]


# -- VXLAN / Geneve -------------------------------------------------------------------------

def test_vxlan_in_vxlan_reports_outer_vni_and_inner_packet(tmp_path: Path) -> None:
    check(gen.vxlan_in_vxlan(tmp_path))


def test_geneve_gwlb_options_carrying_vxlan(tmp_path: Path) -> None:
    cap = gen.geneve_gwlb_vxlan(tmp_path)
    check(cap)
    rows, _ = decoded(cap)
    assert int(rows[0]["geneve_opt_classes"]) == 3  # endpoint id, attachment id, flow cookie


def test_geneve_gcp_network_id_and_direction(tmp_path: Path) -> None:
    check(gen.geneve_gcp(tmp_path))


def test_packets_cli_reports_gcp_direction(tmp_path: Path) -> None:
    cap = gen.geneve_gcp(tmp_path)
    rows = jsonl(run_cli("packets", str(cap.path), "--format", "jsonl").stdout)
    assert [(r["vni"], r["direction"], r["src"], r["sport"], r["tcp_flags"]) for r in rows] == [
        (4242, "ingress", gen.CLIENT, 40000, "PA"), (4242, "egress", gen.CLIENT, 40001, "PA")]


def test_four_nested_vxlan_decode_fully(tmp_path: Path) -> None:
    cap = gen.nested_vxlan(tmp_path, 4)
    cap.frames[0].update({
        "encap": ["eth", "ipv4", "udp", "vxlan"] * 4 + ["eth", "ipv4", "tcp"], "error": None,
        **gen.tcp_truth(gen.tcp_frame(0))})
    check(cap)


def test_five_nested_vxlan_stop_with_too_deep(tmp_path: Path) -> None:
    cap = gen.nested_vxlan(tmp_path, 5)
    cap.frames[0].update({
        "encap": ["eth", "ipv4", "udp", "vxlan"] * 4 + ["eth", "ipv4", "udp"],
        "error": "too_deep"})
    check(cap)


# -- truncated captures ---------------------------------------------------------------------

def test_truncated_copy_keeps_inner_wire_length(tmp_path: Path) -> None:
    cap = gen.truncated_copies(tmp_path)
    check(cap)
    rows, _ = decoded(cap)
    assert rows["caplen"].tolist() == [gen.OUTER_ERSPAN2 + 74, gen.OUTER_ERSPAN2 + 20, 96]
    assert rows["wirelen"].tolist() == [len(bytes(r.packet)) for r in cap.records]


def test_outer_ethernet_trailer_not_counted_in_inner_length(tmp_path: Path) -> None:
    inner = gen.tcp_frame(0)
    trailer = b"\xde\xad\xbe\xef"  # e.g. an FCS the capture kept
    records = [gen.Record(Raw(bytes(gen.vxlan(inner, vni=9)) + trailer), gen.ts(0)),
               gen.Record(Raw(bytes(gen.erspan2(inner, seq=1, session=3)) + trailer), gen.ts(1))]
    path = gen.write_pcap(tmp_path / "trailer.pcap", records)
    rows = decode_files([str(path)])
    assert rows["len"].tolist() == [len(bytes(inner))] * 2
    assert rows["inner_caplen"].tolist() == [len(bytes(inner))] * 2
    assert rows["error"].tolist() == [0, 0]


# -- decapsulation --------------------------------------------------------------------------

def test_decap_erspan3_ft2_writes_raw_ip_interface(tmp_path: Path) -> None:
    cap = gen.erspan3_ip_payload(tmp_path)
    interfaces, packets = read_pcapng(decap(tmp_path, cap))
    assert [i["link"] for i in interfaces] == [gen.LINKTYPE_RAW]
    assert [p["data"] for p in packets] == [bytes(gen.tcp_ip(0, payload=20, flags="SA"))]


def test_decap_interfaces_and_lengths(tmp_path: Path) -> None:
    cap = gen.decap_mix(tmp_path)
    interfaces, packets = read_pcapng(decap(tmp_path, cap))
    links = [interfaces[p["iface"]]["link"] for p in packets]
    assert links == [f["link"] for f in cap.frames]
    assert [(p["len"], p["caplen"]) for p in packets] == [
        (f["len"], f["caplen"]) for f in cap.frames]
    assert len(interfaces) == 3  # session 5 Ethernet, session 5 raw IP, session 6 Ethernet
    assert len({p["iface"] for p in packets}) == 3
    assert packets[3]["data"] == bytes(cap.records[3].packet)[14 + 20 + 8 + 12 :][:60]


def test_decap_split_by_none_one_interface_per_link_type(tmp_path: Path) -> None:
    cap = gen.decap_mix(tmp_path)
    interfaces, packets = read_pcapng(decap(tmp_path, cap, extra=("--split-by", "none")))
    assert sorted(i["link"] for i in interfaces) == [gen.LINKTYPE_ETHERNET, gen.LINKTYPE_RAW]
    assert [interfaces[p["iface"]]["link"] for p in packets] == [f["link"] for f in cap.frames]


def test_decap_geneve_ip_payload_writes_raw_ip_interface(tmp_path: Path) -> None:
    cap = gen.geneve_gcp(tmp_path)
    interfaces, packets = read_pcapng(decap(tmp_path, cap))
    assert [i["link"] for i in interfaces] == [gen.LINKTYPE_RAW]
    assert [p["data"] for p in packets] == [bytes(gen.tcp_ip(i, payload=8, flags="PA"))
                                            for i in range(2)]
    assert [p["flags"] & 3 for p in packets] == [1, 2]


def test_decap_epb_flags_carry_direction(tmp_path: Path) -> None:
    interfaces, packets = read_pcapng(decap(tmp_path, gen.erspan3_directions(tmp_path)))
    assert [p["flags"] & 3 for p in packets] == [1, 2]  # inbound, outbound


def test_decap_restore_timestamps_uses_hardware_time(tmp_path: Path) -> None:
    caps = [gen.erspan3_platform(tmp_path, p) for p in sorted(gen.PLATFORMS)]
    interfaces, packets = read_pcapng(decap(tmp_path, *caps, extra=("--restore-timestamps",)))
    assert all(i["tsresol"] == bytes([9]) for i in interfaces)  # nanoseconds
    got: dict[int, list[int]] = {}
    for p in packets:
        session = int(interfaces[p["iface"]]["name"].rsplit(" ", 1)[1])
        got.setdefault(session, []).append(p["ts"])
    assert got == {300 + p: [hw, hw + gen.STEP_NS]
                   for p, (_, hw) in gen.PLATFORMS.items()}


def test_decap_output_opens_in_tshark(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (make system-deps installs it)")
    cap = gen.decap_mix(tmp_path)
    out = decap(tmp_path, cap)
    proc = subprocess.run([tshark, "-r", str(out), "-T", "fields", "-e", "frame.interface_id",
                           "-e", "frame.len", "-e", "frame.cap_len",
                           "-e", "frame.interface_name"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("\t") for line in proc.stdout.splitlines() if line]
    assert [(int(n), int(c)) for _, n, c, _ in lines] == [
        (f["len"], f["caplen"]) for f in cap.frames]
    assert len({iface for iface, *_ in lines}) == 3
    names = [name for *_, name in lines]
    assert all(name.endswith(f"session {f['session']}")
               for name, f in zip(names, cap.frames, strict=True))
