"""A 1 GiB blob goes through a live Cargobay on S3 without the server holding it in memory.

`cargobay serve` stores in SeaweedFS with 5 MiB parts; the test pushes a 1 GiB
blob in four chunked PATCHes whose bodies are generated as they are sent, then
GETs it back as a stream, hashing both ways, so the test process never holds
more than a MiB of it either. The server's peak resident memory (VmHWM) may
grow by at most a quarter of the blob over its resident memory before the push:
buffering a whole chunk, part list or blob anywhere on the way would exceed it.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from tests.e2e.checks import ChunkedUpload
from tests.e2e.ocilayout import sha256_digest
from tests.e2e.processes import ServerFactory, ServerProcess
from tests.s3server import S3Server

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
BLOB_SIZE = 1024 * MIB
PATCHES = 4
#: How far the server's peak RSS may rise above its RSS before the push.
MAX_GROWTH = BLOB_SIZE // 4
REPOSITORY = "memory/big"


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of process `pid`, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def pieces(start: int, end: int) -> AsyncIterator[bytes]:
    """The blob's bytes `start` to `end` (MiB-aligned), a MiB at a time, generated on the fly:
    MiB number n is 1 MiB from a PRNG seeded with n."""

    async def generate() -> AsyncIterator[bytes]:
        for n in range(start // MIB, end // MIB):
            yield random.Random(n).randbytes(MIB)

    return generate()


def blob_digest() -> str:
    digest = hashlib.sha256()
    for n in range(BLOB_SIZE // MIB):
        digest.update(random.Random(n).randbytes(MIB))
    return "sha256:" + digest.hexdigest()


@pytest.fixture
def registry(cargobay_factory: ServerFactory, seaweedfs_s3: S3Server) -> ServerProcess:
    """Cargobay on SeaweedFS with S3's smallest parts, and info-level access logging."""
    config = seaweedfs_s3.config(prefix=f"memory-{uuid.uuid4().hex}", read_timeout=120.0)
    return cargobay_factory(s3=config)


class TestMemory:
    @pytest.mark.timeout(600)
    async def test_1_gib_blob_push_and_pull_keep_server_rss_growth_under_a_quarter_of_it(
        self, registry: ServerProcess
    ) -> None:
        assert registry.process is not None
        pid = registry.process.pid
        digest = blob_digest()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            # A small push first, so that lazily built state (the S3 client, its
            # connection pool) counts in the baseline.
            warm = await ChunkedUpload.start(http, registry, REPOSITORY)
            assert (await warm.patch(b"warm-up")).status == 202
            assert (await warm.finish(sha256_digest(b"warm-up"))).status == 201
            before = memory_kib(pid)

            started = time.monotonic()
            upload = await ChunkedUpload.start(http, registry, REPOSITORY)
            step = BLOB_SIZE // PATCHES
            for start in range(0, BLOB_SIZE, step):
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(step),
                    "Content-Range": f"{start}-{start + step - 1}",
                }
                body = pieces(start, start + step)
                async with http.patch(upload.location, data=body, headers=headers) as response:
                    assert response.status == 202, await response.text()
                    upload.location = upload.base.join(URL(response.headers["Location"]))
            done = await upload.finish(digest)
            assert done.status == 201
            pushed = time.monotonic()

            pulled_digest = hashlib.sha256()
            received = 0
            async with http.get(f"{registry.url}/v2/{REPOSITORY}/blobs/{digest}") as response:
                assert response.status == 200, await response.text()
                async for chunk in response.content.iter_chunked(MIB):
                    pulled_digest.update(chunk)
                    received += len(chunk)
            pulled = time.monotonic()
        after = memory_kib(pid)

        growth = after["VmHWM"] * 1024 - before["VmRSS"] * 1024
        print(
            f"\n1 GiB through S3: push {pushed - started:.1f}s, pull {pulled - pushed:.1f}s; "
            f"server RSS before {before['VmRSS'] / 1024:.0f} MiB, "
            f"peak before {before['VmHWM'] / 1024:.0f} MiB, peak after "
            f"{after['VmHWM'] / 1024:.0f} MiB (growth {growth / MIB:.0f} MiB, "
            f"limit {MAX_GROWTH / MIB:.0f} MiB)"
        )
        assert received == BLOB_SIZE
        assert "sha256:" + pulled_digest.hexdigest() == digest
        assert growth <= MAX_GROWTH, f"server peak RSS grew by {growth / MIB:.0f} MiB"
