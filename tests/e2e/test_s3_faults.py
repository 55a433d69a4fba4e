"""A live Cargobay on S3 when S3 fails: clean errors, retries that work, no wrong blob.

Cargobay's `endpoint_url` points at `FaultProxy`, a small HTTP proxy in front of
SeaweedFS that can answer 5xx to chosen S3 operations, drop connections (before
or after the request reached S3) or stop listening altogether. The tests push
blobs with chunked uploads through it and check what the issue asks for:

- transient faults are absorbed by botocore's retries: the push completes and
  the blob is correct;
- a fault that outlasts the retries reaches the client as a prompt 503
  UNAVAILABLE error body, never a hang, and once S3 is back the upload resumes
  from the `Range` the registry reports, or a fresh push succeeds;
- at no point is anything but the pushed bytes visible under the digest: not
  through the API, and not as the content object in the bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bench.s3count import pass_on, s3_operation
from registry.config import S3Config
from tests.e2e.checks import ChunkedUpload
from tests.e2e.ocilayout import sha256_digest
from tests.e2e.processes import ServerFactory, ServerProcess, free_port
from tests.s3server import S3Server

pytestmark = pytest.mark.e2e

REPOSITORY = "faults/blob"
MIB = 1024 * 1024
PART = 5 * MIB
#: Three parts' worth and a bit, pushed in 3 MiB chunks, so PATCHes cross part boundaries.
BLOB = random.Random(503).randbytes(2 * PART + 12345)
DIGEST = sha256_digest(BLOB)
CHUNK = 3 * MIB
#: The longest any request of these tests may take: retries are few and timeouts short.
PROMPT = 20.0


@dataclass
class _Rule:
    operation: str
    action: str  # "status", "drop" (before forwarding), "lose" (forward, then drop), "hold"
    status: int
    times: int | None  # None: until cleared


class FaultProxy:
    """An HTTP proxy to `upstream` on 127.0.0.1, in a thread with its own event loop.

    Requests are passed on unchanged (the Host header too, so S3 signatures stay
    valid) unless a rule matches their S3 operation: `fail` answers a status
    with an S3 error body, `drop` closes the connection without forwarding,
    `lose` forwards and then closes the connection instead of answering (S3 did
    the work, the client never hears of it), `hold` keeps the request unanswered
    and unforwarded until `clear()`, then drops it. `down` stops listening and closes
    every connection, as a stopped server; `up` listens again on the same port.
    Methods are called from the test's thread; `seen` counts the operations
    received and `injected` the faults applied.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._rules: list[_Rule] = []
        self._released: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._down = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._http: aiohttp.ClientSession | None = None

    # -- control, from the test's thread ---------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def fail(self, operation: str, status: int = 503, times: int | None = None) -> None:
        """Answer `status` to the next `times` requests of `operation` (all, if None)."""
        self._add(_Rule(operation, "status", status, times))

    def drop(self, operation: str, times: int | None = None) -> None:
        """Close the connection of the next `times` `operation` requests, unanswered."""
        self._add(_Rule(operation, "drop", 0, times))

    def lose(self, operation: str, times: int | None = None) -> None:
        """Forward the next `times` `operation` requests, then drop their answers."""
        self._add(_Rule(operation, "lose", 0, times))

    def hold(self, operation: str, times: int | None = None) -> None:
        """Leave the next `times` `operation` requests unanswered until `clear()`."""
        self._add(_Rule(operation, "hold", 0, times))

    def clear(self) -> None:
        """Remove every rule: from now on requests pass, and held ones are dropped."""
        with self._lock:
            self._rules.clear()
        if self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    def down(self) -> None:
        """Refuse connections and close the open ones, as a stopped S3 server."""
        self._call(self._stop_listening())

    def up(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    # -- the proxy, in its own thread ------------------------------------------

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=15)

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _take(self, operation: str) -> _Rule | None:
        with self._lock:
            self.seen[operation] += 1
            for rule in self._rules:
                if rule.operation == operation:
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times == 0:
                            self._rules.remove(rule)
                    self.injected[operation] += 1
                    return rule
        return None

    async def _start(self) -> None:
        self._released = asyncio.Event()
        self._http = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)
        )
        app = web.Application(client_max_size=64 * MIB)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self._down = False

    async def _stop_listening(self) -> None:
        self._down = True
        if self._site is not None:
            await self._site.stop()
            self._site = None
        assert self._runner is not None and self._runner.server is not None
        for connection in list(self._runner.server.connections):
            connection.force_close()

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        operation = s3_operation(request.method, request.path, request.query, request.headers)
        rule = None if self._down else self._take(operation)
        if self._down or (rule is not None and rule.action == "drop"):
            return self._hang_up(request)
        if rule is not None and rule.action == "hold":
            assert self._released is not None
            await self._released.wait()
            return self._hang_up(request)
        if rule is not None and rule.action == "status":
            await request.read()
            error = f"<Error><Code>Injected{rule.status}</Code><Message>fault proxy</Message>"
            return web.Response(
                status=rule.status,
                body=f'<?xml version="1.0" encoding="UTF-8"?>\n{error}</Error>'.encode(),
                content_type="application/xml",
            )
        assert self._http is not None
        response = await pass_on(self._http, self.upstream, request)
        if rule is not None and rule.action == "lose":
            return self._hang_up(request)
        return response

    @staticmethod
    def _hang_up(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=599)  # written to nobody


