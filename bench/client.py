"""The benchmark's own OCI client, for the phases no load tool speaks: push, pull, uploads.

Everything goes through the distribution API over HTTP, the way docker and
containerd use it:

- push: HEAD the blob, then either a monolithic upload (POST, PUT with the
  body) or a chunked one (POST, PATCH per chunk with `Content-Range`, PUT),
  then PUT the manifest by tag;
- small-blob push: the same for many small blobs, then all the manifests,
  so that each part's cost (server CPU, S3 requests) is measured apart;
- blob pull: GET each layer, following a redirect to storage if one comes,
  hashing the bytes as they arrive and checking the digest;
- pull simulation: per image, GET the manifest by tag, then the config and
  every layer in parallel, all digests checked;
- memory: many chunked uploads of generated content, streamed (never held);
- raw S3 PUT/GET with aiobotocore, the ceiling of what storage can take.

Content is generated, not read from disk: blob `key` of `size` bytes is a
1 MiB random block repeated, each MiB stamped with (key, index) so every
blob has its own digest while costing only a memory copy to produce.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from bench.workers import Ready, WorkerResult

PIECE = 1024 * 1024
_BLOCK = random.Random(20240601).randbytes(PIECE)
_STAMP = struct.Struct(">QQ")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
ACCEPT = ", ".join([
    OCI_MANIFEST,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


def pieces(key: int, size: int) -> Iterator[bytes]:
    """The content of blob `key`, `size` bytes, in pieces of at most `PIECE` bytes."""
    index = 0
    while size > 0:
        n = min(size, PIECE)
        yield (_STAMP.pack(key, index) + _BLOCK[_STAMP.size :])[:n]
        size -= n
        index += 1


def blob_bytes(key: int, size: int) -> bytes:
    return b"".join(pieces(key, size))


def blob_digest(key: int, size: int) -> str:
    h = hashlib.sha256()
    for piece in pieces(key, size):
        h.update(piece)
    return "sha256:" + h.hexdigest()


def key_of(*parts: object) -> int:
    """A 63-bit blob key from any identifying values."""
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


# -- images ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


@dataclass(frozen=True)
class ImageRef:
    """What a pull needs to know of a pushed image."""

    repo: str
    tag: str
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]


@dataclass
class BuiltImage:
    ref: ImageRef
    config: bytes
    manifest: bytes
    layers: list[bytes]


def build_image(repo: str, tag: str, key: int, layers: int, layer_size: int) -> BuiltImage:
    """An OCI image of `layers` generated layers of `layer_size` bytes each."""
    datas = [blob_bytes(key_of(key, i), layer_size) for i in range(layers)]
    blobs = [Blob("sha256:" + hashlib.sha256(d).hexdigest(), len(d)) for d in datas]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Env": [f"BENCH={key}"]},
        "rootfs": {"type": "layers", "diff_ids": [b.digest for b in blobs]},
    }).encode()
    config_blob = Blob("sha256:" + hashlib.sha256(config).hexdigest(), len(config))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_blob.digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": b.digest, "size": b.size} for b in blobs],
    }, indent=2).encode()
    ref = ImageRef(repo, tag, Blob("sha256:" + hashlib.sha256(manifest).hexdigest(),
                                   len(manifest)), config_blob, tuple(blobs))
    return BuiltImage(ref, config, manifest, datas)


def _session(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, force_close=False),
        timeout=aiohttp.ClientTimeout(total=None, sock_read=300),
        auto_decompress=False,
    )


def _absolute(base: str, location: str) -> str:
    return location if location.startswith("http") else base + location


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest.replace(':', '%3A')}"


class Unexpected(Exception):
    """A response other than the protocol's; the message says which."""


async def _expect(response: aiohttp.ClientResponse, *statuses: int) -> None:
    if response.status not in statuses:
        text = (await response.read())[:200].decode(errors="replace")
        raise Unexpected(f"{response.method} {response.url.path} -> {response.status}: {text}")


# -- push -----------------------------------------------------------------------------


