"""The HTTP API, over real HTTP (urllib against a server on 127.0.0.1:0): rows identical to the
offline command's JSON lines, every filter exact, bad parameters answered with 400."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowscope.serve.http import ApiServer
from flowscope.serve.sink import StoreSink

from .serve_fixtures import feed, flowscope, make_incident, rows


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_incident(tmp_path_factory.mktemp("incident"))


@pytest.fixture(scope="module")
def api(incident: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sink = StoreSink.open(tmp_path_factory.mktemp("store"))
    feed(sink, incident, "leaf-1", batch_frames=100)
    server = ApiServer(("127.0.0.1", 0), sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()
    sink.close()


@pytest.fixture(scope="module")
def offline(incident: Path) -> list[dict]:
    return rows(flowscope("sessions", str(incident), "-f", "jsonl"))


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def sessions(api: str, query: str = "") -> dict[str, Any]:
    status, ctype, body = get(f"{api}/api/sessions{'?' + query if query else ''}")
    assert (status, ctype) == (200, "application/json; charset=utf-8"), body
    return json.loads(body)


def test_all_sessions_are_the_offline_rows(api: str, offline: list[dict]) -> None:
    doc = sessions(api)
    assert doc == {"total": len(offline), "count": len(offline), "sessions": offline}


def test_jsonl_is_byte_for_byte_the_command_line(api: str, incident: Path) -> None:
    status, ctype, body = get(f"{api}/api/sessions?format=jsonl")
    assert (status, ctype) == (200, "application/x-ndjson; charset=utf-8")
    assert body == flowscope("sessions", str(incident), "-f", "jsonl")


def _ts(r: dict) -> tuple[float, float]:
    return r["ts"], r["ts"] + r["duration"]


FILTERS: list[tuple[str, Any]] = [
    ("state=REJ", lambda r: r["conn_state"] == "REJ"),
    ("state=refused,unanswered", lambda r: r["verdict"] in ("refused", "unanswered")),
    ("state=SF&state=congested", lambda r: r["conn_state"] == "SF"
     or r["verdict"] == "congested"),
    ("host=10.0.2.20", lambda r: "10.0.2.20" in (r["orig_h"], r["resp_h"])),
    ("host=10.0.1.17", lambda r: "10.0.1.17" in (r["orig_h"], r["resp_h"])),
    ("port=5432", lambda r: 5432 in (r["orig_p"], r["resp_p"])),
    ("port=4791", lambda r: r["proto"] == "roce"),
    ("proto=roce", lambda r: r["proto"] == "roce"),
    ("proto=6", lambda r: r["proto"] == "tcp"),
    ("proto=udp", lambda r: False),
    ("problems=true", lambda r: r["problem"]),
    ("problems=false&proto=tcp", lambda r: not r["problem"] and r["proto"] == "tcp"),
    ("host=10.0.2.10&state=unanswered", lambda r: r["resp_h"] == "10.0.2.10"
     and r["verdict"] == "unanswered"),
]


@pytest.mark.parametrize(("query", "keep"), FILTERS, ids=[q for q, _ in FILTERS])
def test_filters_are_exact(api: str, offline: list[dict], query: str, keep: Any) -> None:
    expected = [r for r in offline if keep(r)]
    doc = sessions(api, query)
    assert doc["sessions"] == expected and doc["total"] == len(expected)


def test_the_filters_are_not_vacuous(offline: list[dict]) -> None:
    for query, keep in FILTERS:
        if query != "proto=udp":
            assert 0 < sum(map(keep, offline)) < len(offline), query


def test_time_range_keeps_sessions_active_in_it(api: str, offline: list[dict]) -> None:
    t0 = min(r["ts"] for r in offline)
    since, until = t0 + 7.0, t0 + 9.0
    expected = [r for r in offline if _ts(r)[1] >= since and _ts(r)[0] < until]
    assert 0 < len(expected) < len(offline)
    assert sessions(api, f"since={since}&until={until}")["sessions"] == expected
    iso = {k: datetime.fromtimestamp(v, UTC).isoformat().replace("+00:00", "Z")
           for k, v in (("since", since), ("until", until))}
    assert sessions(api, f"since={iso['since']}&until={iso['until']}")["sessions"] == expected
    naive = datetime.fromtimestamp(since, UTC).replace(tzinfo=None).isoformat()
    assert sessions(api, f"since={naive}")["sessions"] == [r for r in offline
                                                            if _ts(r)[1] >= since]


def test_limit_cuts_the_rows_not_the_total(api: str, offline: list[dict]) -> None:
    doc = sessions(api, "limit=3")
    assert doc == {"total": len(offline), "count": 3, "sessions": offline[:3]}
    assert sessions(api, "limit=0")["sessions"] == []


BAD = [
    ("port=x", "port='x' is not a port number"),
    ("port=70000", "not a port number"),
    ("port=-1", "not a port number"),
    ("state=BOGUS", "state='BOGUS' is neither a conn_state"),
    ("host=web-1", "host='web-1' is not an IPv4 or IPv6 address"),
    ("host=10.0.0.1&host=10.0.0.2", "host given 2 times"),
    ("proto=sctpish", "proto='sctpish'"),
    ("proto=300", "proto='300'"),
    ("since=yesterday", "since='yesterday' is neither epoch seconds nor an ISO-8601"),
    ("since=nan", "not a finite time"),
    ("since=20&until=10", "until is before since"),
    ("limit=-1", "limit='-1' is not a non-negative integer"),
    ("problems=maybe", "problems='maybe': use true or false"),
    ("format=xml", "format='xml': use json or jsonl"),
    ("verdict=ok", "unknown parameter 'verdict'; this endpoint takes state, host"),
]


@pytest.mark.parametrize(("query", "message"), BAD, ids=[q for q, _ in BAD])
def test_bad_parameters_are_400_with_a_message(api: str, query: str, message: str) -> None:
    status, ctype, body = get(f"{api}/api/sessions?{query}")
    assert (status, ctype) == (400, "application/json; charset=utf-8")
    assert message in json.loads(body)["error"]


@pytest.mark.parametrize(("path", "message"), [
    ("/api/timeline?interval=0s", "interval must be positive"),
    ("/api/timeline?interval=1500ms", "whole multiple of 1 s"),
    ("/api/timeline?interval=soon", "not a duration"),
    ("/api/timeline?bucket=1s", "unknown parameter 'bucket'"),
    ("/api/mirrors?collector=x", "takes no parameters"),
    ("/api/collectors?x=1", "takes no parameters"),
])
def test_bad_parameters_elsewhere_are_400(api: str, path: str, message: str) -> None:
    status, _, body = get(api + path)
    assert status == 400 and message in json.loads(body)["error"]


def test_unknown_paths_404_and_writes_405(api: str) -> None:
    status, _, body = get(f"{api}/api/flows")
    assert status == 404 and "no such endpoint" in json.loads(body)["error"]
    request = urllib.request.Request(f"{api}/api/sessions", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=30)
    assert e.value.code == 405 and "read-only" in json.loads(e.value.read())["error"]


@pytest.mark.parametrize("interval", ["1s", "5s"])
def test_timeline_is_the_offline_series(api: str, incident: Path, interval: str) -> None:
    expected = rows(flowscope("sessions", str(incident), "--interval", interval, "-f", "jsonl"))
    status, _, body = get(f"{api}/api/timeline?interval={interval}")
    doc = json.loads(body)
    assert status == 200 and doc == {"interval": float(interval[:-1]), "timeline": expected}
    start = expected[2]["interval_start"]
    doc = json.loads(get(f"{api}/api/timeline?interval={interval}&since={start}&until="
                         f"{start + 0.5}")[2])
    assert doc["timeline"] == [expected[2]]


def test_timeline_defaults_to_one_second(api: str, incident: Path) -> None:
    status, ctype, body = get(f"{api}/api/timeline?format=jsonl")
    assert body == flowscope("sessions", str(incident), "--interval", "1s", "-f", "jsonl")


def test_mirrors_are_the_offline_rows_with_the_collector(api: str, incident: Path) -> None:
    expected = [{"collector": "leaf-1", **r}
                for r in rows(flowscope("mirrors", str(incident), "-f", "jsonl"))]
    status, _, body = get(f"{api}/api/mirrors")
    assert status == 200 and json.loads(body) == {"mirrors": expected}


def test_collectors_and_health(api: str) -> None:
    status, _, body = get(f"{api}/api/collectors")
    (c,) = json.loads(body)["collectors"]
    assert status == 200
    assert {k: c[k] for k in ("collector_id", "batches", "frames", "last_seq", "stored_batches",
                              "transport")} == {
        "collector_id": "leaf-1", "batches": 7, "frames": 687, "last_seq": 6,
        "stored_batches": 7, "transport": None}
    status, _, body = get(f"{api}/healthz")
    doc = json.loads(body)
    assert status == 200 and doc["status"] == "ok" and doc["collectors"] == 1 \
        and doc["batches"] == 7


def test_ipv6_loopback(incident: Path, tmp_path: Path) -> None:
    try:
        server = ApiServer(("::1", 0), StoreSink.open(tmp_path))
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert server.url.startswith("http://[::1]:")
        status, _, body = get(f"{server.url}/api/sessions")
        assert status == 200 and json.loads(body) == {"total": 0, "count": 0, "sessions": []}
    finally:
        server.shutdown()
        server.server_close()
