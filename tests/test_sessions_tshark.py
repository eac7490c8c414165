"""Differential test: flowscope's TCP session counters against tshark's sequence analysis.

For every TCP connection tshark sees (one ``tcp.stream``), flowscope must report exactly one
TCP session with the same two endpoints and the same first-packet time, and vice versa, and
the two must agree exactly on

* the frames sent by each side (``orig_pkts`` / ``resp_pkts``, mapped through ``orig_h`` /
  ``orig_p``);
* ``retrans``: packets carrying ``tcp.analysis.retransmission`` (which Wireshark also puts on
  fast and spurious retransmissions), ``out_of_order`` (``tcp.analysis.out_of_order``),
  ``dup_acks`` (``tcp.analysis.duplicate_ack``) and ``zero_window``
  (``tcp.analysis.zero_window``), summed over both directions.

tshark's side is aggregated here from ``-T fields`` with ``-E occurrence=l`` (the innermost
header of tunnelled frames) and ``-Y "tcp && !icmp && !icmpv6"`` (no TCP headers quoted in
ICMP errors), never from ``-z conv,tcp``, whose byte columns are rounded.  The analysis
preferences are pinned on the command line so a user's Wireshark profile cannot change them.
See /tmp/research/wireshark_tcp.md (Wireshark 4.0.17's ``tcp_analyze_sequence_number``).

Inputs: the generated analysis cases of tests/tcp_cases.py (plain and in ERSPAN II), three
shared tunnel captures (GRE, VXLAN) and the real-kernel captures of tests/netns.py in
ERSPAN II and III.  The generated cases are first checked against what tshark is promised
to flag in them, so a generator that drifts away from its case fails on its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP

from .netns import (
    PLANS,
    Scenario,
    needs_netns,
    netns_scenarios_fixture,  # noqa: F401  (registers the netns_scenarios fixture)
)
from .tcp_cases import CASES, ERSPAN_SESSION, Expected, case_records, write_cases
from .tshark import DECODE_AS, TSHARK, fields, needs_tshark

pytestmark = needs_tshark

FLOWSCOPE = [sys.executable, "-m", "flowscope"]
CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures"
SHARED = ["zeek__tunnels_gre-sample.pcap", "zeek__tunnels_vxlan-encapsulated-http.pcap",
          "suricata-verify__vxlan-non-zero-reserved-fields.pcap"]

# Pinned so that a preferences file cannot switch the analysis off or reorder its tests.
TSHARK_PREFS = ["-o", "tcp.analyze_sequence_numbers:TRUE",
                "-o", "tcp.fastrt_supersedes_ooo:TRUE"]
TCP_ONLY = "tcp && !icmp && !icmpv6"
# flowscope session key -> the tshark field whose presence on a packet counts one
COMPARED = {
    "retrans": "tcp.analysis.retransmission",
    "out_of_order": "tcp.analysis.out_of_order",
    "dup_acks": "tcp.analysis.duplicate_ack",
    "zero_window": "tcp.analysis.zero_window",
}
# further flags, only checked against the generated cases' promises (tcp_cases.Expected)
PROMISED = {
    **COMPARED,
    "fast": "tcp.analysis.fast_retransmission",
    "spurious": "tcp.analysis.spurious_retransmission",
    "zero_window_probe": "tcp.analysis.zero_window_probe",
    "lost_segment": "tcp.analysis.lost_segment",
    "keep_alive": "tcp.analysis.keep_alive",
}
BASE_FIELDS = ["frame.number", "frame.time_epoch", "frame.protocols", "tcp.stream",
               "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport"]
START_TOLERANCE_S = 2e-6  # flowscope's ts is a float: ~0.2 us resolution at 1.7e9 s

Endpoint = tuple[str, int]


@dataclass
class Stream:
    """One tshark ``tcp.stream``: ``a`` sent its first frame, to ``b``."""

    stream: int
    a: Endpoint
    b: Endpoint
    first_ts: Decimal
    frames: list[list[int]] = field(default_factory=lambda: [[], []])  # [a->b, b->a]
    flagged: dict[str, list[int]] = field(default_factory=dict)  # key -> frame numbers

    def count(self, key: str) -> int:
        return len(self.flagged.get(key, []))

    def label(self) -> str:
        return (f"tcp.stream {self.stream} {self.a[0]}:{self.a[1]} -> {self.b[0]}:{self.b[1]}"
                f" from frame {self.frames[0][0]} at {self.first_ts}")


def _innermost(protocols: str, v4: str, v6: str) -> str:
    """The address of the IP header right before the (last) TCP header."""
    layers = protocols.split(":")
    before = layers[: len(layers) - 1 - layers[::-1].index("tcp")]
    for name in reversed(before):
        if name in ("ip", "ipv6"):
            return v4 if name == "ip" else v6
    raise AssertionError(f"no IP header before TCP in {protocols}")


def tshark_streams(path: Path, keys: dict[str, str] = COMPARED) -> list[Stream]:
    """Every TCP connection of ``path`` as tshark 4.0 analyses it, by first appearance."""
    names = BASE_FIELDS + list(keys.values())
    cmd = [TSHARK or "tshark", "-n", "-r", str(path), *DECODE_AS, *TSHARK_PREFS,
           "-Y", TCP_ONLY, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=l"]
    for name in names:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    streams: dict[int, Stream] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        row = dict(zip(names, parts + [""] * (len(names) - len(parts)), strict=True))
        frame, sid = int(row["frame.number"]), int(row["tcp.stream"])
        src = (_innermost(row["frame.protocols"], row["ip.src"], row["ipv6.src"]),
               int(row["tcp.srcport"]))
        dst = (_innermost(row["frame.protocols"], row["ip.dst"], row["ipv6.dst"]),
               int(row["tcp.dstport"]))
        s = streams.get(sid)
        if s is None:
            s = streams[sid] = Stream(sid, src, dst, Decimal(row["frame.time_epoch"]))
        assert {src, dst} == {s.a, s.b}, f"frame {frame} in {s.label()} has {src} -> {dst}"
        s.frames[0 if src == s.a else 1].append(frame)
        for key, name in keys.items():
            if row[name]:  # present: "1" (duplicate_ack, registered twice, "1,1")
                s.flagged.setdefault(key, []).append(frame)
    return list(streams.values())


def flowscope_tcp_sessions(path: Path) -> list[dict[str, Any]]:
    """The TCP rows of ``flowscope sessions PATH --format jsonl``."""
    proc = subprocess.run(FLOWSCOPE + ["sessions", str(path), "--format", "jsonl"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"flowscope sessions failed ({proc.returncode}): {proc.stderr}"
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return [r for r in rows if r["proto"] == "tcp"]


def _ends(row: dict[str, Any]) -> set[Endpoint]:
    return {(row["orig_h"], row["orig_p"]), (row["resp_h"], row["resp_p"])}


def _describe(row: dict[str, Any]) -> str:
    return (f"session {row['orig_h']}:{row['orig_p']} -> {row['resp_h']}:{row['resp_p']} "
            f"(mirror_session {row['mirror_session']}) at {row['ts']}")


def expected_row(stream: Stream, orig: Endpoint) -> dict[str, int]:
    """The values tshark gives for the session whose originator is ``orig``."""
    a_to_b, b_to_a = (len(f) for f in stream.frames)
    orig_pkts, resp_pkts = (a_to_b, b_to_a) if orig == stream.a else (b_to_a, a_to_b)
    return {"orig_pkts": orig_pkts, "resp_pkts": resp_pkts,
            **{key: stream.count(key) for key in COMPARED}}


def differences(streams: list[Stream], rows: list[dict[str, Any]]) -> list[str]:
    """Every way the two views disagree, each with the frames tshark flagged."""
    problems: list[str] = []
    unmatched = list(range(len(rows)))
    for s in streams:
        hits = [i for i in unmatched if _ends(rows[i]) == {s.a, s.b}
                and abs(Decimal(repr(rows[i]["ts"])) - s.first_ts) <= Decimal(START_TOLERANCE_S)]
        if len(hits) != 1:
            problems.append(f"{s.label()}: {len(hits)} flowscope sessions match "
                            f"({[_describe(rows[i]) for i in hits]})")
            continue
        unmatched.remove(hits[0])
        row = rows[hits[0]]
        orig = (row["orig_h"], row["orig_p"])
        want = expected_row(s, orig)
        got = {key: row[key] for key in want}
        if got != want:
            detail = "; ".join(
                f"{key}: flowscope {got[key]}, tshark {want[key]}"
                + (f" (tshark frames {s.flagged.get(key, [])})" if key in COMPARED else "")
                for key in want if got[key] != want[key])
            problems.append(f"{s.label()} vs {_describe(row)}: {detail}")
    problems += [f"{_describe(rows[i])}: no tshark stream" for i in unmatched]
    return problems


def assert_sessions_match_tshark(path: Path) -> None:
    streams = tshark_streams(path)
    assert streams, f"tshark sees no TCP in {path}"
    problems = differences(streams, flowscope_tcp_sessions(path))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


# -- the generated cases --------------------------------------------------------------------

@pytest.fixture(scope="module")
def case_pcaps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    plain, wrapped = write_cases(tmp_path_factory.mktemp("tcp_cases"))
    return {"plain": plain, "erspan2": wrapped}


KINDS = ["plain", "erspan2"]


@pytest.mark.parametrize("kind", KINDS)
def test_cases_exercise_their_wireshark_analysis(case_pcaps: dict[str, Path],
                                                 kind: str) -> None:
    """Without flowscope: tshark flags in each generated connection what the case promises,
    one stream per case, in order, with the case's packets in each direction."""
    streams = tshark_streams(case_pcaps[kind], PROMISED)
    assert [s.a for s in streams] == [("10.0.0.1", c.client_port) for c in CASES]
    for case, s in zip(CASES, streams, strict=True):
        got = Expected(**{key: s.count(key) for key in PROMISED})
        assert got == case.expected, f"{case.name} ({case.doc}): {s.flagged}"
    sent: Counter[tuple[Endpoint, Endpoint]] = Counter()  # from the generator's records
    for rec in case_records():
        ip, tcp = rec.packet[IP], rec.packet[TCP]
        sent[((ip.src, tcp.sport), (ip.dst, tcp.dport))] += 1
    for s in streams:
        assert s.b == ("10.0.0.2", 80), s.label()
        assert [len(f) for f in s.frames] == [sent[(s.a, s.b)], sent[(s.b, s.a)]], s.label()