@pytest.fixture
def proxy(seaweedfs_s3: S3Server) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's SeaweedFS, passing everything through."""
    fault_proxy = FaultProxy(seaweedfs_s3.endpoint_url).start()
    try:
        yield fault_proxy
    finally:
        fault_proxy.close()


@pytest.fixture
def bucket(seaweedfs_s3: S3Server, proxy: FaultProxy) -> S3Config:
    """A fresh prefix of SeaweedFS's bucket reached through the proxy, with 5 MiB parts,
    three attempts per S3 request and short timeouts, so failures are quick."""
    return seaweedfs_s3.config(
        prefix=f"faults-{uuid.uuid4().hex}",
        endpoint_url=proxy.endpoint_url,
        part_size=PART,
        max_attempts=3,
        connect_timeout=2.0,
        read_timeout=10.0,
    )


@pytest.fixture
def registry(cargobay_factory: ServerFactory, bucket: S3Config) -> ServerProcess:
    """Cargobay storing in `bucket`, through the proxy."""
    return cargobay_factory(s3=bucket)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


# -- helpers -------------------------------------------------------------------


@dataclass
class Answer:
    """A response read to its end, and how long it took."""

    status: int
    body: bytes
    elapsed: float


async def send(
    http: aiohttp.ClientSession, method: str, url: Any, body: Any = b"", **headers: str
) -> Answer:
    """One request to the registry, its answer read whole inside the timing."""
    started = time.monotonic()
    headers.setdefault("Content-Type", "application/octet-stream")
    async with http.request(method, url, data=body, headers=headers) as response:
        content = await response.read()
    return Answer(response.status, content, time.monotonic() - started)


async def send_chunk(http: aiohttp.ClientSession, upload: ChunkedUpload, end: int) -> Answer:
    """PATCH `BLOB[upload.offset:end]` with its `Content-Range`, not moving `upload` on."""
    chunk = BLOB[upload.offset : end]
    content_range = f"{upload.offset}-{end - 1}"
    return await send(http, "PATCH", upload.location, chunk, **{"Content-Range": content_range})


async def send_finish(http: aiohttp.ClientSession, upload: ChunkedUpload) -> Answer:
    """PUT `?digest=` without a last chunk."""
    return await send(http, "PUT", upload.location.update_query(digest=DIGEST))


def assert_unavailable(answer: Answer) -> None:
    """The registry answered promptly with the spec's error body for a storage outage."""
    assert answer.status == 503, (answer.status, answer.body[:300])
    assert json.loads(answer.body)["errors"][0]["code"] == "UNAVAILABLE"
    assert answer.elapsed < PROMPT, f"the error took {answer.elapsed:.1f}s"


async def blob_status(http: aiohttp.ClientSession, server: ServerProcess) -> int:
    """The status of GET on the blob's digest; a 200 must carry exactly `BLOB`."""
    async with http.get(f"{server.url}/v2/{REPOSITORY}/blobs/{DIGEST}") as response:
        body = await response.read()
        if response.status == 200:
            assert sha256_digest(body) == DIGEST, "wrong bytes served under the digest"
        return response.status


