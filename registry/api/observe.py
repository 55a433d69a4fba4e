"""Watching requests: request ids, the access log and the HTTP metrics.

- `request_context` is the outermost middleware: it gives the request its id
  (the client's `X-Request-Id` if it is a sane token, else a new one) and makes
  it the current `RequestContext` (`registry.logs`), so every log line and
  event of the request carries it. `stamp_response` returns the id.
- `hide_server_software` keeps the `Server` header of every response, aiohttp's
  own included, to "cargobay", without versions.
- `observer_class` is aiohttp's access logger: told of each response once it
  has been sent, it writes the access line and records the request metrics
  (count and latency in one histogram, bytes each way, auth failures,
  rate-limit refusals) at the end of the event loop's turn.

Metric labels are bounded: the route template, never the path, and methods
outside the HTTP set counted as `other`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from typing import Any

from aiohttp import web, web_response
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware

from registry import SERVER
from registry.api import uploads
from registry.api.middleware import Handler
from registry.config import Config
from registry.logs import ACCESS_LOGGER, AccessLog, Answered, RequestContext, enter_request
from registry.metrics import HTTP_BUCKETS, LatencyTally, Metrics, Tally, metrics

REQUEST_ID_HEADER = "X-Request-Id"
CONTEXT = web.RequestKey("cargobay_request", RequestContext)

_SANE_ID = re.compile(r"^[A-Za-z0-9._:+=/-]{1,128}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UPLOAD_HANDLERS = (uploads.start_upload, uploads.patch_upload, uploads.finish_upload)
_UNMATCHED = "unmatched"


def request_middleware(record_metrics: bool) -> Middleware:
    """The `request_context` middleware; with `record_metrics` it also counts uploads in flight."""
    in_flight = metrics().uploads_in_flight if record_metrics else None

    @web.middleware
    async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        match_info = request.match_info
        resource = match_info.route.resource
        reference = match_info.get("digest") or match_info.get("reference", "")
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        context = RequestContext(
            request_id=incoming if _SANE_ID.match(incoming) else os.urandom(16).hex(),
            client=request.remote or "",
            method=request.method,
            route=resource.canonical if resource is not None else _UNMATCHED,
            host=request.host,
            scheme=request.scheme,
            useragent=request.headers.get("User-Agent", ""),
            started=time.perf_counter(),
            repository=match_info.get("name"),
            digest=reference if ":" in reference else None,
        )
        request[CONTEXT] = context
        enter_request(context)
        if in_flight is None or match_info.handler not in _UPLOAD_HANDLERS:
            return await handler(request)
        with in_flight.track_inprogress():
            return await handler(request)

    return request_context


async def stamp_response(request: web.Request, response: web.StreamResponse) -> None:
    """Every response of a routed request carries its request id."""
    context = request.get(CONTEXT)
    if context is not None:
        response.headers[REQUEST_ID_HEADER] = context.request_id


def hide_server_software() -> None:
    """Make every response of this process's aiohttp servers say `Server: cargobay`.

    aiohttp gives a response without a `Server` header its default,
    `Python/3.x aiohttp/3.y`, including the 400 it answers itself to a request
    it cannot parse: that one reaches no middleware and no `on_response_prepare`
    signal, since no application saw the request. aiohttp has no option for
    the header (its issues #1958, #3288, #6463); the module value it reads the
    default from, on each response (`StreamResponse._prepare_headers`), is the
    one place every response passes. Replacing it is process-wide, and
    touches only servers: the client's `User-Agent` reads its own copy.
    `tests/test_logs.py` checks it still works on aiohttp's 400.
    """
    web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]  # not exported, as said


def observer_options(config: Config) -> dict[str, Any]:
    """The server options (`web.run_app`, `TestServer.start_server`) that observe each
    request as `config` asks."""
    log = config.log
    lines = None
    if log.access_log and log.level in ("debug", "info"):  # access lines are at INFO
        lines = AccessLog(log.format, sys.stderr)
    return {
        # aiohttp calls its access logger only if it has a logger; lines go to `lines`.
        "access_log": logging.getLogger(ACCESS_LOGGER),
        "access_log_class": observer_class(lines, bool(config.metrics.addr)),
    }


def observer_class(lines: AccessLog | None, record_metrics: bool) -> type[AbstractAccessLogger]:
    """aiohttp's access-logger class that writes access lines (to `lines`, if any) and
    records request metrics (if `record_metrics`), for all the requests answered in one
    turn of the event loop at the end of that turn."""

    # aiohttp makes an access logger per connection: the ledger is made once, here.
    ledger = _Ledger(_RequestMetrics(metrics()) if record_metrics else None, lines)

    class RequestObserver(AbstractAccessLogger):
        @property
        def enabled(self) -> bool:
            return ledger.active

        def log(self, request: Any, response: Any, elapsed: float) -> None:
            ledger.note(request, response, elapsed)

    return RequestObserver


class _Ledger:
    """The requests answered in the running turn of the event loop, recorded and logged
    together at the end of the turn.

    Work done once per request, where each request ends, runs from caches the rest of
    the request has filled with other code and data: in the running server, a JSON line
    built there cost 14 µs of CPU against 2 µs in a loop of its own (measured with
    `wrk` on `/v2/`). Done for the requests of a turn in a row, it costs 8 µs.
    """

    def __init__(self, recorder: _RequestMetrics | None, lines: AccessLog | None) -> None:
        self._recorder = recorder
        self._lines = lines
        self.active = recorder is not None or lines is not None
        self._answered: list[Answered] = []

    def note(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        """Hold `request`, answered with `response` (in `elapsed` seconds by aiohttp's
        clock), for the end of the loop's turn. Runs in the event loop."""
        context: RequestContext | None = request.get(CONTEXT)
        if context is not None:  # aiohttp's clock is uvloop's, in whole milliseconds
            elapsed = time.perf_counter() - context.started
        if not self._answered:
            asyncio.get_running_loop().call_soon(self._settle)
        self._answered.append((request, response, context, elapsed, time.time_ns()))

    def _settle(self) -> None:
        answered, self._answered = self._answered, []
        if self._recorder is not None:
            self._recorder.record(answered)
        if self._lines is not None:
            self._lines.write(answered)


# The tallies of one (route, method, status): latencies, bytes received, bytes sent.
_Series = tuple[LatencyTally, Tally, Tally]


class _RequestMetrics:
    """Records answered requests, in tallies made once per label set."""

    def __init__(self, m: Metrics) -> None:
        self._m = m
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._bytes: dict[str, tuple[Tally, Tally]] = {}

    def record(self, answered: list[Answered]) -> None:
        """Record each request of `answered`."""
        series = self._series
        for request, response, context, duration, _ in answered:
            route = context.route if context is not None else _UNMATCHED
            method = request.method if request.method in _METHODS else "other"
            status = response.status
            tallies = series.get((route, method, status))
            if tallies is None:
                tallies = self._new_series(route, method, status)
            tallies[0].observe(duration)
            received: int = getattr(request.content, "total_bytes", 0)
            if received:
                tallies[1].add(received)
            tallies[2].add(response.body_length)
            if status in (401, 403):
                self._m.auth_failures.labels(_auth_failure(request, response)).inc()
            elif status == 429:
                self._m.rate_limited.inc()

    def _new_series(self, route: str, method: str, status: int) -> _Series:
        m = self._m
        byte_tallies = self._bytes.get(route)
        if byte_tallies is None:
            byte_tallies = self._bytes[route] = (
                Tally(m.http_received.labels(route)),
                Tally(m.http_sent.labels(route)),
            )
        timing = LatencyTally(m.http_duration.labels(route, method, str(status)), HTTP_BUCKETS)
        tallies = self._series[route, method, status] = (timing, *byte_tallies)
        return tallies


def _auth_failure(request: web.BaseRequest, response: web.StreamResponse) -> str:
    """Why a request was refused: denied, no_credentials, invalid_token,
    insufficient_scope or invalid_credentials."""
    if response.status == 403:
        return "denied"
    if "Authorization" not in request.headers:
        return "no_credentials"
    challenge = response.headers.get("WWW-Authenticate", "")
    if 'error="insufficient_scope"' in challenge:
        return "insufficient_scope"
    if 'error="invalid_token"' in challenge:
        return "invalid_token"
    return "invalid_credentials"
