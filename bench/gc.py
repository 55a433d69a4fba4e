"""The gc phase: our online collection against Distribution's offline `garbage-collect`.

    .venv/bin/python -m bench.gc [--backend directory|s3] [--manifests 10000]
                                 [--blobs 100000] [--workdir DIR]

One data set, in Distribution's layout (`objects`): `--manifests` tagged
image manifests over 100 repositories, each naming a config and three layers,
and as many unreferenced blobs (linked, as a deleted image leaves them) as it
takes to reach `--blobs`: half of them at 10 blobs a manifest. Copies of the
same bytes are then collected:

1. `docker-registry garbage-collect` (Distribution 2.8, registry stopped, as it
   requires) and 2. `cargobay gc`, alternating, `--rounds` times: wall time,
   CPU and peak memory of each process, storage requests, and whether both
   left the same blobs.
3. `cargobay gc` while one `cargobay serve` on a third copy takes pushes and
   pulls, against the same load without a collection before and after:
   requests per second and errors.

Where the copies live (`--backend`):

- `directory` (the default): the data set is written once, every file dated
  two hours back, past the default grace period of one hour, and copied for
  each collection. Storage requests are Cargobay's report's driver calls;
  Distribution's are not counted.
- `s3`: one SeaweedFS (`servers.SeaweedFS`) with a bucket per copy, all
  written up front through its filer. Objects on S3 cannot be back-dated, so
  once seeding is over the collections run with a grace period of one second
  (`cargobay gc --grace 1`; Distribution has none), and the collection under
  load with `ONLINE_GRACE`, which keeps what the load pushes safe as a real
  grace period would. Storage requests are what SeaweedFS counts it answered
  (by its request type; HEAD counts as GET), for Distribution as for us, with
  the CPU SeaweedFS spent meanwhile. The timed collections reach SeaweedFS
  straight; one more collection by each, on copies of their own, goes through
  the counting proxy (`bench.s3count`), which names every request's S3
  operation and key kind. The proxy adds latency to every request (at the
  quick size it made Distribution's serial collection 57-81% slower, ours
  8-56%), so those two are reported but not compared. Blobs left are read from a
  listing of each bucket.

Seeding straight into storage is what makes 100,000 blobs affordable on a
shared 2-core machine; the figures go to stdout and `--output` as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

if __package__ in (None, ""):  # `python bench/gc.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench import procstat, s3count, seed, servers
from bench.s3util import s3_client
from bench.servers import Process, S3Target, SeaweedFS

ROOT = "docker/registry/v2"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPOSITORIES = 100
LAYERS_PER_IMAGE = 3
AGE = 2 * 3600.0
LOAD_CONCURRENCY = 8
#: The grace period of the collection under load on S3: longer than a push of
#: the load takes, shorter than the time since seeding (waited out if need be).
ONLINE_GRACE = 30.0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def objects(manifests: int, blobs: int) -> Iterator[tuple[str, bytes]]:
    """The data set: (path relative to the storage root, content) of every object."""
    for m in range(manifests):
        repo = f"gc/team{m % REPOSITORIES:02d}/app"
        base = f"{ROOT}/repositories/{repo}"
        contents = [f"config {m}".encode()] + [
            f"layer {m}.{i}".encode() * 8 for i in range(LAYERS_PER_IMAGE)
        ]
        for data in contents:
            hexdigest = _sha(data)
            yield f"{ROOT}/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data", data
            yield f"{base}/_layers/sha256/{hexdigest}/link", b"sha256:" + hexdigest.encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": "sha256:" + _sha(contents[0]),
                    "size": len(contents[0]),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": "sha256:" + _sha(data),
                        "size": len(data),
                    }
                    for data in contents[1:]
                ],
            }
        ).encode()
        hexdigest = _sha(manifest)
        link = b"sha256:" + hexdigest.encode()
        yield f"{ROOT}/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data", manifest
        yield f"{base}/_manifests/revisions/sha256/{hexdigest}/link", link
        tag = f"{base}/_manifests/tags/t{m}"
        yield f"{tag}/current/link", link
        yield f"{tag}/index/sha256/{hexdigest}/link", link
    for g in range(garbage_count(manifests, blobs)):
        data = f"garbage {g}".encode() * 8
        hexdigest = _sha(data)
        repo = f"gc/team{g % REPOSITORIES:02d}/app"
        yield f"{ROOT}/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data", data
        link = b"sha256:" + hexdigest.encode()
        yield f"{ROOT}/repositories/{repo}/_layers/sha256/{hexdigest}/link", link


def garbage_count(manifests: int, blobs: int) -> int:
    """How many unreferenced blobs `objects` adds to reach `blobs`."""
    return max(0, blobs - manifests * (LAYERS_PER_IMAGE + 2))


def _blob_of(path: str) -> str | None:
    """The hex digest of a blob data path relative to the storage root, else None."""
    parts = path.split("/")
    if len(parts) == 8 and parts[3] == "blobs" and parts[-1] == "data":
        return parts[-2]
    return None


# -- where the copies live -------------------------------------------------------------


@dataclass
class Copy:
    """One copy of the data set: a directory, or a bucket reached straight or, if
    `counted`, through the counting proxy."""

    name: str
    root: Path | None = None
    s3: S3Target | None = None
    counted: bool = False

    def registry_args(self) -> dict[str, Any]:
        """The storage arguments of `servers.cargobay(...)` and the config writers."""
        return {"root": self.root} if self.s3 is None else {"s3": self.s3}


class Backend(Protocol):
    """Where the copies live; `seed` first, then `copy` each of the names seeded."""

    #: `cargobay gc --grace` of the timed collections and of the one under load;
    #: None leaves the configured default (one hour).
    grace: float | None
    online_grace: float | None
    #: When the objects were written (on a directory: the time they are dated).
    seeded_at: float
    #: Whether `copy(..., counted=True)` reaches storage through the counting
    #: proxy, for a collection of each collector more: the proxy adds latency to
    #: every request, so the timed collections go to storage straight.
    proxied: bool

    def seed(self, manifests: int, blobs: int, names: list[str]) -> None:
        """Write the data set once for each of `names`."""

    def copy(self, name: str, counted: bool = False) -> AbstractContextManager[Copy]:
        """The copy `name` while the context lasts (a directory is removed after it)."""

    def start_counting(self) -> None:
        """Storage requests from now on are what `counted` answers."""

    def counted(self) -> dict[str, Any] | None:
        """What storage did since `start_counting`, if this backend can tell: `total`
        requests, by SeaweedFS's request type, by S3 operation and key where they came
        through the proxy, and the storage server's CPU seconds."""

    def blobs_left(self, copy: Copy) -> set[str]:
        """The hex digests of the blobs `copy` holds."""

    def close(self) -> None:
        """Stop what serves the copies and remove them."""


