"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from registry.storage.driver import StorageDriver
from registry.storage.filesystem import FilesystemDriver
from registry.storage.inmemory import InMemoryDriver

#: How to build each driver the `driver` fixture runs tests against. A factory
#: may ask `request` for other fixtures (a temporary directory, a server).
DRIVER_FACTORIES: dict[str, Callable[[pytest.FixtureRequest], StorageDriver]] = {
    "filesystem": lambda request: FilesystemDriver(request.getfixturevalue("tmp_path") / "root"),
    "inmemory": lambda request: InMemoryDriver(),
}


@pytest.fixture(params=list(DRIVER_FACTORIES))
async def driver(request: pytest.FixtureRequest) -> AsyncIterator[StorageDriver]:
    """An opened, empty driver of each kind in `DRIVER_FACTORIES`, closed after the test."""
    storage = DRIVER_FACTORIES[request.param](request)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()
