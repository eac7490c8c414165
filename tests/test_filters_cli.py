"""`flowscope match` as a user runs it, on an ERSPAN capture whose contents are known:
counts per rule and combined, example frames with the words the rules saw, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.contrib.roce import AETH, BTH, CNPPadding
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from .generated import MAC_A, MAC_B, Record, erspan2, write_pcap

FLOWSCOPE = [sys.executable, "-m", "flowscope"]
REQUESTER, RESPONDER = "10.1.0.1", "10.1.0.2"


def _roce(sport: int, bth: Packet) -> Packet:
    return (Ether(src=MAC_A, dst=MAC_B) / IP(src=RESPONDER, dst=REQUESTER)
            / UDP(sport=sport, dport=4791) / bth)


def cnp(sport: int) -> Packet:
    return _roce(sport, BTH(opcode=0x81, becn=1, dqpn=0x456) / CNPPadding())


def ack(sport: int, syndrome: int) -> Packet:
    return _roce(sport, BTH(opcode=0x11, dqpn=0x456, psn=9) / AETH(syndrome=syndrome, msn=0))


def tcp(sport: int, flags: str) -> Packet:
    return (Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2")
            / TCP(sport=sport, dport=443, flags=flags))


# frame number -> what it is
FRAMES = [cnp(50001), ack(50002, 0x00), tcp(40001, "S"), cnp(50003), ack(50004, 0x60),
          ack(50005, 0x20), cnp(50006), ack(50007, 0x62), tcp(40002, "SA"), ack(50008, 0x60),
          tcp(40003, "R"), ack(50009, 0x00), ack(50010, 0x00), tcp(40004, "S")]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("match")
    return write_pcap(d / "roce.pcap", [Record(erspan2(f, seq=i + 1, session=3), 10**18 + i)
                                         for i, f in enumerate(FRAMES)])


def _match(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(FLOWSCOPE + ["match", *args], capture_output=True, text=True)


def _jsonl(*args: str) -> tuple[list[dict], list[dict]]:
    done = _match(*args, "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return ([x for x in lines if x["type"] == "rule"], [x for x in lines if x["type"] == "example"])


def test_preset_counts_and_examples(capture: Path) -> None:
    rules, examples = _jsonl(str(capture), "--preset", "rdma-cnp", "--examples", "2")
    assert [(r["rule"], r["source"], r["matched"], r["frames"]) for r in rules] == [
        ("udp dst port 4791", "preset rdma-cnp", 10, 14),
        ("l4+8=0x8100/0xff00", "preset rdma-cnp", 3, 14),
        ("all of the above", "combined", 3, 14),
    ]
    assert rules[-1]["percent"] == round(300 / 14, 3)
    assert examples == [
        {"type": "example", "example": 1, "frame": 1, "ts": 1e9, "proto": "udp",
         "src": RESPONDER, "sport": 50001, "dst": REQUESTER, "dport": 4791,
         "words": {"l4+8=0x8100/0xff00": "0x8100"}},
        {"type": "example", "example": 2, "frame": 4, "ts": (10**18 + 3) / 1e9, "proto": "udp",
         "src": RESPONDER, "sport": 50003, "dst": REQUESTER, "dport": 4791,
         "words": {"l4+8=0x8100/0xff00": "0x8100"}},
    ]


def test_nak_presets(capture: Path) -> None:
    rules, examples = _jsonl(str(capture), "--preset", "rdma-nak-any")
    assert [r["matched"] for r in rules] == [10, 7, 3, 3]  # port, ACK opcode, NAK, all
    assert [e["frame"] for e in examples] == [5, 8, 10]
    assert [e["words"]["l4+20=0x6000/0xe000"] for e in examples] == ["0x6000", "0x6200",
                                                                     "0x6000"]
    rules, examples = _jsonl(str(capture), "--preset", "rdma-nak-psn")
    assert rules[-1]["matched"] == 2 and [e["frame"] for e in examples] == [5, 10]


def test_udf_rules_with_a_filter(capture: Path) -> None:
    rules, examples = _jsonl(str(capture), "--udf", "l4+12=0x0002/0x0002", "--udf",
                             "l4+12=0x0000/0x0010", "--filter", "tcp and erspan.session 3")
    assert [(r["rule"], r["source"], r["matched"]) for r in rules] == [
        ("tcp and erspan.session 3", "filter", 4),
        ("l4+12=0x0002/0x0002", "udf", 3),  # SYN set (the SYN-ACK too)
        ("l4+12=0x0000/0x0010", "udf", 13),  # ACK clear; in RoCE frames, a BTH bit
        ("all of the above", "combined", 2),
    ]
    assert [(e["frame"], e["sport"], e["words"]["l4+12=0x0002/0x0002"]) for e in examples] == [
        (3, 40001, "0x5002"), (14, 40004, "0x5002")]


def test_table_output(capture: Path) -> None:
    done = _match(str(capture), "--preset", "tcp-syn", "-n", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["rule", "source", "matched", "share"]
    assert lines[1].split() == ["tcp", "preset", "tcp-syn", "4", "28.57%"]
    assert lines[2].split() == ["l4+12=0x0002/0x0002", "preset", "tcp-syn", "3", "21.43%"]
    assert lines[3].split() == ["all", "of", "the", "above", "combined", "3", "21.43%"]
    assert lines[4] == "14 frames"
    assert lines[6] == "first 1 matching frames:"
    assert lines[8].split() == ["3", "tcp", "10.0.0.1:40001", "10.0.0.2:443", "0x5002"]


@pytest.mark.parametrize(("args", "message"), [
    (["--udf", "l4+8=0x8100/0xff0g"], "error: udf: expected a 16-bit mask after '/' at column 13\n"
                                      "  l4+8=0x8100/0xff0g\n              ^~~~~~\n"),
    (["--preset", "tcp-syn", "--filter", "port 99999"],
     "error: filter: expected a port number (0-65535) or a service name after 'port', not "
     "'99999' at column 6\n  port 99999\n       ^~~~~\n"),
    ([], "error: give --udf RULE (repeatable), --preset NAME or --filter EXPR\n"),
])
def test_bad_rules_exit_1_with_a_pointed_message(capture: Path, args: list[str],
                                                 message: str) -> None:
    done = _match(str(capture), *args)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", message)
