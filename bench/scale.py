"""The scale phase: Cargobay with 1 and 2 workers beside Distribution, and the idle feed cost.

One Python process serves from one core; Distribution (Go) serves from all of
them. `cargobay serve --workers N` runs N processes on one socket, so what
decides how far it scales is the server CPU per request with several workers:
at that cost, C cores give C * 1000 / (CPU ms per request) requests per
second. Each round, on a fresh backend for each, Distribution, Cargobay with
`--workers 1` and Cargobay with `--workers 2` are pushed the same images and
then measured under the manifest storm (wrk GET, as `storm-get`) and the pull
simulation (as `pull-sim`; on S3 also with redirects on, as
`pull-sim-redirect`, restarted on the same bucket). The server's CPU is
that of its whole process tree (master and workers, `bench.procstat`).
Their order rotates from round to round, so none is always first on a
machine whose speed drifts.

On S3, each also idles for `IDLE_SECONDS` on a fresh SeaweedFS, which counts
the S3 requests it answers: what following the change feed costs per process
when nothing happens (a listing per `[feed] interval_seconds`). On a directory
the feed is a directory listing: there is no request to count.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bench import client, loadtools
from bench.workers import run_phase

if TYPE_CHECKING:
    from bench.run import Bench

#: (registry, worker processes) of each variant; Distribution's 0 means "not Cargobay".
VARIANTS: tuple[tuple[str, int], ...] = (("distribution", 0), ("cargobay", 1), ("cargobay", 2))
#: How long each registry idles while its S3 requests are counted.
IDLE_SECONDS = 20.0
#: Left after readiness before counting idle requests, so start-up reads do not count.
IDLE_SETTLE_SECONDS = 3.0
#: Left after the push before measuring, so every worker has read the feed (1 s interval)
#: and serves from its index, not by reading through to storage.
FEED_SETTLE_SECONDS = 2.0


def label(kind: str, workers: int) -> str:
    """The registry's name in the measures: `distribution`, `cargobay-1w`, `cargobay-2w`."""
    return kind if kind != "cargobay" else f"cargobay-{workers}w"


def scale_round(bench: Bench, backend_kind: str, rnd: int) -> None:
    """One round of the scale phase on `backend_kind`: each variant in turn, in rotated order."""
    shift = (rnd - 1) % len(VARIANTS)
    for kind, workers in VARIANTS[shift:] + VARIANTS[:shift]:
        bench.guarded(_serve, bench, backend_kind, kind, workers, rnd)
    if backend_kind == "s3":
        for kind, workers in VARIANTS[shift:] + VARIANTS[:shift]:
            bench.guarded(_idle, bench, kind, workers, rnd)


def _serve(bench: Bench, backend_kind: str, kind: str, workers: int, rnd: int) -> None:
    """Push, then the manifest storm and the pull simulation, on a fresh backend."""
    from bench.run import log, storm_requests

    p = bench.plan
    name = label(kind, workers)
    log(f"== {backend_kind}, round {rnd}/{p.rounds}: scale, {name}")
    with bench.fresh_backend(backend_kind, f"r{rnd}-{backend_kind}-scale-{name}") as backend:
        process = bench.start(kind, backend, workers=max(workers, 1))
        try:
            base = process.url
            pushed = run_phase(client.push, bench.push_jobs(base, "monolithic", backend_kind), {})
            images = [image for result in pushed.results for image in result.extra["images"]]
            time.sleep(FEED_SETTLE_SECONDS)
            bench.check_images(base, images)
            bench.tool_phase(
                name, backend, process, "scale-storm-get", rnd,
                lambda: loadtools.wrk(base, storm_requests(images), bench.workdir,
                                      duration=p.storm_seconds, connections=p.storm_connections),
                "wrk", 2,
            )
            procs = p.client_procs
            jobs = [client.PullSimJob(base, images[k::procs], p.sim_concurrency, p.pull_seconds)
                    for k in range(procs)]
            bench.client_phase(name, backend, process, "scale-pull-sim", rnd, client.pull_images,
                               jobs, "images/s", lambda r: r.items / r.wall)
            if backend_kind == "s3":
                # Each registry's layer bytes otherwise pass through it, which on S3 costs
                # both about the same per byte; with redirects the storage sends them.
                process.stop()
                process = bench.start(kind, backend, redirect=True, workers=max(workers, 1))
                jobs = [client.PullSimJob(process.url, images[k::procs], p.sim_concurrency,
                                          p.pull_seconds) for k in range(procs)]
                bench.client_phase(name, backend, process, "scale-pull-sim-redirect", rnd,
                                   client.pull_images, jobs, "images/s",
                                   lambda r: r.items / r.wall)
        finally:
            process.stop()


def _idle(bench: Bench, kind: str, workers: int, rnd: int) -> None:
    """S3 requests per second per process of a registry left idle on a fresh SeaweedFS."""
    from bench.run import Measure, log

    name = label(kind, workers)
    processes = max(workers, 1)
    with bench.fresh_backend("s3", f"r{rnd}-s3-idle-{name}", metrics=True) as backend:
        assert backend.seaweed is not None
        process = bench.start(kind, backend, workers=processes)
        try:
            time.sleep(IDLE_SETTLE_SECONDS)
            before = backend.seaweed.s3_requests()
            started = time.monotonic()
            time.sleep(IDLE_SECONDS)
            after = backend.seaweed.s3_requests()
            seconds = time.monotonic() - started
        finally:
            process.stop()
    by_type = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    count = sum(by_type.values())
    rate = count / seconds / processes
    bench.record(Measure(
        "s3", "scale-idle-feed", name, rnd, rate, "req/s/proc", requests=count, client="-",
        notes={"seconds": seconds, "processes": processes, "by_type": by_type,
               "per_process_per_day": rate * 86400},
    ))
    log(f"  idle {name}: {count} S3 requests in {seconds:.1f}s from {processes} process(es) "
        f"{by_type}")
