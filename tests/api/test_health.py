"""`/healthz` and `/readyz`, request ids and the `Server` header, on the main listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry import layout
from registry.api.health import READINESS
from registry.app import create_app
from registry.config import AccessRule, AuthConfig, Config, HtpasswdConfig
from registry.drivers.base import StorageDriver
from registry.drivers.inmemory import InMemoryDriver
from registry.drivers.s3 import S3Driver
from registry.drivers.wrapper import DriverWrapper
from registry.errors import StorageError
from tests.auth.conftest import write_htpasswd
from tests.s3server import BUCKET, moto_server

T = TypeVar("T")


class Gate(DriverWrapper):
    """Holds loading a repository's tags and links until `opened` (discovering it passes);
    fails every call when `broken`."""

    def __init__(self) -> None:
        super().__init__(InMemoryDriver())
        self.opened = asyncio.Event()
        self.broken = False

    async def observe(self, operation: str, path: str, call: Awaitable[T]) -> T:
        if self.broken:
            close = getattr(call, "close", None)
            if close is not None:
                close()
            raise StorageError(self.name, path, "connection refused")
        if "/_manifests/" in path and operation != "put_content":
            await self.opened.wait()
        return await call


async def serve(driver: StorageDriver, config: Config | None = None) -> TestClient:
    client = TestClient(TestServer(create_app(config or Config(), driver)))
    await client.start_server()
    return client


@pytest.fixture
async def plain() -> AsyncIterator[TestClient]:
    """A registry on an empty in-memory storage."""
    client = TestClient(TestServer(create_app(Config(), InMemoryDriver())))
    await client.start_server()
    yield client
    await client.close()


async def wait_ready(client: TestClient) -> None:
    for _ in range(500):
        if (await client.get("/readyz")).status == 200:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(await (await client.get("/readyz")).text())


async def with_repository() -> Gate:
    """A storage holding one repository whose links are held behind the gate."""
    driver = Gate()
    await driver.open()
    driver.opened.set()
    await driver.put_content(layout.tag_current_link("team/app", "v1"), b"sha256:" + b"0" * 64)
    driver.opened.clear()
    return driver


class TestHealthz:
    async def test_healthz_answers_200_even_while_the_index_loads(self) -> None:
        driver = await with_repository()
        client = await serve(driver)
        try:
            response = await client.get("/healthz")
            assert response.status == 200
            assert await response.json() == {"status": "ok"}
        finally:
            driver.opened.set()
            await client.close()


class TestReadyz:
    async def test_readyz_is_503_naming_the_index_until_it_is_loaded_then_200(self) -> None:
        driver = await with_repository()
        client = await serve(driver)
        try:
            loading = await client.get("/readyz")
            body = await loading.json()
            assert loading.status == 503
            assert body["status"] == "unavailable"
            assert "index" in body["failing"]

            driver.opened.set()
            await wait_ready(client)
            assert await (await client.get("/readyz")).json() == {"status": "ready"}
        finally:
            driver.opened.set()
            await client.close()

    async def test_readyz_is_503_naming_storage_once_a_probe_fails(self) -> None:
        driver = Gate()
        driver.opened.set()
        client = await serve(driver)
        try:
            await wait_ready(client)
            driver.broken = True
            readiness = client.server.app[READINESS]
            await readiness.probe()

            response = await client.get("/readyz")
            body = await response.json()
            assert response.status == 503
            assert set(body["failing"]) == {"storage"}
            assert "connection refused" in body["failing"]["storage"]

            driver.broken = False
            await readiness.probe()
            assert (await client.get("/readyz")).status == 200
        finally:
            await client.close()

    async def test_readyz_is_503_once_the_s3_server_is_stopped(self) -> None:
        with moto_server() as s3:
            s3.create_bucket(BUCKET)
            client = await serve(S3Driver(s3.config()))
            try:
                await wait_ready(client)
            except BaseException:
                await client.close()
                raise
        # The server is gone now.
        try:
            await client.server.app[READINESS].probe()

            response = await client.get("/readyz")
            assert response.status == 503
            assert set((await response.json())["failing"]) == {"storage"}
        finally:
            await client.close()

    async def test_health_endpoints_need_no_credentials(self, tmp_path: Path) -> None:
        write_htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
        auth = AuthConfig(
            mode="htpasswd",
            htpasswd=HtpasswdConfig(str(tmp_path / "htpasswd")),
            access=(AccessRule(repositories=("**",), users=("alice",), actions=("pull",)),),
        )
        driver = Gate()
        driver.opened.set()
        client = await serve(driver, Config(auth=auth))
        try:
            await wait_ready(client)
            assert (await client.get("/healthz")).status == 200
            assert (await client.get("/v2/")).status == 401
        finally:
            await client.close()


class TestResponseHeaders:
    async def test_incoming_request_id_is_returned(self, plain: TestClient) -> None:
        response = await plain.get("/v2/", headers={"X-Request-Id": "ci-build-42.step-7"})
        assert response.headers["X-Request-Id"] == "ci-build-42.step-7"

    async def test_missing_or_unsafe_request_id_is_replaced_by_a_new_one(
        self, plain: TestClient
    ) -> None:
        ids = [
            (await plain.get("/v2/", headers=headers)).headers["X-Request-Id"]
            for headers in ({}, {}, {"X-Request-Id": "evil\tid with spaces"})
        ]
        assert len(set(ids)) == 3
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)

    async def test_server_header_names_no_versions(self, plain: TestClient) -> None:
        for path in ("/v2/", "/v2/nothing/manifests/latest", "/healthz"):
            assert (await plain.get(path)).headers["Server"] == "cargobay"
