"""Online garbage collection loses no acknowledged push: the race, for real.

Two Cargobay processes serve one storage. Pushers send images that share
layers through both of them, at random, while `cargobay gc --delete-untagged
--grace 3` runs in a loop and some images are deleted right after their push,
so shared layers keep falling out of use and coming back. A manifest PUT
refused with MANIFEST_BLOB_UNKNOWN is answered as a client does: the blobs are
uploaded again. Afterwards every acknowledged, undeleted push pulls
completely through both processes, byte-checked against its digests, and
once a last collection has run, no blob that nothing references is left.
On the filesystem and on SeaweedFS.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from registry import layout
from registry.config import S3Config
from registry.drivers.base import StorageDriver
from registry.drivers.filesystem import FilesystemDriver
from registry.drivers.s3 import S3Driver
from tests.e2e.processes import CARGOBAY, ServerFactory, ServerProcess
from tests.s3server import S3Server

pytestmark = pytest.mark.e2e

GRACE = 3
PUSH_SECONDS = 20.0
PUSH_SECONDS_AT_MOST = 90.0
COLLECTIONS = 3
PUSHERS = 4
REPOSITORIES = ("race/a", "race/b")
SHARED_LAYERS = 6
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Pushed:
    """An acknowledged push: where, under which tag, and every digest it consists of."""

    repository: str
    tag: str
    manifest: str
    blobs: tuple[str, ...]


class Pusher:
    """Pushes images as a client does, through whichever server it picks per request."""

    def __init__(self, http: aiohttp.ClientSession, servers: list[ServerProcess], seed: int):
        self.http = http
        self.servers = servers
        self.random = random.Random(seed)
        self.seed = seed
        self.refused = 0

    def url(self, path: str) -> str:
        return f"{self.random.choice(self.servers).url}{path}"

    async def push_blob(self, repository: str, data: bytes, check_first: bool) -> None:
        digest = digest_of(data)
        if check_first:
            async with self.http.head(self.url(f"/v2/{repository}/blobs/{digest}")) as response:
                if response.status == 200:
                    return
        server = self.random.choice(self.servers).url
        async with self.http.post(f"{server}/v2/{repository}/blobs/uploads/") as response:
            assert response.status == 202, await response.text()
            location = response.headers["Location"]
        if location.startswith("/"):
            location = server + location
        separator = "&" if "?" in location else "?"
        async with self.http.put(f"{location}{separator}digest={digest}", data=data) as response:
            assert response.status == 201, await response.text()

    async def push_image(self, number: int) -> Pushed:
        repository = self.random.choice(REPOSITORIES)
        tag = f"p{self.seed}-{number}"
        shared = [
            f"shared layer {i}".encode() * 100 for i in self.random.sample(range(SHARED_LAYERS), 2)
        ]
        own = f"own layer {tag} {time.time()}".encode() * 50
        config = json.dumps({"tag": tag, "architecture": "amd64", "os": "linux"}).encode()
        blobs = [config, *shared, own]
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
                "layers": [
                    _descriptor("application/vnd.oci.image.layer.v1.tar", b) for b in blobs[1:]
                ],
            }
        ).encode()
        check_first = True
        for _ in range(10):
            for blob in blobs:
                await self.push_blob(repository, blob, check_first)
            async with self.http.put(
                self.url(f"/v2/{repository}/manifests/{tag}"),
                data=manifest,
                headers={"Content-Type": OCI_MANIFEST},
            ) as response:
                body = await response.text()
                if response.status == 201:
                    assert response.headers["Docker-Content-Digest"] == digest_of(manifest)
                    return Pushed(
                        repository, tag, digest_of(manifest), tuple(digest_of(b) for b in blobs)
                    )
                assert response.status == 400 and "MANIFEST_BLOB_UNKNOWN" in body, body
            # A blob it checked was collected meanwhile: upload them all, as a client does.
            self.refused += 1
            check_first = False
        raise AssertionError(f"{tag}: refused ten times")

    async def delete(self, pushed: Pushed) -> None:
        path = f"/v2/{pushed.repository}/manifests/{pushed.manifest}"
        async with self.http.delete(self.url(path)) as response:
            assert response.status == 202, await response.text()

    async def run(self, stop: asyncio.Event) -> list[Pushed]:
        kept: list[Pushed] = []
        number = 0
        while not stop.is_set():
            number += 1
            pushed = await self.push_image(number)
            if self.random.random() < 0.4:
                await self.delete(pushed)
            else:
                kept.append(pushed)
        return kept


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}


async def collect(config: str) -> dict[str, object]:
    """Run `cargobay gc` once; its report."""
    process = await asyncio.create_subprocess_exec(
        str(CARGOBAY),
        "gc",
        "--config",
        config,
        "--grace",
        str(GRACE),
        "--delete-untagged",
        "--json",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    report: dict[str, object] = json.loads(out)
    return report


async def collect_while_pushing(config: str, stop: asyncio.Event) -> int:
    """Run `cargobay gc` back to back, then set `stop`; how many runs completed.

    The pushes go on for `PUSH_SECONDS` and at least `COLLECTIONS` runs (at
    most `PUSH_SECONDS_AT_MOST`), so that a slow machine still races them.
    """
    runs = 0
    started = time.monotonic()
    while (
        time.monotonic() - started < PUSH_SECONDS or runs < COLLECTIONS
    ) and time.monotonic() - started < PUSH_SECONDS_AT_MOST:
        await collect(config)
        runs += 1
    stop.set()
    return runs


async def assert_pulls_completely(
    http: aiohttp.ClientSession, server: ServerProcess, pushed: Pushed
) -> None:
    manifest_url = f"{server.url}/v2/{pushed.repository}/manifests/{pushed.tag}"
    async with http.get(manifest_url, headers={"Accept": OCI_MANIFEST}) as response:
        assert response.status == 200, f"{pushed} via {server.port}: {await response.text()}"
        assert digest_of(await response.read()) == pushed.manifest
    for digest in pushed.blobs:
        url = f"{server.url}/v2/{pushed.repository}/blobs/{digest}"
        async with http.get(url) as response:
            assert response.status == 200, f"{pushed}: blob {digest} via {server.port}"
            assert digest_of(await response.read()) == digest


async def unreferenced_blobs(driver: StorageDriver) -> set[str]:
    """Blobs that no manifest revision is, or names."""
    stored: set[str] = set()
    revisions: set[str] = set()
    async for info in driver.walk(layout.ROOT):
        entry = layout.parse_repository_path(info.path)
        if entry is not None and entry.kind == "revision":
            revisions.add(f"{entry.algorithm}:{entry.hex}")
        parts = info.path.split("/")
        if info.path.startswith(layout.BLOBS) and parts[-1] == "data":
            stored.add(f"{parts[-4]}:{parts[-2]}")
    referenced = set(revisions)
    for digest in revisions:
        document = json.loads(
            await driver.get_content(f"{layout.BLOBS}/sha256/{digest[7:9]}/{digest[7:]}/data")
        )
        referenced.add(document["config"]["digest"])
        referenced.update(layer["digest"] for layer in document["layers"])
    return stored - referenced


@pytest.fixture(params=["filesystem", "seaweedfs"])
def storage(request: pytest.FixtureRequest) -> S3Config | None:
    if request.param == "filesystem":
        return None
    server: S3Server = request.getfixturevalue("seaweedfs_s3")
    return server.config(prefix=f"gc-race-{time.time_ns()}")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


class TestCollectionDuringPushes:
    async def test_every_acknowledged_push_survives_and_no_garbage_is_left(
        self,
        cargobay_factory: ServerFactory,
        storage: S3Config | None,
        http: aiohttp.ClientSession,
    ) -> None:
        first = cargobay_factory(s3=storage)
        second = cargobay_factory(root=first.root, s3=storage)
        servers = [first, second]
        config = first.argv[first.argv.index("--config") + 1]
        pushers = [Pusher(http, servers, seed) for seed in range(PUSHERS)]
        stop = asyncio.Event()
        collector = asyncio.create_task(collect_while_pushing(config, stop))
        try:
            results = await asyncio.gather(*(p.run(stop) for p in pushers))
        finally:
            stop.set()
            runs = await collector
        kept = [pushed for result in results for pushed in result]
        assert runs >= COLLECTIONS, "the collector hardly ran: the test proves nothing"
        assert len(kept) >= 20

        await asyncio.sleep(2)  # the feed interval, for tags pushed through the other process
        for pushed in kept:
            for server in servers:
                await assert_pulls_completely(http, server, pushed)

        await asyncio.sleep(GRACE + 1)
        await collect(config)
        driver: StorageDriver = (
            FilesystemDriver(first.root) if storage is None else S3Driver(storage)
        )
        await driver.open()
        try:
            assert await unreferenced_blobs(driver) == set()
        finally:
            await driver.close()
        for pushed in kept:
            await assert_pulls_completely(http, second, pushed)
