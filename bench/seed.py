"""Read-only data sets written straight into storage, in Distribution's layout.

Seeding 10,000 repositories or 100,000 tags through the HTTP API would take
longer than the benchmark itself. Both registries read the same on-disk (or
in-bucket) layout, so writing it directly is fair to both:

    docker/registry/v2/blobs/sha256/<hh>/<hex>/data                  manifests, configs, a layer
    docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link
    docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link

Every repository has `manifests` manifest revisions drawn from a shared pool,
and tags spread over them. Its `latest` tag was moved once, so its index holds
two entries (registries must read its `current` link to know which is live).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = "docker/registry/v2"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class DataSet:
    """`repos` repositories; repository i has `tags` tags over `manifests` revisions, or
    `big_tags` over `big_manifests` if i % `big_every` == 0."""

    name: str
    repos: int
    tags: int
    manifests: int
    big_every: int = 0
    big_tags: int = 0
    big_manifests: int = 0

    def repo_name(self, i: int) -> str:
        return f"{self.name}/team{i % 100:02d}/app{i:05d}"

    def is_big(self, i: int) -> bool:
        return bool(self.big_every) and i % self.big_every == 0

    def tag_count(self, i: int) -> int:
        return self.big_tags if self.is_big(i) else self.tags

    def manifest_count(self, i: int) -> int:
        return max(self.big_manifests, self.manifests) if self.is_big(i) else self.manifests

    def tag_names(self, i: int) -> list[str]:
        return ["latest"] + [f"v{t:04d}" for t in range(1, self.tag_count(i))]

    @property
    def total_tags(self) -> int:
        return sum(self.tag_count(i) for i in range(self.repos))

    def describe(self) -> str:
        return f"{self.repos:,} repositories, {self.total_tags:,} tags"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class _Pool:
    """The shared blobs: one small layer, and per manifest its config."""

    layer: bytes
    configs: list[bytes]
    manifests: list[bytes]


def _pool(size: int) -> _Pool:
    layer = b"\x1f\x8b" + hashlib.sha256(b"bench-layer").digest() * 32
    configs: list[bytes] = []
    manifests: list[bytes] = []
    for k in range(size):
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": [f"BENCH_REVISION={k}"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + _sha(layer)]},
        }).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + _sha(config),
                       "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": "sha256:" + _sha(layer),
                        "size": len(layer)}],
        }, indent=3).encode()
        configs.append(config)
        manifests.append(manifest)
    return _Pool(layer, configs, manifests)


def _blob_path(hexdigest: str) -> str:
    return f"{ROOT}/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"


def blob_items(spec: DataSet) -> Iterator[tuple[str, bytes]]:
    """The shared blobs of `spec`: (path relative to the storage root, content)."""
    pool = _pool(_pool_size(spec))
    for data in [pool.layer, *pool.configs, *pool.manifests]:
        yield _blob_path(_sha(data)), data


def _pool_size(spec: DataSet) -> int:
    return max(spec.manifests * 4, spec.big_manifests * 4, 8)


def repo_items(spec: DataSet, first: int, stop: int) -> Iterator[tuple[str, bytes]]:
    """The link files of repositories `first` to `stop - 1` of `spec`."""
    pool = _pool(_pool_size(spec))
    size = len(pool.manifests)
    layer_hex = _sha(pool.layer)
    manifest_hex = [_sha(m) for m in pool.manifests]
    config_hex = [_sha(c) for c in pool.configs]
    for i in range(first, stop):
        base = f"{ROOT}/repositories/{spec.repo_name(i)}"
        chosen = [(i + j) % size for j in range(spec.manifest_count(i))]
        yield f"{base}/_layers/sha256/{layer_hex}/link", f"sha256:{layer_hex}".encode()
        for k in chosen:
            yield (f"{base}/_layers/sha256/{config_hex[k]}/link",
                   f"sha256:{config_hex[k]}".encode())
            yield (f"{base}/_manifests/revisions/sha256/{manifest_hex[k]}/link",
                   f"sha256:{manifest_hex[k]}".encode())
        for t, tag in enumerate(spec.tag_names(i)):
            k = chosen[t % len(chosen)]
            link = f"sha256:{manifest_hex[k]}".encode()
            tag_base = f"{base}/_manifests/tags/{tag}"
            yield f"{tag_base}/current/link", link
            yield f"{tag_base}/index/sha256/{manifest_hex[k]}/link", link
            if t == 0 and len(chosen) > 1:
                # `latest` pointed at another revision before: two history entries.
                old = manifest_hex[chosen[-1]]
                yield f"{tag_base}/index/sha256/{old}/link", f"sha256:{old}".encode()


def _chunks(total: int, parts: int) -> list[tuple[int, int]]:
    step = -(-total // parts)
    return [(a, min(a + step, total)) for a in range(0, total, step)]


# -- filesystem ------------------------------------------------------------------------


def _write_files(root: str, items: Iterator[tuple[str, bytes]]) -> int:
    made: set[str] = set()
    count = 0
    for path, data in items:
        full = os.path.join(root, path)
        parent = os.path.dirname(full)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        with open(full, "wb") as f:
            f.write(data)
        count += 1
    return count


def _fs_part(args: tuple[str, DataSet, int, int]) -> int:
    root, spec, first, stop = args
    return _write_files(root, repo_items(spec, first, stop))


def seed_filesystem(root: Path, spec: DataSet, processes: int = 2) -> int:
    """Write `spec` below `root`; the number of files written."""
    import multiprocessing

    count = _write_files(str(root), blob_items(spec))
    jobs = [(str(root), spec, a, b) for a, b in _chunks(spec.repos, processes * 4)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        count += sum(pool.map(_fs_part, jobs))
    return count


# -- SeaweedFS -------------------------------------------------------------------------


async def filer_put(filer: str, bucket: str, prefix: str,
                    items: Iterator[tuple[str, bytes]], concurrency: int) -> int:
    """PUT each item through the SeaweedFS filer's HTTP API, `concurrency` in flight."""
    count = 0
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(concurrency * 4)
    base = f"{filer}/buckets/{bucket}/{prefix + '/' if prefix else ''}"
    headers = {"Content-Type": "application/octet-stream"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal count
            while (item := await queue.get()) is not None:
                path, data = item
                for attempt in range(5):
                    async with session.put(base + path, data=data, headers=headers) as r:
                        if r.status < 300:
                            break
                        if attempt == 4:
                            raise RuntimeError(f"filer PUT {path}: {r.status} {await r.text()}")
                    await asyncio.sleep(0.2)
                count += 1

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        for item in items:
            await queue.put(item)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    return count


def _s3_part(args: tuple[str, str, str, DataSet, int, int, bool]) -> int:
    filer, bucket, prefix, spec, first, stop, blobs = args
    items = blob_items(spec) if blobs else repo_items(spec, first, stop)
    return asyncio.run(filer_put(filer, bucket, prefix, items, 48))


def seed_seaweedfs(filer: str, bucket: str, prefix: str, spec: DataSet,
                   processes: int = 2) -> int:
    """Write `spec` into `bucket` under `prefix` through the SeaweedFS filer.

    The filer's HTTP API writes the very objects the S3 gateway serves (a
    bucket is the filer directory /buckets/<bucket>), at a fifth of the CPU
    of signed S3 PUTs, which matters when seeding 300,000 objects.
    """
    import multiprocessing

    count = _s3_part((filer, bucket, prefix, spec, 0, 0, True))
    jobs = [(filer, bucket, prefix, spec, a, b, False)
            for a, b in _chunks(spec.repos, processes * 4)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        count += sum(pool.map(_s3_part, jobs))
    return count


def timed(label: str, fn: object, *args: object) -> int:
    """Run `fn(*args)` and print how long it took."""
    started = time.monotonic()
    count: int = fn(*args)  # type: ignore[operator]
    print(f"  seeded {label}: {count:,} objects in {time.monotonic() - started:.1f}s", flush=True)
    return count
