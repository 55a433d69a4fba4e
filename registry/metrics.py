"""Prometheus metrics of the registry, and the separate listener that serves them.

Every metric is built on first use of `metrics()`, never at import, because
prometheus-client picks its storage when a metric is built: in-process
values, or, once `prepare_multiprocess_dir` has run, one file per process in
a shared directory (its multiprocess mode). The master of several workers
calls `prepare_multiprocess_dir` before it builds anything and starts them,
serves `/metrics` from a thread (`serve_workers_metrics`) and reports each
worker that exits (`worker_exited`); a single process calls it before it
builds its app and serves `/metrics` itself (`metrics_listener`). Either way
`/metrics` sums the files of every process, so one scrape shows all workers.

Label values are bounded: routes are templates (`/v2/{name}/manifests/{reference}`),
never raw paths, so repository names cannot grow the label set.

What every request records (its latency, bytes, cache look-ups) is tallied in
memory (`Tally`, `LatencyTally`) and written to prometheus-client by
`flush_metrics`, once a second and before each scrape: a prometheus-client
write costs a lock and, in multiprocess mode, a write to a shared file,
several per request, which a manifest served from memory would feel (+35% CPU
per request, measured).

Hooks for code that measures something the registry does not see itself:
`observe_feed_lag` (the change feed) and `count_collection` (garbage collection).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from registry import SERVER
from registry.config import MetricsConfig

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Request latencies: a manifest from memory takes ~1 ms, a large blob minutes.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class Metrics:
    """The registry's metrics. Gauges of several processes add up (`livesum`) where each
    process counts its own share, and show the largest (`livemax`) where all see the same."""

    def __init__(self) -> None:
        # Its `_count` series are the request counts: one histogram, not a counter besides,
        # spares every request a write.
        self.http_duration = Histogram(
            "cargobay_http_request_duration_seconds",
            "HTTP requests by route template, method and status: time from the request's "
            "arrival to the end of its response.",
            ["route", "method", "status"],
            buckets=HTTP_BUCKETS,
        )
        self.http_received = Counter(
            "cargobay_http_received_bytes", "Request body bytes received.", ["route"]
        )
        self.http_sent = Counter(
            "cargobay_http_sent_bytes", "Response bytes sent, headers included.", ["route"]
        )
        self.uploads_in_flight = Gauge(
            "cargobay_uploads_in_flight",
            "Upload requests (POST, PATCH, PUT of blob uploads) being served.",
            multiprocess_mode="livesum",
        )
        self.storage_duration = Histogram(
            "cargobay_storage_operation_duration_seconds",
            "Storage driver operations by driver, operation and outcome (ok, not_found, error).",
            ["driver", "operation", "outcome"],
            buckets=STORAGE_BUCKETS,
        )
        self.index_entries = Gauge(
            "cargobay_index_entries",
            "Entries of the in-memory index: repositories, tags, manifests.",
            ["kind"],
            multiprocess_mode="livemax",
        )
        self.cache_lookups = Counter(
            "cargobay_cache_lookups",
            "Look-ups in the in-memory caches (manifests, blob_sizes), by result (hit, miss).",
            ["cache", "result"],
        )
        self.auth_failures = Counter(
            "cargobay_auth_failures",
            "Requests refused by authentication or authorisation, by reason.",
            ["reason"],
        )
        self.rate_limited = Counter(
            "cargobay_rate_limited", "Requests refused with 429 by the per-client rate limit."
        )
        self.events = Counter(
            "cargobay_notification_events",
            "Registry events per webhook endpoint, by outcome (sent, failed, dropped).",
            ["endpoint", "outcome"],
        )
        self.feed_lag = Gauge(
            "cargobay_feed_lag_seconds",
            "How far the index is behind the change feed in storage.",
            multiprocess_mode="livemax",
        )
        self.gc_runs = Counter("cargobay_gc_runs", "Garbage collections completed.")
        self.gc_freed = Counter("cargobay_gc_freed_bytes", "Bytes freed by garbage collection.")


_metrics: Metrics | None = None
#: Every tally made, for `flush_metrics`.
_tallies: list[Tally | LatencyTally] = []
FLUSH_INTERVAL = 1.0


class Tally:
    """A counter (a labelled child) whose increments wait in memory for `flush_metrics`."""

    __slots__ = ("_counter", "pending")

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self.pending = 0.0
        _tallies.append(self)

    def add(self, amount: float = 1.0) -> None:
        self.pending += amount

    def flush(self) -> None:
        if self.pending:
            amount, self.pending = self.pending, 0.0
            self._counter.inc(amount)


class LatencyTally:
    """A histogram (a labelled child) whose observations wait in memory, counted per bucket,
    for `flush_metrics`."""

    __slots__ = ("_bounds", "_counts", "_histogram", "_sum")

    def __init__(self, histogram: Histogram, buckets: tuple[float, ...]) -> None:
        self._histogram = histogram
        self._bounds = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last: above every bound (+Inf)
        self._sum = 0.0
        _tallies.append(self)

    def observe(self, seconds: float) -> None:
        # Prometheus buckets hold the values <= their bound: the first bound >= seconds.
        self._counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def flush(self) -> None:
        if not self._sum and not any(self._counts):
            return
        # prometheus-client adds one observation at a time; its per-bucket values
        # (`_buckets`, one per bound and +Inf, and `_sum`) take a whole second's at once.
        histogram: Any = self._histogram
        for i, count in enumerate(self._counts):
            if count:
                histogram._buckets[i].inc(count)
                self._counts[i] = 0
        histogram._sum.inc(self._sum)
        self._sum = 0.0


def flush_metrics() -> None:
    """Write every tally's pending counts to prometheus-client (on the event loop's thread)."""
    for tally in _tallies:
        tally.flush()


async def flush_periodically() -> None:
    """`flush_metrics` every `FLUSH_INTERVAL` seconds until cancelled, and once more then."""
    try:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            flush_metrics()
    finally:
        flush_metrics()


def metrics() -> Metrics:
    """This process's metrics, built on the first call."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def cache_tallies(cache: str) -> tuple[Tally, Tally]:
    """The (hits, misses) tallies of the in-memory cache named `cache`."""
    lookups = metrics().cache_lookups
    return Tally(lookups.labels(cache, "hit")), Tally(lookups.labels(cache, "miss"))