class Directories:
    """Copies as directories of one tree, seeded once and dated back past the grace period."""

    grace: float | None = None
    online_grace: float | None = None
    proxied = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.source = workdir / "source"
        self.seeded_at = 0.0

    def seed(self, manifests: int, blobs: int, names: list[str]) -> None:
        self.seeded_at = when = time.time() - AGE
        made: set[Path] = set()
        for path, data in objects(manifests, blobs):
            full = self.source / path
            if full.parent not in made:
                full.parent.mkdir(parents=True, exist_ok=True)
                made.add(full.parent)
            full.write_bytes(data)
            os.utime(full, (when, when))

    @contextmanager
    def copy(self, name: str, counted: bool = False) -> Iterator[Copy]:
        root = self.workdir / name
        shutil.copytree(self.source, root)
        try:
            yield Copy(name, root=root)
        finally:
            servers.remove_tree(root)

    def start_counting(self) -> None:
        pass

    def counted(self) -> dict[str, Any] | None:
        return None

    def blobs_left(self, copy: Copy) -> set[str]:
        assert copy.root is not None
        base = copy.root / ROOT / "blobs" / "sha256"
        return {p.parent.name for p in base.glob("*/*/data")}

    def close(self) -> None:
        servers.remove_tree(self.source)


class Buckets:
    """Copies as buckets of one SeaweedFS, all seeded up front; requests are counted."""

    grace: float | None = 1.0
    online_grace: float | None = ONLINE_GRACE
    proxied = True

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.seaweed = SeaweedFS(workdir / "seaweedfs", metrics=True)
        self.counter: Process | None = None
        self.seeded_at = 0.0
        self._proxy_before = s3count.Counts()
        self._seaweed_before: dict[str, int] = {}
        self._cpu_before = 0.0

    def seed(self, manifests: int, blobs: int, names: list[str]) -> None:
        self.seaweed.start([_bucket(name) for name in names])
        self.counter = servers.s3_counter(self.workdir, self.seaweed.endpoint).start()
        filer = f"http://127.0.0.1:{self.seaweed.filer}"
        # A process per bucket, two at a time: one process cannot keep SeaweedFS busy.
        jobs = [(filer, _bucket(name), manifests, blobs) for name in names]
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.starmap(_fill_bucket, jobs)
        self.seeded_at = time.time()

    @contextmanager
    def copy(self, name: str, counted: bool = False) -> Iterator[Copy]:
        assert self.counter is not None, "seed first"
        endpoint = self.counter.url if counted else self.seaweed.endpoint
        yield Copy(name, s3=S3Target(endpoint, _bucket(name)), counted=counted)

    def start_counting(self) -> None:
        assert self.counter is not None
        self._proxy_before = s3count.fetch_counts(self.counter.url)
        self._seaweed_before = self.seaweed.s3_requests()
        self._cpu_before = procstat.cpu_seconds(self.seaweed.pid)

    def counted(self) -> dict[str, Any] | None:
        assert self.counter is not None
        cpu = procstat.cpu_seconds(self.seaweed.pid) - self._cpu_before
        proxy = s3count.fetch_counts(self.counter.url).minus(self._proxy_before)
        now = self.seaweed.s3_requests()
        # SeaweedFS's types: GET (HEAD too), PUT, LIST, DELETE (DeleteObjects), ...
        by_type = {k: n - self._seaweed_before.get(k, 0) for k, n in sorted(now.items())}
        by_type = {k: n for k, n in by_type.items() if n}
        counts: dict[str, Any] = {"total": sum(by_type.values()), "seaweedfs": by_type}
        if proxy.total:
            counts["by_operation_and_key"] = proxy.to_json()["counts"]
        return counts | {"seaweedfs_cpu_seconds": round(cpu, 2)}

    def blobs_left(self, copy: Copy) -> set[str]:
        assert copy.s3 is not None
        return asyncio.run(self._blobs_left(copy.s3.bucket))

    async def _blobs_left(self, bucket: str) -> set[str]:
        found: set[str] = set()
        # Straight to SeaweedFS: the listing is the bench's, not a collector's.
        async with s3_client(self.seaweed.endpoint) as client:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=bucket, Prefix=f"{ROOT}/blobs/"):
                for item in page.get("Contents", ()):
                    if (blob := _blob_of(item["Key"])) is not None:
                        found.add(blob)
        return found

    def close(self) -> None:
        if self.counter is not None:
            self.counter.stop()
        self.seaweed.stop()


