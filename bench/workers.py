"""Running a client phase in several processes, started together, measured as one.

A phase is an async function `fn(job, ready)`: it prepares (generates data,
opens a session), calls `ready()` — which waits until every worker of the
phase is prepared — then does the measured work and returns a `WorkerResult`.
The parent reads the servers' CPU and resets their peak RSS just before the
start line, and reads them again when the last worker is done, so setup costs
neither side anything measured.

Each worker reports its own CPU time while measuring: a worker busy above
`SATURATED` of a core is the load generator limiting the figure, which the
report says.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import resource
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bench.procstat import PhaseMeter
from bench.servers import BenchError

#: A worker using more than this share of one core is the bottleneck it measures.
SATURATED = 0.9

Ready = Callable[[], None]
PhaseFn = Callable[[Any, Ready], Coroutine[Any, Any, "WorkerResult"]]


@dataclass
class WorkerResult:
    """What one worker process measured."""

    latencies: list[float] = field(default_factory=list)  # seconds, one per request/item
    requests: int = 0  # HTTP requests to the registry
    items: int = 0  # blobs, images, uploads ... (the phase's unit of throughput)
    bytes: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    cpu_seconds: float = 0.0

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message[:300])


@dataclass
class PhaseRun:
    """All workers' results with the servers' cost over the same span."""

    results: list[WorkerResult]
    server_cpu: dict[str, float]
    server_peak_rss: dict[str, int]

    @property
    def wall(self) -> float:
        return max(r.finished for r in self.results) - min(r.started for r in self.results)

    @property
    def latencies(self) -> list[float]:
        return [x for r in self.results for x in r.latencies]

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.results)

    @property
    def items(self) -> int:
        return sum(r.items for r in self.results)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.results)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)

    @property
    def error_samples(self) -> list[str]:
        return [s for r in self.results for s in r.error_samples][:5]

    @property
    def client_busiest(self) -> float:
        """The busiest worker's CPU share of one core while measuring."""
        return max(r.cpu_seconds / max(r.finished - r.started, 1e-9) for r in self.results)


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(fn: PhaseFn, job: Any, barrier: Any, queue: Any) -> None:
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        loop_factory = None
    marks: dict[str, float] = {}

    def ready() -> None:
        barrier.wait(timeout=600)
        marks["cpu"] = _self_cpu()
        marks["t0"] = time.monotonic()

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            result = runner.run(fn(job, ready))
        result.finished = result.finished or time.monotonic()
        result.started = marks.get("t0", result.finished)
        result.cpu_seconds = _self_cpu() - marks.get("cpu", _self_cpu())
        queue.put(("ok", result))
    except BaseException:
        barrier.abort()
        queue.put(("error", traceback.format_exc()))


def run_phase(
    fn: PhaseFn, jobs: list[Any], servers: dict[str, int], timeout: float = 3600.0
) -> PhaseRun:
    """Run `fn(job, ready)` for each job in its own process; measure `servers` (name -> pid)."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(jobs) + 1)
    queue = ctx.Queue()
    processes = [ctx.Process(target=_child, args=(fn, job, barrier, queue)) for job in jobs]
    for p in processes:
        p.start()
    meter = PhaseMeter(servers)
    try:
        # A broken barrier means a worker failed in setup: its traceback is in the queue.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=600)
        meter.start()
        outcomes = []
        deadline = time.monotonic() + timeout
        for _ in jobs:
            outcomes.append(queue.get(timeout=max(deadline - time.monotonic(), 1)))
        meter.stop()
    finally:
        for p in processes:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    failures = [detail for status, detail in outcomes if status != "ok"]
    if failures:
        raise BenchError(f"a client worker failed:\n{failures[0]}")
    return PhaseRun([r for _, r in outcomes], meter.cpu, meter.peak_rss)
