"""Watching requests: request ids, the access log and the HTTP metrics.

- `request_context` is the outermost middleware: it gives the request its id
  (the client's `X-Request-Id` if it is a sane token, else a new one) and makes
  it the current `RequestContext` (`registry.logs`), so every log line and
  event of the request carries it. `stamp_response` returns the id.
- `hide_server_software` keeps the `Server` header of every response, aiohttp's
  own included, to "cargobay", without versions.
- `observer_class` is aiohttp's access logger: called once each response has
  been sent, it writes the access line and records the request metrics
  (count and latency in one histogram, bytes each way, auth failures,
  rate-limit refusals).

Metric labels are bounded: the route template, never the path, and methods
outside the HTTP set counted as `other`.
"""

from __future__ import annotations

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
from registry.logs import ACCESS_LOGGER, AccessLog, RequestContext, enter_request
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
    records request metrics (if `record_metrics`)."""

    # aiohttp makes an access logger per connection: the tallies are made once, here.
    recorder = _RequestMetrics(metrics()) if record_metrics else None

    class RequestObserver(AbstractAccessLogger):
        @property
        def enabled(self) -> bool:
            return True

        def log(self, request: Any, response: Any, elapsed: float) -> None:
            context: RequestContext | None = request.get(CONTEXT)
            sent: int = response.body_length
            if context is not None:  # aiohttp's clock is uvloop's, in whole milliseconds
                elapsed = time.perf_counter() - context.started
            if recorder is not None:
                recorder.record(request, response, context, sent, elapsed)
            if lines is not None:
                lines.write(request, context, response.status, sent, elapsed)

    return RequestObserver


class _RequestMetrics:
    """Records each answered request, in tallies made once per label set."""

    def __init__(self, m: Metrics) -> None:
        self._m = m
        self._durations: dict[tuple[str, str, int], LatencyTally] = {}
        self._bytes: dict[str, tuple[Tally, Tally]] = {}

    def record(
        self,
        request: web.BaseRequest,
        response: web.StreamResponse,
        context: RequestContext | None,
        sent: int,
        duration: float,
    ) -> None:
        m = self._m
        route = context.route if context is not None else _UNMATCHED
        method = request.method if request.method in _METHODS else "other"
        status = response.status
        timing = self._durations.get((route, method, status))
        if timing is None:
            timing = self._durations[route, method, status] = LatencyTally(
                m.http_duration.labels(route, method, str(status)), HTTP_BUCKETS
            )
        timing.observe(duration)
        tallies = self._bytes.get(route)
        if tallies is None:
            tallies = self._bytes[route] = (
                Tally(m.http_received.labels(route)),
                Tally(m.http_sent.labels(route)),
            )
        received: int = getattr(request.content, "total_bytes", 0)
        if received:
            tallies[0].add(received)
        tallies[1].add(sent)
        if status in (401, 403):
            m.auth_failures.labels(_auth_failure(request, response)).inc()
        elif status == 429:
            m.rate_limited.inc()


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
