"""Capture inputs: pcap (us/ns, both byte orders), pcapng (interfaces, if_tsresol, both
byte orders), gzip, stdin, several files merged in time order, truncated and garbage files."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flowscope.errors import CaptureFormatError
from flowscope.sources import Problems, read_captures

from .captures import pcapng_interface, pcapng_packet, pcapng_section, write_pcap

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "captures"
FLOWSCOPE = [sys.executable, "-m", "flowscope"]

# Three distinct frames: Ethernet + IPv4 (+ 4 bytes of payload), different lengths.
FRAMES = [
    (1_700_000_000_123_456_789, bytes(12) + b"\x08\x00" + bytes(20 + i), 34 + i + 100)
    for i in range(3)
]


def _all(paths: list[str], problems: Problems | None = None):
    batches = list(read_captures(paths, problems))
    def col(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in batches])

    return col("ts_ns"), col("caplen"), col("wirelen"), col("frame"), col("linktype"), batches


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanos", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, big_endian: bool, nanos: bool) -> None:
    p = write_pcap(tmp_path / "a.pcap", FRAMES, nanos=nanos, big_endian=big_endian)
    ts, caplen, wirelen, frame, link, batches = _all([str(p)])
    expected_ts = 1_700_000_000_123_456_789 if nanos else 1_700_000_000_123_456_000
    assert ts.tolist() == [expected_ts] * 3
    assert caplen.tolist() == [34, 35, 36]
    assert wirelen.tolist() == [134, 135, 136]
    assert frame.tolist() == [1, 2, 3]
    assert link.tolist() == [1, 1, 1]
    assert batches[0].frame_bytes(2) == FRAMES[2][1]


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_interfaces_and_tsresol(tmp_path: Path, big_endian: bool) -> None:
    e, shb = pcapng_section(big_endian)
    data = shb + pcapng_interface(e, 1) + pcapng_interface(e, 101, tsresol=9) + \
        pcapng_interface(e, 1, tsresol=0x80 | 20)  # 2^-20 s units
    data += pcapng_packet(e, 0, 1_700_000_000_000_001, FRAMES[0][1], 200)  # us
    data += pcapng_packet(e, 1, 1_700_000_000_000_000_002, FRAMES[1][1], 35)  # ns
    data += pcapng_packet(e, 2, (1_700_000_000 << 20) | (1 << 19), FRAMES[2][1], 36)  # +0.5 s
    p = tmp_path / "a.pcapng"
    p.write_bytes(data)
    ts, caplen, wirelen, frame, link, _ = _all([str(p)])
    assert ts.tolist() == [1_700_000_000_000_001_000, 1_700_000_000_000_000_002,
                           1_700_000_000_500_000_000]
    assert link.tolist() == [1, 101, 1]
    assert wirelen.tolist() == [200, 35, 36]
    assert caplen.tolist() == [34, 35, 36]


def test_pcapng_second_section_changes_byte_order(tmp_path: Path) -> None:
    e1, shb1 = pcapng_section(False)
    e2, shb2 = pcapng_section(True)
    data = shb1 + pcapng_interface(e1, 1) + pcapng_packet(e1, 0, 5, FRAMES[0][1], 34)
    data += shb2 + pcapng_interface(e2, 101) + pcapng_packet(e2, 0, 7, FRAMES[1][1], 35)
    p = tmp_path / "two.pcapng"
    p.write_bytes(data)
    ts, _, _, _, link, _ = _all([str(p)])
    assert ts.tolist() == [5000, 7000]
    assert link.tolist() == [1, 101]


def test_gzip_and_stdin_read_the_same_frames(tmp_path: Path) -> None:
    plain = write_pcap(tmp_path / "a.pcap", FRAMES)
    gz = tmp_path / "a.pcap.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert _all([str(gz)])[1].tolist() == [34, 35, 36]
    out = subprocess.run(FLOWSCOPE + ["packets", "-", "--format", "jsonl"],
                         input=gz.read_bytes(), capture_output=True, check=True)
    assert [line.count(b'"frame"') for line in out.stdout.splitlines()] == [1, 1, 1]


def test_files_merge_in_time_order(tmp_path: Path) -> None:
    a = write_pcap(tmp_path / "a.pcap", [(1000 * t, FRAMES[0][1], 34) for t in (1, 4, 6)])
    b = write_pcap(tmp_path / "b.pcap", [(1000 * t, FRAMES[1][1], 35) for t in (2, 3, 5, 7)])
    ts, caplen, _, frame, _, batches = _all([str(a), str(b)])
    assert ts.tolist() == [1000 * t for t in range(1, 8)]
    assert caplen.tolist() == [34, 35, 35, 34, 35, 34, 35]
    assert frame.tolist() == list(range(1, 8))
    assert batches[0].frame_bytes(1) == FRAMES[1][1]


def test_merge_across_many_batches(tmp_path: Path) -> None:
    a = write_pcap(tmp_path / "a.pcap", [(2 * t, FRAMES[0][1], 34) for t in range(1000)],
                   nanos=True)
    b = write_pcap(tmp_path / "b.pcap", [(2 * t + 1, FRAMES[1][1], 35) for t in range(1000)],
                   nanos=True)
    ts, caplen, _, frame, _, _ = _all_small([str(a), str(b)])
    assert ts.tolist() == list(range(2000))
    assert caplen.tolist() == [34, 35] * 1000
    assert frame.tolist() == list(range(1, 2001))


def _all_small(paths: list[str]):
    batches = list(read_captures(paths, Problems(), batch_frames=97))
    return (np.concatenate([b.ts_ns for b in batches]), np.concatenate([b.caplen for b in batches]),
            None, np.concatenate([b.frame for b in batches]), None, batches)


def test_truncated_file_keeps_complete_frames_and_says_where(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "a.pcap", FRAMES)
    p.write_bytes(p.read_bytes()[:-10])
    problems = Problems()
    _, caplen, _, _, _, _ = _all([str(p)], problems)
    assert caplen.tolist() == [34, 35]
    assert [(x.code, x.where) for x in problems.items] == [("truncated_file", 24 + 50 + 51)]


def test_corrupt_record_length_stops_with_a_problem(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "a.pcap", FRAMES)
    raw = bytearray(p.read_bytes())
    raw[24 + 50 + 8 : 24 + 50 + 12] = (0x7FFFFFFF).to_bytes(4, "little")
    p.write_bytes(bytes(raw))
    problems = Problems()
    _, caplen, _, _, _, _ = _all([str(p)], problems)
    assert caplen.tolist() == [34]
    assert [(x.code, x.where) for x in problems.items] == [("corrupt_record", 74)]


def test_not_a_capture_raises_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is not a capture\n")
    with pytest.raises(CaptureFormatError, match="not a pcap or pcapng capture"):
        list(read_captures([str(p)]))


def test_cli_not_a_capture_exits_2_without_traceback(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello\n")
    for cmd in ("packets", "mirrors"):
        r = subprocess.run(FLOWSCOPE + [cmd, str(p)], capture_output=True, text=True)
        assert r.returncode == 2
        assert "not a pcap or pcapng capture" in r.stderr
        assert "Traceback" not in r.stderr
    r = subprocess.run(FLOWSCOPE + ["decap", str(p), "-o", str(tmp_path / "o.pcapng")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_cli_missing_file_exits_2(tmp_path: Path) -> None:
    r = subprocess.run(FLOWSCOPE + ["packets", str(tmp_path / "nope.pcap")], capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert "cannot open" in r.stderr and "Traceback" not in r.stderr


def test_gzip_garbage_is_reported_not_raised(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [(t, rng.bytes(200), 200) for t in range(20_000)]  # incompressible, ~4 MB
    plain = write_pcap(tmp_path / "a.pcap", frames)
    gz = tmp_path / "a.pcap.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes())[: 3_000_000])  # cut inside the stream
    problems = Problems()
    _, caplen, _, _, _, _ = _all([str(gz)], problems)
    assert 0 < caplen.size < 20_000
    assert [p.code for p in problems.items] == ["unreadable"]