@dataclass
class PushJob:
    base: str
    images: list[tuple[str, str, int]]  # (repo, tag, key)
    layers: int
    layer_size: int
    chunked: bool
    chunk_size: int
    concurrency: int


async def _upload(
    session: aiohttp.ClientSession, base: str, repo: str, digest: str, data: bytes,
    chunk_size: int | None, result: WorkerResult,
) -> None:
    """HEAD, then POST + PUT (monolithic) or POST + PATCH... + PUT (chunked)."""
    async with session.head(f"{base}/v2/{repo}/blobs/{digest}") as r:
        await _expect(r, 404, 200)
        result.requests += 1
        if r.status == 200:
            return
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as r:
        await _expect(r, 202)
        location = _absolute(base, r.headers["Location"])
    result.requests += 1
    octets = {"Content-Type": "application/octet-stream"}
    if chunk_size is None:
        headers = dict(octets, **{"Content-Length": str(len(data))})
        async with session.put(_with_digest(location, digest), data=data, headers=headers) as r:
            await _expect(r, 201)
        result.requests += 1
        return
    view = memoryview(data)
    for start in range(0, len(data), chunk_size):
        chunk = view[start : start + chunk_size]
        headers = dict(octets, **{
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
            "Content-Length": str(len(chunk)),
        })
        async with session.patch(location, data=bytes(chunk), headers=headers) as r:
            await _expect(r, 202)
            location = _absolute(base, r.headers["Location"])
        result.requests += 1
    async with session.put(_with_digest(location, digest), headers={"Content-Length": "0"}) as r:
        await _expect(r, 201)
    result.requests += 1


async def _timed_upload(
    session: aiohttp.ClientSession, base: str, repo: str, digest: str, data: bytes,
    chunk_size: int | None, result: WorkerResult,
) -> bool:
    """`_upload`, its latency and bytes recorded; a failure is recorded as an error (False)."""
    t0 = time.monotonic()
    try:
        await _upload(session, base, repo, digest, data, chunk_size, result)
    except (Unexpected, aiohttp.ClientError, TimeoutError) as e:
        result.error(f"upload {repo}@{digest[:19]}: {e!r}")
        return False
    result.latencies.append(time.monotonic() - t0)
    result.bytes += len(data)
    return True


async def push(job: PushJob, ready: Ready) -> WorkerResult:
    """Push every image of the job; one latency per blob upload (HEAD to final PUT)."""
    built = [build_image(repo, tag, key, job.layers, job.layer_size)
             for repo, tag, key in job.images]
    result = WorkerResult()
    result.extra["images"] = [b.ref for b in built]
    limit = asyncio.Semaphore(job.concurrency)
    chunk = job.chunk_size if job.chunked else None

    async with _session(job.concurrency * 2) as session:

        async def blob(repo: str, digest: str, data: bytes) -> None:
            async with limit:
                await _timed_upload(session, job.base, repo, digest, data, chunk, result)

        async def image(b: BuiltImage) -> None:
            ref = b.ref
            await asyncio.gather(
                blob(ref.repo, ref.config.digest, b.config),
                *(blob(ref.repo, layer.digest, data) for layer, data in zip(ref.layers, b.layers,
                                                                              strict=True)),
            )
            url = f"{job.base}/v2/{ref.repo}/manifests/{ref.tag}"
            try:
                async with session.put(url, data=b.manifest,
                                       headers={"Content-Type": OCI_MANIFEST}) as r:
                    await _expect(r, 201)
                result.requests += 1
                result.items += 1
            except (Unexpected, aiohttp.ClientError) as e:
                result.error(f"manifest {ref.repo}:{ref.tag}: {e!r}")

        ready()
        await asyncio.gather(*(image(b) for b in built))
    result.finished = time.monotonic()
    return result


# -- small-blob push: blobs first, then manifests, each counted apart ---------------


@dataclass
class SmallBlobJob:
    base: str
    images: list[tuple[str, str, int]]  # (repo, tag, key)
    layers: int
    layer_size: int
    chunked: bool  # one PATCH with the whole blob, then an empty PUT
    images_in_flight: int