def test_erspan2_copy_keeps_frames_and_times(case_pcaps: dict[str, Path]) -> None:
    """The ERSPAN II capture holds the plain frames, in order, at the same ns times, each
    behind one ERSPAN II header of session ``ERSPAN_SESSION`` with GRE sequence 1, 2, 3..."""
    inner = ["frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "tcp.seq_raw",
             "tcp.ack_raw", "tcp.flags", "tcp.window_size_value", "tcp.len", "ip.id"]
    plain = fields(str(case_pcaps["plain"]), inner)
    wrapped = fields(str(case_pcaps["erspan2"]),
                     inner + ["gre.sequence_number", "erspan.version", "erspan.spanid"])
    assert len(wrapped) == len(plain) == len(case_records())
    for seq, (p, w) in enumerate(zip(plain, wrapped, strict=True), start=1):
        assert Decimal(w["frame.time_epoch"][0]) == Decimal(p["frame.time_epoch"][0])
        assert (w["gre.sequence_number"], w["erspan.version"], w["erspan.spanid"]) == \
            ([str(seq)], ["1"], [str(ERSPAN_SESSION)])
        for key in inner[1:]:
            assert w[key][-1:] == p[key], (seq, key)


@pytest.mark.parametrize("kind", KINDS)
def test_generated_cases_match_tshark(case_pcaps: dict[str, Path], kind: str) -> None:
    assert_sessions_match_tshark(case_pcaps[kind])


# -- shared tunnel captures -----------------------------------------------------------------

@pytest.mark.parametrize("name", SHARED)
def test_shared_capture_matches_tshark(name: str) -> None:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"shared capture not found: {path}")
    assert_sessions_match_tshark(path)


# -- real kernel TCP, mirrored through ERSPAN II and III ------------------------------------

@needs_netns
@pytest.mark.parametrize("erspan_type", [2, 3])
@pytest.mark.parametrize("name", list(PLANS))
def test_netns_erspan_matches_tshark(netns_scenarios: dict[str, Scenario], name: str,
                                     erspan_type: int) -> None:
    scenario = netns_scenarios[name]
    assert_sessions_match_tshark(scenario.erspan2 if erspan_type == 2 else scenario.erspan3)