def prepare_multiprocess_dir() -> str:
    """Switch this process, and the processes it starts, to multiprocess metrics.

    Creates a fresh temporary directory, names it in `PROMETHEUS_MULTIPROC_DIR`
    (inherited by child processes) and returns its path; the caller removes it
    when the last process has exited. Must run before `metrics()` is first
    called in this process, else `RuntimeError`.
    """
    if _metrics is not None:
        raise RuntimeError("metrics were built before multiprocess mode was prepared")
    path = tempfile.mkdtemp(prefix="cargobay-metrics-")
    os.environ[MULTIPROC_ENV] = path
    # prometheus-client chose in-process values when it was imported; choose again.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path


class MetricsListenerError(Exception):
    """The metrics listener cannot listen on its address; the message says so in one
    sentence, naming the address."""


def _cannot_listen(config: MetricsConfig, error: OSError, workers: int = 1) -> MetricsListenerError:
    # uvloop's strerror repeats the address as a Python tuple; the errno's own words do not.
    code = error.errno or 0  # negative for a host name that does not resolve
    reason = os.strerror(code) if code > 0 else error.strerror or str(error)
    shared = f", the listener the {workers} workers share" if workers > 1 else ""
    return MetricsListenerError(f"cannot serve metrics on {config.addr}{shared}: {reason}")


class _ScrapeHandler(WSGIRequestHandler):
    """Logs no scrape, and names no Python version in the `Server` header of the errors it
    answers itself (a request it cannot parse)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def version_string(self) -> str:
        return SERVER


def _named(app: WSGIApplication) -> WSGIApplication:
    """`app`, its responses carrying our `Server` header: wsgiref adds its own, with the
    Python version, only to a response that has none."""

    def named(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("Server", SERVER)], exc_info)

        return app(environ, start)

    return named


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress does not hold up the master's exit


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


def serve_workers_metrics(config: MetricsConfig, workers: int) -> WSGIServer:
    """Serve the metrics of every process sharing this one's directory on `config.addr`,
    from a thread: for the master of `workers` workers, which runs no event loop.

    Returns the running server, for the caller to `shutdown()`. Raises
    `MetricsListenerError` if the address cannot be bound.
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    # prometheus-client's own `start_http_server` is this, but with wsgiref's `Server` header.
    server_class = _ThreadingServer6 if ":" in config.host else _ThreadingServer
    try:
        server = make_server(
            config.host,
            config.port,
            _named(make_wsgi_app(registry)),
            server_class,
            handler_class=_ScrapeHandler,
        )
    except OSError as e:
        raise _cannot_listen(config, e, workers) from e
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def worker_exited(pid: int) -> None:
    """Drop the gauges of worker `pid`, which has exited, from what is served; nothing
    to do without multiprocess mode (metrics off)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def observe_feed_lag(seconds: float) -> None:
    """Record how many seconds the index is behind the change feed."""
    metrics().feed_lag.set(seconds)


def count_collection(bytes_freed: int) -> None:
    """Record one completed garbage collection and the bytes it freed."""
    m = metrics()
    m.gc_runs.inc()
    m.gc_freed.inc(bytes_freed)


def exposition() -> bytes:
    """The metrics of every process sharing this one's directory (or this process's own),
    in Prometheus text format."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


async def _serve_metrics(request: web.Request) -> web.Response:
    flush_metrics()  # this process's own tallies, up to now
    # Reading every process's file is disk work: off the event loop.
    body = await asyncio.to_thread(exposition)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_app() -> web.Application:
    """An application answering `GET /metrics`, for a listener of its own."""
    app = web.Application()
    app.router.add_get("/metrics", _serve_metrics)
    return app


async def metrics_listener(config: MetricsConfig) -> AsyncIterator[None]:
    """Serve `metrics_app` on `config.addr` while the caller runs (a cleanup context body).

    Raises `MetricsListenerError` if the address cannot be bound.
    """
    runner = web.AppRunner(metrics_app(), access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, config.host, config.port).start()
        except OSError as e:
            raise _cannot_listen(config, e) from e
        yield
    finally:
        await runner.cleanup()
