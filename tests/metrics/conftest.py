"""Fixtures of the metrics tests: a registry served as `cargobay serve` observes it, and
metric values read from this process's registry of metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from registry.api.observe import observer_options
from registry.app import create_app
from registry.auth import server_options
from registry.config import Config, MetricsConfig
from registry.drivers.base import StorageDriver
from registry.drivers.inmemory import InMemoryDriver
from registry.metrics import flush_metrics

Serve = Callable[..., Awaitable[TestClient]]

#: Metrics on (the address is never bound by these tests: the listener is the CLI's).
METRICS_ON = MetricsConfig(addr="127.0.0.1:1")


def sample(name: str, **labels: str) -> float:
    """The current value of the sample `name` with `labels` (0 if it has none yet).

    Metrics are process-wide, so tests compare values before and after.
    """
    flush_metrics()
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a registry with metrics on (and `config`'s other settings) on `driver`."""
    clients: list[TestClient] = []

    async def start(
        config: Config | None = None, driver: StorageDriver | None = None
    ) -> TestClient:
        config = dataclasses.replace(config or Config(), metrics=METRICS_ON)
        server = TestServer(create_app(config, driver or InMemoryDriver()))
        await server.start_server(**server_options(config.limits), **observer_options(config))
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
