"""The gc phase: our online collection against Distribution's offline `garbage-collect`.

    .venv/bin/python -m bench.gc [--manifests 10000] [--blobs 100000] [--workdir DIR]

One data set is written straight into Distribution's layout on a directory:
`--manifests` tagged image manifests over 100 repositories, each naming a
config and three layers, and as many unreferenced blobs (linked, as a
deleted image leaves them) as it takes to reach `--blobs`: half of them at
10 blobs a manifest. Every file is dated two hours back, past the one-hour
grace period. Three copies of the same bytes are then collected:

1. `docker-registry garbage-collect` (Distribution 2.8, registry stopped, as it
   requires) and 2. `cargobay gc`, alternating: wall time and peak memory of
   each, storage requests of ours (Distribution reports none), and whether
   both left the same blobs.
3. `cargobay gc` while one `cargobay serve` on that copy takes pushes and
   pulls, against the same load without a collection before and after:
   requests per second and errors.

Seeding straight into storage is what makes 100,000 blobs affordable on a
shared 2-core machine; the figures go to stdout and `--output` as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/gc.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench import servers

ROOT = "docker/registry/v2"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPOSITORIES = 100
LAYERS_PER_IMAGE = 3
AGE = 2 * 3600.0
LOAD_CONCURRENCY = 8


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(root: Path, path: str, data: bytes, when: float) -> None:
    full = root / path
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_bytes(data)
    os.utime(full, (when, when))


def seed(root: Path, manifests: int, blobs: int) -> dict[str, int]:
    """Write the data set below `root`; how many of each thing it holds."""
    when = time.time() - AGE
    garbage = 0
    for m in range(manifests):
        repo = f"gc/team{m % REPOSITORIES:02d}/app"
        base = f"{ROOT}/repositories/{repo}"
        contents = [f"config {m}".encode()] + [
            f"layer {m}.{i}".encode() * 8 for i in range(LAYERS_PER_IMAGE)
        ]
        for data in contents:
            hexdigest = _sha(data)
            _write(root, f"{ROOT}/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data", data, when)
            link = b"sha256:" + hexdigest.encode()
            _write(root, f"{base}/_layers/sha256/{hexdigest}/link", link, when)
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
        _write(root, f"{ROOT}/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data", manifest, when)
        _write(root, f"{base}/_manifests/revisions/sha256/{hexdigest}/link", link, when)
        tag = f"{base}/_manifests/tags/t{m}"
        _write(root, f"{tag}/current/link", link, when)
        _write(root, f"{tag}/index/sha256/{hexdigest}/link", link, when)
    total = manifests * (LAYERS_PER_IMAGE + 2)
    for g in range(max(0, blobs - total)):
        data = f"garbage {g}".encode() * 8
        hexdigest = _sha(data)
        repo = f"gc/team{g % REPOSITORIES:02d}/app"
        _write(root, f"{ROOT}/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data", data, when)
        link = b"sha256:" + hexdigest.encode()
        _write(root, f"{ROOT}/repositories/{repo}/_layers/sha256/{hexdigest}/link", link, when)
        garbage += 1
    return {"manifests": manifests, "blobs": total + garbage, "unreferenced": garbage}


def blobs_left(root: Path) -> set[str]:
    base = root / ROOT / "blobs" / "sha256"
    return {p.parent.name for p in base.glob("*/*/data")}


@dataclass
class Collection:
    """One collection of one copy."""

    who: str
    seconds: float
    peak_rss_mib: float
    requests: int | None
    blobs_left: int
    notes: dict[str, Any] = field(default_factory=dict)


def _timed(argv: list[str], workdir: Path) -> tuple[float, float, str]:
    """Run `argv` to its end: (wall seconds, peak RSS in MiB, stdout). Fails on an error exit."""
    out_path, err_path = workdir / "collect.out", workdir / "collect.err"
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # Distribution 2.8
    started = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        # wait4, not wait: the child's own peak memory comes with its exit status.
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise servers.BenchError(f"{argv} failed: {err_path.read_text()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, out_path.read_text()


def cargobay_config(workdir: Path, root: Path, port: int) -> Path:
    path = workdir / f"cargobay-{root.name}.toml"
    path.write_text(
        f'[http]\naddr = "127.0.0.1:{port}"\nworkers = 1\n'
        f'[storage]\ndriver = "filesystem"\n[storage.filesystem]\nroot = "{root}"\n'
        '[log]\nlevel = "error"\naccess_log = false\n'
    )
    return path


def distribution_config(workdir: Path, root: Path) -> Path:
    path = workdir / f"distribution-{root.name}.yml"
    path.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "error"},
                "storage": {
                    "filesystem": {"rootdirectory": str(root)},
                    "delete": {"enabled": True},
                },
                "http": {"addr": "127.0.0.1:0"},
            }
        )
    )
    return path


def collect_cargobay(workdir: Path, root: Path) -> Collection:
    config = cargobay_config(workdir, root, servers.free_port())
    argv = [str(servers.CARGOBAY), "gc", "--config", str(config), "--json"]
    seconds, rss, out = _timed(argv, workdir)
    report = json.loads(out)
    return Collection(
        "cargobay",
        seconds,
        rss,
        sum(report["requests"].values()),
        len(blobs_left(root)),
        {
            "freed_blobs": report["freed"]["blobs"]["count"],
            "freed_layer_links": report["freed"]["layer_links"]["count"],
            "requests": report["requests"],
        },
    )


def collect_distribution(workdir: Path, root: Path) -> Collection:
    config = distribution_config(workdir, root)
    seconds, rss, _ = _timed([str(servers.DISTRIBUTION), "garbage-collect", str(config)], workdir)
    return Collection("distribution", seconds, rss, None, len(blobs_left(root)))


# -- load during a collection --------------------------------------------------------


@dataclass
class Load:
    """Pushes and pulls through one server for a while."""

    label: str
    seconds: float
    operations: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

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

    deadline = time.monotonic() + seconds

    async def worker(http: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            try:
                await one(http)
                result.operations += 1
            except (TimeoutError, RuntimeError, aiohttp.ClientError) as e:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(str(e))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        await asyncio.gather(*(worker(http) for _ in range(LOAD_CONCURRENCY)))
    return result


def load_during_collection(workdir: Path, root: Path, seconds: float) -> dict[str, Any]:
    """The same load without, with, and again without a collection running meanwhile."""
    port = servers.free_port()
    server = servers.cargobay(workdir, port, root=root).start()
    config = cargobay_config(workdir, root, servers.free_port())
    try:
        base = f"http://127.0.0.1:{port}"
        before = asyncio.run(_load(base, seconds, "without", 1))
        gc = subprocess.Popen(
            [str(servers.CARGOBAY), "gc", "--config", str(config), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
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
        "throughput_ratio": during.per_second / ((before.per_second + after.per_second) / 2),
        "errors_during": during.errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    try:
        started = time.monotonic()
        source = workdir / "source"
        results["dataset"] = seed(source, args.manifests, args.blobs)
        print(f"seeded {results['dataset']} in {time.monotonic() - started:.0f}s", flush=True)
        collections: list[Collection] = []
        for rnd in range(args.rounds):
            for who, collect in (
                ("distribution", collect_distribution),
                ("cargobay", collect_cargobay),
            ):
                copy = workdir / f"{who}-{rnd}"
                shutil.copytree(source, copy)
                done = collect(workdir, copy)
                done.notes["round"] = rnd + 1
                collections.append(done)
                print(
                    f"  {who:<12} {done.seconds:7.1f}s  peak {done.peak_rss_mib:6.0f} MiB  "
                    f"requests {done.requests}  blobs left {done.blobs_left}",
                    flush=True,
                )
            ours, theirs = workdir / f"cargobay-{rnd}", workdir / f"distribution-{rnd}"
            collections[-1].notes["same_blobs_left_as_distribution"] = blobs_left(
                ours
            ) == blobs_left(theirs)
            shutil.rmtree(ours)
            shutil.rmtree(theirs)
        results["collections"] = [asdict(c) for c in collections]
        copy = workdir / "online"
        shutil.copytree(source, copy)
        results["online"] = load_during_collection(workdir, copy, args.load_seconds)
        print(json.dumps(results["online"], indent=1), flush=True)
        ours = [c.seconds for c in collections if c.who == "cargobay"]
        theirs = [c.seconds for c in collections if c.who == "distribution"]
        results["speedup"] = sorted(theirs)[len(theirs) // 2] / sorted(ours)[len(ours) // 2]
        print(f"Distribution's time / ours (medians): {results['speedup']:.2f}x")
    finally:
        if args.workdir is None:
            servers.remove_tree(workdir)
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