def _bucket(name: str) -> str:
    return "gc-" + name


def _fill_bucket(filer: str, bucket: str, manifests: int, blobs: int) -> int:
    """Write the data set into `bucket` through the SeaweedFS filer at `filer`."""
    return asyncio.run(seed.filer_put(filer, bucket, "", objects(manifests, blobs), 48))


BACKENDS: dict[str, Callable[[Path], Backend]] = {"directory": Directories, "s3": Buckets}
#: The collectors, in the order each round runs them.
WHO = ("distribution", "cargobay")


def _copy_name(rnd: int, who: str, counted: bool) -> str:
    return f"{who}-{'counted' if counted else rnd}"


# -- one collection --------------------------------------------------------------------


@dataclass
class Collection:
    """One collection of one copy.

    `cpu_seconds`: the collector's user and system CPU. `requests`: storage
    requests; on S3 those SeaweedFS answered, on a directory Cargobay's
    driver calls, and None for Distribution, which reports none. `counted`:
    through the counting proxy, so not timed fairly.
    """

    who: str
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    requests: int | None
    blobs_left: int
    counted: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


def _timed(argv: list[str], workdir: Path) -> tuple[float, float, float, str]:
    """Run `argv` to its end: (wall seconds, CPU seconds, peak RSS in MiB, stdout).
    Fails on an error exit."""
    out_path, err_path = workdir / "collect.out", workdir / "collect.err"
    started = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=servers.distribution_env())
        # wait4, not wait: the child's own CPU and peak memory come with its exit status.
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise servers.BenchError(f"{argv} failed: {err_path.read_text()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024, out_path.read_text()


def gc_argv(workdir: Path, copy: Copy, grace: float | None) -> list[str]:
    """`cargobay gc --json` on `copy`."""
    config = servers.cargobay_config(workdir, servers.free_port(), **copy.registry_args())
    argv = [str(servers.CARGOBAY), "gc", "--config", str(config), "--json"]
    return argv + ([] if grace is None else ["--grace", str(grace)])


def collect(workdir: Path, backend: Backend, copy: Copy, who: str) -> tuple[Collection, set[str]]:
    """Collect `copy` with `who`'s collector, once the data set is past the grace period;
    what it took, and the blobs it left."""
    if who == "cargobay":
        argv = gc_argv(workdir, copy, backend.grace)
    else:
        config = servers.distribution_config(workdir, servers.free_port(), **copy.registry_args())
        argv = [str(servers.DISTRIBUTION), "garbage-collect", str(config)]
    _wait_past(backend, backend.grace)
    backend.start_counting()
    seconds, cpu, rss, out = _timed(argv, workdir)
    counted = backend.counted()
    left = backend.blobs_left(copy)
    requests = None if counted is None else int(counted["total"])
    notes: dict[str, Any] = {} if counted is None else {"storage_requests": counted}
    if who == "cargobay":
        report = json.loads(out)
        if requests is None:
            requests = sum(report["requests"].values())
        notes |= {
            "report_seconds": report["seconds"],
            "freed_blobs": report["freed"]["blobs"]["count"],
            "freed_layer_links": report["freed"]["layer_links"]["count"],
            "driver_calls": report["requests"],
        }
    return Collection(who, seconds, cpu, rss, requests, len(left), copy.counted, notes), left


def _wait_past(backend: Backend, grace: float | None) -> None:
    """Sleep until every seeded object is older than `grace` (None: the default, an hour)."""
    if grace is not None:
        time.sleep(max(0.0, backend.seeded_at + grace + 0.1 - time.time()))


# -- load during a collection --------------------------------------------------------


@dataclass
class Load:
    """Pushes and pulls through one server for a while."""

    label: str
    seconds: float
    operations: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    #: Operations finished in each second of the load, from its start.
    by_second: list[int] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0


async def _load(base: str, seconds: float, label: str, seed_: int) -> Load:
    """Push an image (a config, a shared and an own layer) then pull it back, in a loop."""
    result = Load(label, seconds)
    shared = b"shared base layer " * 256
    rng = random.Random(seed_)

    async def push_blob(http: aiohttp.ClientSession, repo: str, data: bytes) -> None:
        digest = "sha256:" + _sha(data)
        async with http.head(f"{base}/v2/{repo}/blobs/{digest}") as r:
            if r.status == 200:
                return
        async with http.post(f"{base}/v2/{repo}/blobs/uploads/?digest={digest}", data=data) as r:
            if r.status != 201:
                raise RuntimeError(f"blob upload {r.status}: {(await r.text())[:200]}")

    async def one(http: aiohttp.ClientSession) -> None:
        n = rng.getrandbits(48)
        repo = f"load/r{n % 10}"
        config = f'{{"n": {n}}}'.encode()
        own = f"own layer {n} ".encode() * 256
        for data in (config, shared, own):
            await push_blob(http, repo, data)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": "sha256:" + _sha(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": "sha256:" + _sha(d),
                        "size": len(d),
                    }
                    for d in (shared, own)
                ],
            }
        ).encode()
        async with http.put(
            f"{base}/v2/{repo}/manifests/t{n}",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        ) as r:
            if r.status != 201:
                raise RuntimeError(f"manifest put {r.status}: {(await r.text())[:200]}")
        async with http.get(
            f"{base}/v2/{repo}/manifests/t{n}", headers={"Accept": OCI_MANIFEST}
        ) as r:
            if r.status != 200 or await r.read() != manifest:
                raise RuntimeError(f"manifest get {r.status}")
        for data in (config, shared, own):
            async with http.get(f"{base}/v2/{repo}/blobs/sha256:{_sha(data)}") as r:
                if r.status != 200 or await r.read() != data:
                    raise RuntimeError(f"blob get {r.status}")

    start = time.monotonic()
    deadline = start + seconds
    result.by_second = [0] * (int(seconds) + 1)

    async def worker(http: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            try:
                await one(http)
                result.operations += 1
                result.by_second[min(int(time.monotonic() - start), int(seconds))] += 1
            except (TimeoutError, RuntimeError, aiohttp.ClientError) as e:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(str(e))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        await asyncio.gather(*(worker(http) for _ in range(LOAD_CONCURRENCY)))
    return result


def load_during_collection(
    workdir: Path, backend: Backend, copy: Copy, seconds: float
) -> dict[str, Any]:
    """The same load without, with, and again without a collection running meanwhile."""
    port = servers.free_port()
    server = servers.cargobay(workdir, port, **copy.registry_args()).start()
    argv = gc_argv(workdir, copy, backend.online_grace)
    _wait_past(backend, backend.online_grace)
    try:
        base = f"http://127.0.0.1:{port}"
        before = asyncio.run(_load(base, seconds, "without", 1))
        gc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        during = asyncio.run(_load(base, seconds, "during gc", 2))
        out, err = gc.communicate()
        if gc.returncode:
            raise servers.BenchError(f"cargobay gc failed during load: {err.decode()[-2000:]}")
        report = json.loads(out)
        after = asyncio.run(_load(base, seconds, "without", 3))
    finally:
        server.stop()
    return {
        "loads": [asdict(x) | {"per_second": x.per_second} for x in (before, during, after)],
        "gc_seconds": report["seconds"],
        "gc_overlapped": report["seconds"] >= seconds,
        "gc_freed_blobs": report["freed"]["blobs"]["count"],
        "throughput_ratio": during.per_second / ((before.per_second + after.per_second) / 2),
        "errors_during": during.errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="directory")
    parser.add_argument("--manifests", type=int, default=10_000)
    parser.add_argument("--blobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of Distribution, Cargobay")
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cargobay-bench-gc-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"command": " ".join(["python -m bench.gc", *(argv or sys.argv[1:])])}
    backend: Backend = BACKENDS[args.backend](workdir)
    # (round, collector, through the counting proxy); round 0 is the counted one.
    runs = [(rnd + 1, who, False) for rnd in range(args.rounds) for who in WHO]
    if backend.proxied:
        runs += [(0, who, True) for who in WHO]
    try:
        started = time.monotonic()
        backend.seed(args.manifests, args.blobs, [_copy_name(*run) for run in runs] + ["online"])
        garbage = garbage_count(args.manifests, args.blobs)
        results["dataset"] = {
            "backend": args.backend,
            "manifests": args.manifests,
            "blobs": args.manifests * (LAYERS_PER_IMAGE + 2) + garbage,
            "unreferenced": garbage,
        }
        print(f"seeded {results['dataset']} in {time.monotonic() - started:.0f}s", flush=True)
        collections: list[Collection] = []
        left: dict[str, set[str]] = {}
        for rnd, who, counted in runs:
            with backend.copy(_copy_name(rnd, who, counted), counted) as copy:
                done, left[who] = collect(workdir, backend, copy, who)
            done.notes["round"] = rnd
            collections.append(done)
            print(
                f"  {who:<12} {done.seconds:7.1f}s  cpu {done.cpu_seconds:6.1f}s  "
                f"peak {done.peak_rss_mib:4.0f} MiB  requests {done.requests}  "
                f"blobs left {done.blobs_left}{'  (counting proxy)' if counted else ''}",
                flush=True,
            )
            if who == "cargobay":
                done.notes["same_blobs_left_as_distribution"] = left["cargobay"] == left[
                    "distribution"
                ]
        results["collections"] = [asdict(c) for c in collections]
        with backend.copy("online") as copy:
            results["online"] = load_during_collection(workdir, backend, copy, args.load_seconds)
        print(json.dumps(results["online"], indent=1), flush=True)
        ours = [c.seconds for c in collections if c.who == "cargobay" and not c.counted]
        theirs = [c.seconds for c in collections if c.who == "distribution" and not c.counted]
        results["speedup"] = sorted(theirs)[len(theirs) // 2] / sorted(ours)[len(ours) // 2]
        print(f"Distribution's time / ours (medians): {results['speedup']:.2f}x")
    finally:
        backend.close()
        if args.workdir is None:
            servers.remove_tree(workdir)
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