def assert_no_wrong_content(s3: S3Server, config: S3Config) -> None:
    """The content object of `DIGEST` in the bucket is absent, or exactly `BLOB`."""
    hexdigest = DIGEST.removeprefix("sha256:")
    key = f"{config.prefix}/docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
    found = s3.client.list_objects_v2(Bucket=config.bucket, Prefix=key)
    if any(item["Key"] == key for item in found.get("Contents", ())):
        body = s3.client.get_object(Bucket=config.bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == hexdigest, "a wrong blob lies under the digest"


async def push(
    http: aiohttp.ClientSession, server: ServerProcess, upload: ChunkedUpload | None = None
) -> None:
    """Push `BLOB` in `CHUNK`s (from where `upload` stands), then PUT; every answer must be OK."""
    upload = upload or await ChunkedUpload.start(http, server, REPOSITORY)
    for start in range(upload.offset, len(BLOB), CHUNK):
        response = await upload.patch(BLOB[start : start + CHUNK])
        assert response.status == 202, (response.status, await response.read())
    done = await upload.finish(DIGEST)
    assert done.status == 201, (done.status, await done.read())


async def resume(upload: ChunkedUpload) -> None:
    """Set the upload's offset to where the registry says the session stands."""
    progress = await upload.status()
    assert progress.status == 204, (progress.status, await progress.read())
    last = int(progress.headers["Range"].partition("-")[2])
    upload.offset = last + 1 if last else 0
    assert upload.offset <= len(BLOB)


async def resume_and_finish(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    upload: ChunkedUpload,
    s3: S3Server,
    config: S3Config,
    offsets: tuple[int, ...],
) -> None:
    """Resume `upload` where the registry says it stands (one of `offsets`) and push the rest;
    then the blob must be served whole, and the bucket hold nothing wrong under its digest."""
    await resume(upload)
    assert upload.offset in offsets
    await push(http, server, upload)
    assert await blob_status(http, server) == 200
    assert_no_wrong_content(s3, config)


# -- the tests -----------------------------------------------------------------


class TestTransientFaults:
    async def test_chunked_push_through_503s_and_dropped_connections_completes(
        self,
        registry: ServerProcess,
        proxy: FaultProxy,
        http: aiohttp.ClientSession,
        seaweedfs_s3: S3Server,
        bucket: S3Config,
    ) -> None:
        """Each operation of the push fails twice at most: botocore's third attempt passes."""
        proxy.fail("CreateMultipartUpload", 503, times=1)
        proxy.fail("UploadPart", 503, times=2)
        proxy.drop("PutObject", times=1)
        proxy.fail("GetObject", 500, times=1)
        proxy.fail("CompleteMultipartUpload", 503, times=2)
        proxy.drop("CopyObject", times=1)

        await push(http, registry)

        assert sum(proxy.injected.values()) == 8, proxy.injected
        assert await blob_status(http, registry) == 200
        assert_no_wrong_content(seaweedfs_s3, bucket)


class TestPersistentFaults:
    async def test_patch_failing_on_5xx_answers_503_and_resumes_once_s3_recovers(
        self,
        registry: ServerProcess,
        proxy: FaultProxy,
        http: aiohttp.ClientSession,
        seaweedfs_s3: S3Server,
        bucket: S3Config,
    ) -> None:
        upload = await ChunkedUpload.start(http, registry, REPOSITORY)
        assert (await upload.patch(BLOB[:CHUNK])).status == 202
        proxy.fail("UploadPart", 500)

        # 6 MiB in all: this PATCH fills the first part, whose upload fails.
        assert_unavailable(await send_chunk(http, upload, 2 * CHUNK))

        assert proxy.injected["UploadPart"] >= 3  # every attempt of the part failed
        assert await blob_status(http, registry) == 404
        proxy.clear()
        await resume_and_finish(http, registry, upload, seaweedfs_s3, bucket, (CHUNK, 2 * CHUNK))

    async def test_s3_stopped_mid_patch_answers_503_and_the_push_resumes_when_it_is_back(
        self,
        registry: ServerProcess,
        proxy: FaultProxy,
        http: aiohttp.ClientSession,
        seaweedfs_s3: S3Server,
        bucket: S3Config,
    ) -> None:
        """S3 goes away while the registry is receiving a chunk: its first MiB arrived,
        the rest comes while nothing listens on S3's port."""
        upload = await ChunkedUpload.start(http, registry, REPOSITORY)
        assert (await upload.patch(BLOB[:CHUNK])).status == 202
        chunk = BLOB[CHUNK : 2 * CHUNK]

        async def body() -> AsyncIterator[bytes]:
            yield chunk[:MIB]
            await asyncio.sleep(0.2)  # the registry holds the first MiB
            await asyncio.to_thread(proxy.down)
            yield chunk[MIB:]

        headers = {"Content-Length": str(len(chunk)), "Content-Range": f"{CHUNK}-{2 * CHUNK - 1}"}
        assert_unavailable(await send(http, "PATCH", upload.location, body(), **headers))

        # Nothing is visible under the digest: while S3 is away a miss cannot be
        # checked against it (another process may have stored the blob), so the
        # answer is 503; once it is back, 404.
        assert await blob_status(http, registry) == 503
        proxy.up()
        assert await blob_status(http, registry) == 404
        await resume_and_finish(http, registry, upload, seaweedfs_s3, bucket, (CHUNK, 2 * CHUNK))

    async def test_s3_stopped_before_a_patch_answers_503_and_the_push_resumes(
        self,
        registry: ServerProcess,
        proxy: FaultProxy,
        http: aiohttp.ClientSession,
        seaweedfs_s3: S3Server,
        bucket: S3Config,
    ) -> None:
        upload = await ChunkedUpload.start(http, registry, REPOSITORY)
        assert (await upload.patch(BLOB[:CHUNK])).status == 202
        proxy.down()

        assert_unavailable(await send_chunk(http, upload, 2 * CHUNK))

        proxy.up()
        await resume_and_finish(http, registry, upload, seaweedfs_s3, bucket, (CHUNK,))


@pytest.mark.parametrize(
    ("operation", "fault", "session_survives"),
    [
        # The upload's parts cannot be assembled: PUT again once S3 is back.
        ("CompleteMultipartUpload", "fail", True),
        # Assembled, but every answer is lost: PUT again finds the upload completed.
        ("CompleteMultipartUpload", "lose", True),
        # Assembled, but it cannot be copied under its digest: PUT again copies it.
        ("CopyObject", "fail", True),
        # Copied, but every answer is lost: not linked, so still unknown in the
        # repository until a PUT again copies it once more.
        ("CopyObject", "lose", True),
        # Moved, but its repository link cannot be written.
        ("PutObject", "fail", False),
    ],
)
class TestFaultsDuringTheFinalPut:
    async def test_blob_is_visible_only_once_a_put_succeeds(
        self,
        operation: str,
        fault: str,
        session_survives: bool,
        registry: ServerProcess,
        proxy: FaultProxy,
        http: aiohttp.ClientSession,
        seaweedfs_s3: S3Server,
        bucket: S3Config,
    ) -> None:
        """The fault lasts for every attempt of the operation, so the PUT answers 503 and
        the digest stays unknown. Once S3 recovers, the same PUT succeeds while the upload
        session survives; where it does not, the PUT answers 404 BLOB_UPLOAD_UNKNOWN, and
        a fresh push succeeds."""
        upload = await ChunkedUpload.start(http, registry, REPOSITORY)
        for start in range(0, len(BLOB), CHUNK):
            assert (await upload.patch(BLOB[start : start + CHUNK])).status == 202
        if fault == "fail":
            proxy.fail(operation, 500)
        else:
            proxy.lose(operation)

        assert_unavailable(await send_finish(http, upload))

        assert proxy.injected[operation] >= 1
        assert await blob_status(http, registry) == 404
        assert_no_wrong_content(seaweedfs_s3, bucket)
        proxy.clear()
        again = await send_finish(http, upload)
        if session_survives:
            assert again.status == 201, (again.status, again.body[:300])
        else:
            assert again.status == 404, (again.status, again.body[:300])
            assert json.loads(again.body)["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
            assert await blob_status(http, registry) == 404
            await push(http, registry)
        assert await blob_status(http, registry) == 200
        assert_no_wrong_content(seaweedfs_s3, bucket)


class TestKillDuringTheFinalPut:
    """kill -9 while a final PUT that carries the last chunk is being stored, after S3
    assembled the multipart upload but before the content was copied under its digest:
    the bucket then holds the assembled object and the session's state from before the
    PUT's body. The issue's reproduction: POST, two PATCHes of 6 MB, PUT with 4 MB."""

    BLOB = random.Random(16).randbytes(16_000_000)
    DIGEST = sha256_digest(BLOB)
    LAST = 12_000_000

    async def crash_during_final_put(
        self,
        server: ServerProcess,
        proxy: FaultProxy,
        http: aiohttp.ClientSession,
        operation: str = "CopyObject",
    ) -> ChunkedUpload:
        """Push all but the final PUT, send it with the last 4 MB, kill -9 the registry
        while it waits on S3's `operation` (by default the copy under the digest, after
        the upload was assembled), and start it again."""
        upload = await ChunkedUpload.start(http, server, REPOSITORY)
        for start in (0, 6_000_000):
            assert (await upload.patch(self.BLOB[start : start + 6_000_000])).status == 202
        proxy.hold(operation)
        put = asyncio.create_task(upload.finish(self.DIGEST, self.BLOB[self.LAST :]))
        deadline = time.monotonic() + PROMPT
        while not proxy.injected[operation]:
            assert time.monotonic() < deadline, f"the final PUT never reached {operation}"
            assert not put.done(), put
            await asyncio.sleep(0.05)
        server.kill()
        with contextlib.suppress(aiohttp.ClientError):
            await put
        proxy.clear()
        server.start()
        return upload

    def session_keys(self, s3: S3Server, config: S3Config, upload: ChunkedUpload) -> list[str]:
        upload_id = upload.location.path.rsplit("/", 1)[1]
        prefix = (
            f"{config.prefix}/docker/registry/v2/repositories/{REPOSITORY}/_uploads/{upload_id}"
        )
        return [
            item["Key"]
            for item in s3.client.list_objects_v2(Bucket=config.bucket, Prefix=prefix).get(
                "Contents", ()
            )
        ]

    @pytest.mark.parametrize(
        ("operation", "body"),
        [
            # Assembled, not yet copied: the case, the state predates the body.
            ("CopyObject", True),
            ("CopyObject", False),
            # Not yet assembled: the upload goes on from the saved state.
            ("CompleteMultipartUpload", True),
        ],
        ids=["assembled-same-put", "assembled-put-without-body", "unassembled-same-put"],
    )
    async def test_final_put_sent_again_after_the_crash_succeeds(
        self,
        operation: str,
        body: bool,
        registry: ServerProcess,
        proxy: FaultProxy,
        http: aiohttp.ClientSession,
        seaweedfs_s3: S3Server,
        bucket: S3Config,
    ) -> None:
        upload = await self.crash_during_final_put(registry, proxy, http, operation)
        assert self.session_keys(seaweedfs_s3, bucket, upload), "the crash left the session"

        last = self.BLOB[self.LAST :] if body else b""
        again = await send(http, "PUT", upload.location.update_query(digest=self.DIGEST), last)

        assert again.status == 201, (again.status, again.body[:300])
        async with http.get(f"{registry.url}/v2/{REPOSITORY}/blobs/{self.DIGEST}") as response:
            assert response.status == 200
            assert await response.read() == self.BLOB
        assert self.session_keys(seaweedfs_s3, bucket, upload) == []

    async def test_patch_after_the_crash_is_upload_unknown_and_a_new_push_works(
        self,
        registry: ServerProcess,
        proxy: FaultProxy,
        http: aiohttp.ClientSession,
        seaweedfs_s3: S3Server,
        bucket: S3Config,
    ) -> None:
        upload = await self.crash_during_final_put(registry, proxy, http)

        more = await send(
            http,
            "PATCH",
            upload.location,
            self.BLOB[self.LAST :],
            **{"Content-Range": f"{self.LAST}-{len(self.BLOB) - 1}"},
        )

        assert more.status == 404, (more.status, more.body[:300])
        assert json.loads(more.body)["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        assert self.session_keys(seaweedfs_s3, bucket, upload) == []
        fresh = await ChunkedUpload.start(http, registry, REPOSITORY)
        assert (await fresh.patch(self.BLOB)).status == 202
        assert (await fresh.finish(self.DIGEST)).status == 201
        async with http.get(f"{registry.url}/v2/{REPOSITORY}/blobs/{self.DIGEST}") as response:
            assert await response.read() == self.BLOB
