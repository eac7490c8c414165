"""`flowscope sessions` on real kernel TCP: five connections, each ended a different way,
captured between two network namespaces and replayed through ERSPAN Type II and III.

Expected values come from how each connection was made (tests/netns.py) and from the raw
capture counted with scapy, never from flowscope.  The captures themselves are checked
first, without flowscope: each holds the exchange its scenario promises, and tshark decodes
the ERSPAN copies back to the same frames, at the same times.

Contract of ``flowscope sessions <pcap> --format jsonl``: one JSON object per line and per
session, with at least the keys in ``SESSION_KEYS``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import TCP

from .netns import (
    ERSPAN2_SESSION,
    ERSPAN3_SESSION,
    PLANS,
    Scenario,
    needs_netns,
    netns_scenarios_fixture,  # noqa: F401  (registers the netns_scenarios fixture)
)
from .tshark import fields, needs_tshark

FLOWSCOPE = [sys.executable, "-m", "flowscope"]
SESSION_KEYS = {"proto", "orig_h", "orig_p", "resp_h", "resp_p", "conn_state", "history",
                "reset_by", "orig_pkts", "resp_pkts"}
NAMES = list(PLANS)  # SF, REJ, S0, RSTR, RSTO
ERSPAN_TYPES = [2, 3]

pytestmark = needs_netns


def _copy(scenario: Scenario, erspan_type: int) -> Path:
    return scenario.erspan2 if erspan_type == 2 else scenario.erspan3


def _sessions(path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(FLOWSCOPE + ["sessions", str(path), "--format", "jsonl"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"flowscope sessions failed ({proc.returncode}): {proc.stderr}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _flags(names: str) -> int:
    """Scapy's flag letters ("SA", "FA"...) as the TCP header's flag bits."""
    return int(TCP(flags=names).flags)


# -- the captures, without flowscope --------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_capture_holds_the_promised_exchange(netns_scenarios: dict[str, Scenario],
                                             name: str) -> None:
    ex = netns_scenarios[name].exchange
    sides = {side: [f for s, f in ex if s == side] for side in ("orig", "resp")}
    resets = [side for side, f in ex if "R" in f]
    fins = [side for side, f in ex if "F" in f]
    if name == "REJ":
        assert ex == [("orig", "S"), ("resp", "RA")]
        return
    if name == "S0":  # the first SYN and at least one retransmission, never answered
        assert len(ex) >= 2 and sides["orig"] == ["S"] * len(ex) and not sides["resp"]
        return
    assert ex[:3] == [("orig", "S"), ("resp", "SA"), ("orig", "A")]
    assert [f for _, f in ex[3:] if "S" in f] == []
    if name == "SF":  # one FIN each way, the client's first, no RST
        assert fins == ["orig", "resp"] and resets == []
        assert ex[-1] == ("orig", "A")  # the client ACKs the server's FIN
    else:  # RSTR / RSTO: data was exchanged, one RST ends it, nobody sent a FIN
        assert resets == [PLANS[name].reset_by] and fins == []
        assert ex[-1][1] == "RA"
        assert any("P" in f for f in sides["orig"])


@needs_tshark
@pytest.mark.parametrize("erspan_type", ERSPAN_TYPES)
@pytest.mark.parametrize("name", NAMES)
def test_erspan_copy_decodes_to_the_capture(netns_scenarios: dict[str, Scenario], name: str,
                                            erspan_type: int) -> None:
    """tshark sees the same frames (times to the ns, addresses, ports, flags) in the ERSPAN
    copy as in the raw capture, each behind one ERSPAN header with GRE sequence 1, 2, 3..."""
    scenario = netns_scenarios[name]
    inner = ["frame.time_epoch", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.flags"]
    raw = fields(str(scenario.raw), inner)
    copy = fields(str(_copy(scenario, erspan_type)),
                  inner + ["gre.sequence_number", "erspan.version", "erspan.spanid"])
    assert len(copy) == len(raw)
    session = ERSPAN2_SESSION if erspan_type == 2 else ERSPAN3_SESSION
    for seq, (r, c) in enumerate(zip(raw, copy, strict=True), start=1):
        assert Decimal(c["frame.time_epoch"][0]) == Decimal(r["frame.time_epoch"][0])
        assert c["gre.sequence_number"] == [str(seq)]
        assert c["erspan.version"] == [str(erspan_type - 1)]  # Type II is 1, Type III is 2
        assert c["erspan.spanid"] == [str(session)]
        assert c["ip.src"] == ["192.0.2.1", *r["ip.src"]]
        assert c["ip.dst"] == ["192.0.2.100", *r["ip.dst"]]
        for key in ("tcp.srcport", "tcp.dstport", "tcp.flags"):
            assert c[key] == r[key]
    # and the TCP frames in it are the scenario's exchange, counted independently by scapy
    ends = {scenario.orig: "orig", scenario.resp: "resp"}
    seen = [(ends[(c["ip.src"][-1], int(c["tcp.srcport"][0]))], int(c["tcp.flags"][0], 16))
            for c in copy if c["tcp.flags"]]
    assert seen == [(side, _flags(f)) for side, f in scenario.exchange]


# -- flowscope sessions ---------------------------------------------------------------------

@pytest.mark.parametrize("erspan_type", ERSPAN_TYPES)
@pytest.mark.parametrize("name", NAMES)
def test_sessions_reports_the_connection(netns_scenarios: dict[str, Scenario], name: str,
                                         erspan_type: int) -> None:
    scenario = netns_scenarios[name]
    rows = _sessions(_copy(scenario, erspan_type))
    ends = {scenario.orig, scenario.resp}
    mine = [r for r in rows if {(r.get("orig_h"), r.get("orig_p")),
                                (r.get("resp_h"), r.get("resp_p"))} == ends]
    assert len(mine) == 1, f"expected one session for {ends}, got {rows}"
    row = mine[0]
    assert SESSION_KEYS <= set(row), f"missing keys: {SESSION_KEYS - set(row)}"
    # the capture holds exactly one TCP connection (and some ARP)
    assert [r for r in rows if r["proto"] == "tcp"] == [row]
    assert row["proto"] == "tcp"
    assert (row["orig_h"], row["orig_p"]) == scenario.orig
    assert (row["resp_h"], row["resp_p"]) == scenario.resp
    assert row["conn_state"] == scenario.conn_state
    assert row["reset_by"] == scenario.reset_by
    assert (row["orig_pkts"], row["resp_pkts"]) == (scenario.orig_pkts, scenario.resp_pkts)
    assert isinstance(row["history"], str) and row["history"]
