"""The JSON HTTP API of ``flowscope serve`` (stdlib ``ThreadingHTTPServer``, GET only).

=====================  ========================================================================
``/api/sessions``      ``{"total", "count", "sessions": [...]}``: every session, finished and
                       live, problems first; rows have exactly the keys and types of
                       ``flowscope sessions --format jsonl`` (same Arrow schema, same JSON
                       conversion).  Filters: :mod:`flowscope.serve.query`.
``/api/timeline``      ``{"interval", "timeline": [...]}``: rows of ``sessions --interval``.
``/api/mirrors``       ``{"mirrors": [...]}``: rows of ``flowscope mirrors --format jsonl``
                       plus ``collector``, the collector that received the stream.
``/api/collectors``    ``{"collectors": [...]}``: per collector, its last counters (received,
                       kernel drops, filtered, sampled, spool losses), what the store holds
                       (``last_seq``, batches, frames) and, when the transport reports them,
                       its connection state.
``/healthz``           ``{"status": "ok", ...}``
=====================  ========================================================================

``format=jsonl`` on sessions and timeline gives bare JSON lines instead, as the CLI writes
them.  A bad parameter is HTTP 400 with ``{"error": "..."}``; an unknown path 404.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from flowscope.errors import FlowscopeError
from flowscope.serve.query import QueryError, SessionQuery, TimelineQuery
from flowscope.serve.sink import StoreSink
from flowscope.sinks.text import write_jsonl


def jsonl_lines(table: pa.Table) -> list[str]:
    """The rows as ``flowscope ... --format jsonl`` writes them, one string each."""
    out = io.StringIO()
    write_jsonl(table, out)
    return out.getvalue().splitlines()


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    # SO_REUSEADDR: a restarted server binds again at once (TIME_WAIT from the last run)
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sink: StoreSink,
                 collectors: Callable[[], dict[str, dict[str, Any]]] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.sink = sink
        self.transport_collectors = collectors  # per-collector stats from the transport
        self.log = log or (lambda _msg: None)
        self.started = time.time()
        super().__init__(address, ApiHandler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ApiHandler(BaseHTTPRequestHandler):
    server: ApiServer
    server_version = "flowscope"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # requests are not logged; errors are (see _send)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        params = parse_qs(url.query, keep_blank_values=True)
        route = {"/api/sessions": self._sessions, "/api/timeline": self._timeline,
                 "/api/mirrors": self._mirrors, "/api/collectors": self._collectors,
                 "/healthz": self._health}.get(url.path.rstrip("/") or "/")
        if route is None:
            self._error(404, f"no such endpoint {url.path!r}; try /api/sessions, /api/timeline, "
                             "/api/mirrors, /api/collectors or /healthz")
            return
        try:
            route(params)
        except (QueryError, FlowscopeError) as e:
            self._error(400, str(e))
        except Exception as e:  # a bug: answer, log, keep serving
            self.server.log(f"error: {self.path}: {type(e).__name__}: {e}")
            self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _not_allowed(self) -> None:
        self._error(405, f"{self.command} is not supported; the API is read-only (GET)")

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815

    # -- endpoints ------------------------------------------------------------------------

    def _sessions(self, params: dict[str, list[str]]) -> None:
        query = SessionQuery.parse(params)
        matched = query.apply(self.server.sink.analysis.sessions())
        rows = jsonl_lines(matched.slice(0, query.limit))
        if query.format == "jsonl":
            self._send(200, "".join(line + "\n" for line in rows), "application/x-ndjson")
            return
        self._send(200, f'{{"total":{matched.num_rows},"count":{len(rows)},"sessions":['
                        + ",".join(rows) + "]}")

    def _timeline(self, params: dict[str, list[str]]) -> None:
        query = TimelineQuery.parse(params)
        analysis = self.server.sink.analysis
        interval = query.interval_ns or analysis.resolution_ns
        rows = jsonl_lines(query.apply(analysis.timeline(interval)))
        if query.format == "jsonl":
            self._send(200, "".join(line + "\n" for line in rows), "application/x-ndjson")
            return
        self._send(200, f'{{"interval":{json.dumps(interval / 1e9)},"timeline":['
                        + ",".join(rows) + "]}")

    def _mirrors(self, params: dict[str, list[str]]) -> None:
        if params:
            raise QueryError("/api/mirrors takes no parameters")
        rows = jsonl_lines(self.server.sink.analysis.mirrors())
        self._send(200, '{"mirrors":[' + ",".join(rows) + "]}")

    def _collectors(self, params: dict[str, list[str]]) -> None:
        if params:
            raise QueryError("/api/collectors takes no parameters")
        rows = self.server.sink.collectors()
        transport = self.server.transport_collectors() if self.server.transport_collectors \
            else {}
        for row in rows:
            row["transport"] = transport.get(row["collector_id"])
        self._send(200, json.dumps({"collectors": rows}, separators=(",", ":"), default=str))

    def _health(self, params: dict[str, list[str]]) -> None:
        if params:
            raise QueryError("/healthz takes no parameters")
        analysis = self.server.sink.analysis
        with analysis.lock:
            batches, live = analysis.version, analysis.tracker.conns.n
            collectors = len(analysis.collectors)
        self._send(200, json.dumps({
            "status": "ok", "uptime": round(time.time() - self.server.started, 3),
            "collectors": collectors, "batches": batches, "live_connections": live,
        }, separators=(",", ":")))

    # -- responses ------------------------------------------------------------------------

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message}))

    def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)