async def push_blobs(job: SmallBlobJob, ready: Ready) -> WorkerResult:
    """Push the config and layers of every image, its blobs at once, `images_in_flight`
    images at a time; one latency and one item per blob (HEAD to the final 201)."""
    built = [build_image(repo, tag, key, job.layers, job.layer_size)
             for repo, tag, key in job.images]
    result = WorkerResult()
    limit = asyncio.Semaphore(job.images_in_flight)
    chunk = job.layer_size if job.chunked else None

    async with _session(job.images_in_flight * (job.layers + 1) * 2) as session:

        async def blob(repo: str, digest: str, data: bytes) -> None:
            if await _timed_upload(session, job.base, repo, digest, data, chunk, result):
                result.items += 1

        async def image(b: BuiltImage) -> None:
            ref = b.ref
            async with limit:
                await asyncio.gather(
                    blob(ref.repo, ref.config.digest, b.config),
                    *(blob(ref.repo, layer.digest, data)
                      for layer, data in zip(ref.layers, b.layers, strict=True)),
                )

        ready()
        await asyncio.gather(*(image(b) for b in built))
    result.finished = time.monotonic()
    return result


async def push_manifests(job: SmallBlobJob, ready: Ready) -> WorkerResult:
    """PUT the manifest of every image of the job by tag (its blobs pushed before);
    one latency and one item per manifest."""
    built = [build_image(repo, tag, key, job.layers, job.layer_size)
             for repo, tag, key in job.images]
    result = WorkerResult()
    limit = asyncio.Semaphore(job.images_in_flight)
    async with _session(job.images_in_flight * 2) as session:

        async def manifest(b: BuiltImage) -> None:
            url = f"{job.base}/v2/{b.ref.repo}/manifests/{b.ref.tag}"
            async with limit:
                t0 = time.monotonic()
                try:
                    async with session.put(url, data=b.manifest,
                                           headers={"Content-Type": OCI_MANIFEST}) as r:
                        await _expect(r, 201)
                except (Unexpected, aiohttp.ClientError, TimeoutError) as e:
                    result.error(f"manifest {b.ref.repo}:{b.ref.tag}: {e!r}")
                    return
                result.latencies.append(time.monotonic() - t0)
                result.requests += 1
                result.items += 1
                result.bytes += len(b.manifest)

        ready()
        await asyncio.gather(*(manifest(b) for b in built))
    result.finished = time.monotonic()
    return result


# -- pulls ----------------------------------------------------------------------------


async def _get_blob(
    session: aiohttp.ClientSession, base: str, repo: str, blob: Blob, result: WorkerResult,
    verify: bool = True,
) -> None:
    """GET a blob, following one redirect, and check its size and (with `verify`) its digest;
    raises `Unexpected`."""
    url = f"{base}/v2/{repo}/blobs/{blob.digest}"
    response = await session.get(url, allow_redirects=False)
    result.requests += 1
    try:
        if response.status in (301, 302, 303, 307, 308):
            location = response.headers["Location"]
            response.release()
            result.extra["redirects"] = result.extra.get("redirects", 0) + 1
            response = await session.get(URL(location, encoded=True), allow_redirects=False)
        await _expect(response, 200)
        h = hashlib.sha256()
        size = 0
        # Whatever the socket delivered, as it came: joining it into fixed pieces would
        # cost the load generator a copy of every byte, on the cores the servers use.
        async for data in response.content.iter_any():
            if verify:
                h.update(data)
            size += len(data)
    finally:
        response.release()
    if (verify and "sha256:" + h.hexdigest() != blob.digest) or size != blob.size:
        raise Unexpected(f"GET {repo}@{blob.digest[:19]}: wrong content ({size} bytes)")
    result.bytes += size


