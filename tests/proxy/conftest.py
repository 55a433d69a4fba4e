"""Fixtures of the pull-through cache tests: a fake upstream registry and a mirror in front of it.

`FakeUpstream` is a real HTTP server (aiohttp) speaking enough of the
distribution API for a mirror: manifests by tag and digest (GET and HEAD),
blobs, the Docker token flow when `token_auth` is on, and Basic auth when
`basic_auth` is set. It counts every request, can be made to fail (`status`),
to hold blobs half-sent (`hold_blobs`, `blob_half_sent`), or to corrupt blobs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.config import Config, ProxyConfig, UpstreamConfig
from registry.drivers.base import StorageDriver
from registry.drivers.inmemory import InMemoryDriver

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeUpstream:
    """An in-process upstream registry; `url` once started."""

    manifests: dict[str, bytes] = field(default_factory=dict)
    tags: dict[tuple[str, str], str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    token_requests: list[str] = field(default_factory=list)
    token_auth: bool = False
    token_seconds: int = 300
    basic_auth: tuple[str, str] | None = None
    status: int | None = None  # answer every registry request with this, if set
    corrupt_blobs: bool = False
    paginates: bool = True  # False: tag lists ignore `n` and `last`, unsorted (Distribution 2.8)
    hold_blobs: asyncio.Event | None = None
    blob_half_sent: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _tokens: set[str] = field(default_factory=set)

    def add_image(self, repository: str, tag: str, layer: bytes) -> tuple[str, str]:
        """Store a one-layer image tagged `tag`; its (manifest digest, layer digest)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
        for blob in (config, layer):
            self.blobs[digest_of(blob)] = blob
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest_of(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": digest_of(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        digest = digest_of(manifest)
        self.manifests[digest] = manifest
        self.tags[(repository, tag)] = digest
        return digest, digest_of(layer)

    def count(self, method: str, part: str) -> int:
        """Requests with `method` whose path contains `part`."""
        return sum(n for (m, path), n in self.requests.items() if m == method and part in path)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self._token)
        app.router.add_get("/v2/{name:.+}/manifests/{reference}", self._manifest)
        app.router.add_get("/v2/{name:.+}/blobs/{digest}", self._blob)
        app.router.add_get("/v2/{name:.+}/tags/list", self._tags)
        return app

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.token_auth:
            return header.removeprefix("Bearer ") in self._tokens
        if self.basic_auth is not None:
            expected = base64.b64encode(":".join(self.basic_auth).encode()).decode()
            return header == f"Basic {expected}"
        return True

    def _challenge(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if self.token_auth:
            value = f'Bearer realm="{self.url}/token",service="fake",scope="repository:{name}:pull"'
        else:
            value = 'Basic realm="fake"'
        return web.Response(status=401, headers={"WWW-Authenticate": value})

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests.append(request.query.get("scope", ""))
        token = secrets.token_hex(8)
        self._tokens.add(token)
        return web.json_response({"token": token, "expires_in": self.token_seconds})

    def _refusal(self, request: web.Request) -> web.Response | None:
        self.requests[(request.method, request.path)] += 1
        if self.status is not None:
            return web.Response(status=self.status)
        if not self._authorized(request):
            return self._challenge(request)
        return None

    async def _manifest(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        reference = request.match_info["reference"]
        digest = self.tags.get((request.match_info["name"], reference), reference)
        data = self.manifests.get(digest)
        if data is None:
            return web.Response(status=404)
        headers = {"Docker-Content-Digest": digest, "Content-Type": OCI_MANIFEST}
        return web.Response(body=data, headers=headers)

    async def _tags(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        name = request.match_info["name"]
        tags = sorted(tag for repository, tag in self.tags if repository == name)
        if not tags:
            return web.Response(status=404)
        if not self.paginates:
            return web.json_response({"name": name, "tags": tags[::-1]})
        last, n = request.query.get("last"), request.query.get("n")
        after = [tag for tag in tags if last is None or tag > last]
        page = after if n is None else after[: int(n)]
        headers = {}
        if len(page) < len(after):
            headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={page[-1]}>; rel="next"'
        return web.json_response({"name": name, "tags": page}, headers=headers)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        data = self.blobs.get(request.match_info["digest"])
        if data is None:
            return web.Response(status=404)
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": str(len(data))})
        if self.corrupt_blobs:
            data = data[:-1] + bytes([data[-1] ^ 1])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(data)
        await response.prepare(request)
        half = len(data) // 2
        await response.write(data[:half])
        self.blob_half_sent.set()
        if self.hold_blobs is not None:
            await self.hold_blobs.wait()
        await response.write(data[half:])
        await response.write_eof()
        return response


MirrorFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A started fake upstream registry."""
    fake = FakeUpstream()
    server = TestServer(fake.app())
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


@pytest.fixture
async def make_mirror(upstream: FakeUpstream) -> AsyncIterator[MirrorFactory]:
    """Start a Cargobay mirroring `upstream` under the prefix `up` (options: `UpstreamConfig`'s),
    on a fresh in-memory storage or on `driver`."""
    clients: list[TestClient] = []

    async def start(driver: StorageDriver | None = None, **options: object) -> TestClient:
        settings: dict[str, object] = {"name": "up", "url": upstream.url, "prefix": "up"}
        settings.update(options)
        config = Config(proxy=ProxyConfig(upstreams=(UpstreamConfig(**settings),)))  # type: ignore[arg-type]
        storage = driver if driver is not None else InMemoryDriver()
        client = TestClient(TestServer(create_app(config, storage)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
