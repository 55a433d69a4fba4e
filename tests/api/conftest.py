"""Fixtures of the API tests: a registry app on each storage driver, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.auth import server_options
from registry.config import Config
from registry.drivers.base import StorageDriver
from tests.conftest import DRIVER_FACTORIES

#: The drivers the whole API suite runs against.
API_DRIVERS = ["filesystem", "inmemory", "s3-seaweedfs"]

ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture(params=API_DRIVERS)
async def storage(request: pytest.FixtureRequest) -> StorageDriver:
    """A fresh, unopened driver; the app opens it."""
    return DRIVER_FACTORIES[request.param](request)


@pytest.fixture
async def make_client(storage: StorageDriver) -> AsyncIterator[ClientFactory]:
    """Start a registry app on `storage` (again, to simulate a restart) and return a client.

    Every client started is closed at the end of the test.
    """
    clients: list[TestClient] = []

    async def start(config: Config | None = None) -> TestClient:
        for running in clients:
            await running.close()
        config = config or Config()
        server = TestServer(create_app(config, storage))
        # The server options `cargobay serve` runs with (read-ahead, header bounds).
        await server.start_server(**server_options(config.limits))
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient:
    """A client of a registry on a fresh, empty storage."""
    return await make_client()