class _Cycle:
    """The job's items round and round, each at least once, until `seconds` have passed."""

    def __init__(self, items: list[Any], seconds: float) -> None:
        self.items = items
        self.seconds = seconds
        self.next = 0
        self.deadline = 0.0

    def start(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def take(self) -> Any | None:
        if self.next >= len(self.items) and time.monotonic() >= self.deadline:
            return None
        item = self.items[self.next % len(self.items)]
        self.next += 1
        return item

    async def run(self, concurrency: int, ready: Ready, result: WorkerResult,
                  handle: Callable[[Any], Awaitable[None]]) -> None:
        """`concurrency` workers `handle` the items, each timed as one; a failure is an error."""

        async def worker() -> None:
            while (item := self.take()) is not None:
                t0 = time.monotonic()
                try:
                    await handle(item)
                except (Unexpected, aiohttp.ClientError, TimeoutError) as e:
                    result.error(repr(e))
                    continue
                result.latencies.append(time.monotonic() - t0)
                result.items += 1

        ready()
        self.start()
        await asyncio.gather(*(worker() for _ in range(concurrency)))


@dataclass
class BlobPullJob:
    base: str
    blobs: list[tuple[str, Blob]]  # (repo, blob)
    concurrency: int
    seconds: float


async def pull_blobs(job: BlobPullJob, ready: Ready) -> WorkerResult:
    """GET the blobs round and round for `seconds`, `concurrency` at a time; latency per blob."""
    result = WorkerResult()
    cycle = _Cycle(job.blobs, job.seconds)
    async with _session(job.concurrency * 2) as session:

        async def pull(item: tuple[str, Blob]) -> None:
            repo, blob = item
            await _get_blob(session, job.base, repo, blob, result)

        await cycle.run(job.concurrency, ready, result, pull)
    result.finished = time.monotonic()
    return result


@dataclass
class PullSimJob:
    base: str
    images: list[ImageRef]
    concurrency: int  # images in flight
    seconds: float
    verify: bool = True  # hash every blob; False: sizes only, the client's CPU kept for reading


async def pull_images(job: PullSimJob, ready: Ready) -> WorkerResult:
    """Per image: manifest by tag, then config and all layers in parallel; latency per image.

    Images are pulled round and round for `seconds`.
    """
    result = WorkerResult()
    cycle = _Cycle(job.images, job.seconds)
    async with _session(job.concurrency * 8) as session:

        async def pull(image: ImageRef) -> None:
            url = f"{job.base}/v2/{image.repo}/manifests/{image.tag}"
            async with session.get(url, headers={"Accept": ACCEPT}) as r:
                await _expect(r, 200)
                body = await r.read()
            result.requests += 1
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if digest != image.manifest.digest or r.headers.get("Docker-Content-Digest") != digest:
                raise Unexpected(f"manifest {image.repo}:{image.tag}: wrong digest")
            manifest = json.loads(body)
            wanted = [manifest["config"], *manifest["layers"]]
            await asyncio.gather(*(
                _get_blob(session, job.base, image.repo, Blob(d["digest"], d["size"]), result,
                          job.verify)
                for d in wanted
            ))

        await cycle.run(job.concurrency, ready, result, pull)
    result.finished = time.monotonic()
    return result


# -- memory: many large chunked uploads, streamed -------------------------------------


@dataclass
class StreamUploadJob:
    base: str
    repo: str
    uploads: list[tuple[int, str]]  # (key, digest) of blobs of `size` bytes
    size: int
    chunk_size: int


async def _stream(key: int, first_piece: int, size: int) -> AsyncIterator[bytes]:
    index = first_piece
    for piece in pieces(key, size):
        # pieces() numbers from 0: restamp with the index within the whole blob
        yield _STAMP.pack(key, index) + piece[_STAMP.size :]
        index += 1


async def stream_uploads(job: StreamUploadJob, ready: Ready) -> WorkerResult:
    """All uploads at once, each a POST, PATCHes of `chunk_size` streamed, and a PUT."""
    result = WorkerResult()
    if job.chunk_size % PIECE:
        raise ValueError("chunk size must be a multiple of 1 MiB")
    async with _session(len(job.uploads) * 2) as session:

        async def upload(key: int, digest: str) -> None:
            t0 = time.monotonic()
            try:
                async with session.post(f"{job.base}/v2/{job.repo}/blobs/uploads/") as r:
                    await _expect(r, 202)
                    location = _absolute(job.base, r.headers["Location"])
                result.requests += 1
                for start in range(0, job.size, job.chunk_size):
                    n = min(job.chunk_size, job.size - start)
                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{start}-{start + n - 1}",
                        "Content-Length": str(n),
                    }
                    body = _stream(key, start // PIECE, n)
                    async with session.patch(location, data=body, headers=headers) as r:
                        await _expect(r, 202)
                        location = _absolute(job.base, r.headers["Location"])
                    result.requests += 1
                    result.bytes += n
                async with session.put(_with_digest(location, digest),
                                       headers={"Content-Length": "0"}) as r:
                    await _expect(r, 201)
                result.requests += 1
            except (Unexpected, aiohttp.ClientError, TimeoutError) as e:
                result.error(f"upload {key}: {e!r}")
                return
            result.latencies.append(time.monotonic() - t0)
            result.items += 1

        ready()
        await asyncio.gather(*(upload(key, digest) for key, digest in job.uploads))
    result.finished = time.monotonic()
    return result


def stream_digest(args: tuple[int, int]) -> str:
    """The digest of the blob `stream_uploads` sends for (key, size)."""
    key, size = args
    h = hashlib.sha256()
    for index, piece in enumerate(pieces(key, size)):
        h.update(_STAMP.pack(key, index) + piece[_STAMP.size :])
    return "sha256:" + h.hexdigest()


# -- the storage ceiling: aiobotocore straight to the bucket ---------------------------


@dataclass
class RawS3Job:
    endpoint: str
    bucket: str
    images: list[tuple[str, str, int]]
    layers: int
    layer_size: int
    concurrency: int
    #: "put" every layer; after a PUT run, "copy" each to a key of its own
    #: (CopyObject, as a chunked push's last request does), or "get" them back.
    operation: str
    seconds: float = 0.0  # GETs go round and round this long
    prefix: str = "raw"


async def raw_s3(job: RawS3Job, ready: Ready) -> WorkerResult:
    """PUT, copy, or GET and check, each layer of the job's images as one object."""
    from bench.s3util import s3_client

    result = WorkerResult()
    items: list[tuple[str, bytes | Blob]] = []
    for repo, _tag, key in job.images:
        for i in range(job.layers):
            data = blob_bytes(key_of(key, i), job.layer_size)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            name = f"{job.prefix}/{repo}/{digest[7:]}"
            items.append((name, data if job.operation == "put" else Blob(digest, len(data))))
    cycle = _Cycle(items, job.seconds)
    async with s3_client(job.endpoint, job.concurrency * 2) as s3:

        async def worker() -> None:
            while (item := cycle.take()) is not None:
                name, what = item
                t0 = time.monotonic()
                try:
                    if isinstance(what, bytes):
                        await s3.put_object(Bucket=job.bucket, Key=name, Body=what)
                        result.bytes += len(what)
                    elif job.operation == "copy":
                        await s3.copy_object(Bucket=job.bucket, Key=f"{name}.copy",
                                             CopySource={"Bucket": job.bucket, "Key": name})
                        result.bytes += what.size
                    else:
                        response = await s3.get_object(Bucket=job.bucket, Key=name)
                        h = hashlib.sha256()
                        async with response["Body"] as stream:
                            while data := await stream.read(PIECE):
                                h.update(data)
                                result.bytes += len(data)
                        if "sha256:" + h.hexdigest() != what.digest:
                            raise Unexpected(f"GET {name}: wrong content")
                except Exception as e:
                    result.error(repr(e))
                    continue
                result.requests += 1
                result.items += 1
                result.latencies.append(time.monotonic() - t0)

        ready()
        cycle.start()
        await asyncio.gather(*(worker() for _ in range(job.concurrency)))
    result.finished = time.monotonic()
    return result
