"""Writing Distribution's layout directly, to give collections something to collect."""

from __future__ import annotations

import time
from collections.abc import Callable

from registry import layout
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.services.feed import Change
from tests.services.test_purge import exists as exists  # shared, re-exported

HOUR = 3600.0


def later(hours: float) -> Callable[[], float]:
    """A clock `hours` ahead of the real one: everything written so far looks that old."""
    return lambda: time.time() + hours * HOUR


async def put_blob(driver: StorageDriver, name: str, data: bytes, link: bool = True) -> str:
    """Store `data` as a blob, linked into `name` unless `link` is false; its digest."""
    digest = Digest.of(data)
    await driver.put_content(layout.blob_data(digest), data)
    if link:
        await driver.put_content(layout.layer_link(name, digest), str(digest).encode())
    return str(digest)


async def put_manifest(
    driver: StorageDriver, name: str, data: bytes, tag: str | None = None
) -> str:
    """Store manifest `data` in `name` as Distribution does, tagged `tag` if given; its digest."""
    digest = Digest.of(data)
    key = str(digest).encode()
    await driver.put_content(layout.blob_data(digest), data)
    await driver.put_content(layout.manifest_revision_link(name, digest), key)
    if tag is not None:
        await driver.put_content(layout.tag_index_link(name, tag, digest), key)
        await driver.put_content(layout.tag_current_link(name, tag), key)
    return str(digest)


async def blob_exists(driver: StorageDriver, digest: str) -> bool:
    return await exists(driver, layout.blob_data(Digest.parse(digest)))


async def every_file(driver: StorageDriver) -> dict[str, bytes]:
    """Every file of Distribution's layout with its content."""
    return {
        info.path: await driver.get_content(info.path) async for info in driver.walk(layout.ROOT)
    }


class Published(list[Change]):
    """The changes a collection published, as a `publish` callable."""

    def __call__(self, change: Change) -> None:
        self.append(change)
