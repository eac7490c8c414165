"""The benchmark capture (``bench/make_capture.py --traffic conversations``) is what its truth
sidecar says: flowscope finds exactly the connections and ``conn_state`` counts planned, tshark
the same conversations with the same packet counts, and every checksum is valid."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import scapy.contrib.erspan  # noqa: F401  (binds GRE protocol 0x88BE to ERSPAN II)
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

from .tshark import TSHARK, needs_tshark

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 20_000


def make(directory: Path, *args: str) -> tuple[Path, dict]:
    out = directory / "conversations.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_capture.py"), "--frames",
                    str(FRAMES), "-o", str(out), *args], check=True, capture_output=True)
    return out, json.loads(Path(f"{out}.truth.json").read_text())


def flowscope(*args: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "flowscope", *args, "-f", "jsonl"],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return make(tmp_path_factory.mktemp("conversations"))


@pytest.fixture(scope="module")
def sessions(capture: tuple[Path, dict]) -> list[dict]:
    return flowscope("sessions", str(capture[0]))


def test_truth_counts_every_frame(capture: tuple[Path, dict]) -> None:
    _, truth = capture
    assert truth["traffic"] == "conversations"
    assert sum(s["packets"] for s in truth["mirror_sessions"]) == FRAMES
    assert sum(truth["conn_states"].values()) == truth["tcp_connections"]
    # mostly completed connections, a minority of each failure
    states = truth["conn_states"]
    assert set(states) == {"SF", "REJ", "S0", "RSTO", "RSTR"}
    assert states["SF"] > 0.8 * truth["tcp_connections"]


def test_flowscope_finds_the_planned_connections(capture: tuple[Path, dict],
                                                 sessions: list[dict]) -> None:
    _, truth = capture
    assert len(sessions) == truth["tcp_connections"]
    assert Counter(r["conn_state"] for r in sessions) == truth["conn_states"]
    assert {r["proto"] for r in sessions} == {"tcp"}
    assert sum(r["orig_pkts"] + r["resp_pkts"] for r in sessions) == FRAMES
    # in-order conversations: the only retransmissions are the retried SYNs of S0
    assert sum(r["out_of_order"] + r["dup_acks"] + r["mirror_copies"] for r in sessions) == 0
    assert all(r["retrans"] == r["orig_pkts"] - 1 for r in sessions if r["conn_state"] == "S0")
    assert all(r["retrans"] == 0 for r in sessions if r["conn_state"] != "S0")
    assert {r["history"] for r in sessions if r["conn_state"] == "REJ"} == {"Sr"}


@needs_tshark
def test_tshark_sees_the_same_conversations(capture: tuple[Path, dict],
                                            sessions: list[dict]) -> None:
    out = subprocess.run([TSHARK or "tshark", "-n", "-q", "-z", "conv,tcp", "-r",
                          str(capture[0])], capture_output=True, text=True, check=True).stdout
    conversations = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 10 and parts[1] == "<->":
            # A <-> B, then frames and bytes (value, unit) <-, ->, total
            conversations[frozenset((parts[0], parts[2]))] = int(parts[9])
    ours = {frozenset((f"{r['orig_h']}:{r['orig_p']}", f"{r['resp_h']}:{r['resp_p']}")):
            r["orig_pkts"] + r["resp_pkts"] for r in sessions}
    assert len(conversations) == capture[1]["tcp_connections"]
    assert conversations == ours


def test_checksums_are_valid(capture: tuple[Path, dict]) -> None:
    for frame in rdpcap(str(capture[0]), count=300):
        inner = frame.getlayer(IP, 2)
        fresh = IP(bytes(inner))
        del fresh.chksum
        del fresh[TCP].chksum
        rebuilt = IP(bytes(fresh))
        assert (rebuilt.chksum, rebuilt[TCP].chksum) == (inner.chksum, inner[TCP].chksum)
        outer = frame.getlayer(IP, 1)
        fresh = IP(bytes(outer))
        del fresh.chksum
        assert IP(bytes(fresh)).chksum == outer.chksum


def test_mirror_loss_matches_the_truth(tmp_path: Path) -> None:
    path, truth = make(tmp_path, "--loss", "0.01", "--seed", "7")
    streams = {m["session"]: m for m in flowscope("mirrors", str(path))}
    for s in truth["mirror_sessions"]:
        assert streams[s["session"]]["packets"] == s["packets"]
        assert streams[s["session"]]["lost"] == s["lost"]
    assert 0 < sum(s["dropped"] for s in truth["mirror_sessions"]) < 0.02 * FRAMES
