"""Deleting from an S3 bucket, for `S3Driver._delete` and `S3Driver._delete_files`.

Keys go in DeleteObjects requests of up to 1,000 keys (S3's maximum), where a
missing key is no error, one request at a time: a server deletes key by key
(SeaweedFS spends ~0.8 ms of CPU a key), and garbage collection's deletes must
leave it the capacity to serve. A request that leaves keys behind is a
`StorageError`; the requests before it have deleted theirs.

Directory markers (`<dir>/` keys) are deleted too, after the objects below
them. S3 has them only where a tool wrote them, but servers that keep objects
in a filesystem (SeaweedFS) keep a directory emptied of its objects, and list
it, until its marker is deleted, and deleting the marker of a directory still
holding objects changes nothing there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.drivers.s3writer import STATE_SUFFIX
from registry.errors import StorageError

if TYPE_CHECKING:
    from registry.drivers.s3 import S3Driver

# Keys per DeleteObjects request: S3's maximum.
_BATCH = 1000


async def delete_path(driver: S3Driver, path: str) -> None:
    """Delete the object at `path` and every object and marker below it.

    `PathNotFound` if there is neither. A writer's saved state below `path`
    has its upload aborted; the saved state of `path` itself is left.
    """
    # The objects below the path, and the object at the path itself, go in
    # DeleteObjects requests (a missing key is no error there): a directory
    # costs a listing and a delete, with no HEAD; a path with nothing below
    # it costs a HEAD too. Markers go last, once everything below them is
    # gone.
    keys = _KeyBatches(driver, path)
    markers: set[str] = set()
    if not await _tree_keys(driver, path, keys, markers):
        await driver._head(path)
    await keys.add(driver.key(path))
    await keys.flush()
    # Reversed, every marker comes before the markers above it.
    for marker in sorted(markers, reverse=True):
        await keys.add(marker)
    await keys.flush()


async def delete_files(driver: S3Driver, paths: list[str]) -> None:
    """Delete the objects at `paths` and the markers of the directories holding them.

    A missing object is no error; a `StorageError` names the first of `paths`.
    """
    if not paths:
        return
    keys = _KeyBatches(driver, paths[0])
    files = [driver.key(path) for path in paths]
    for key in files:
        await keys.add(key)
    # The markers after every file, in the same stream of requests.
    for marker in sorted({key.rpartition("/")[0] + "/" for key in files if "/" in key}):
        await keys.add(marker)
    await keys.flush()


async def _delete_keys(driver: S3Driver, path: str, keys: list[str]) -> None:
    if not keys:
        return
    with driver._errors(path):
        response = await driver._s3.delete_objects(
            Bucket=driver.config.bucket,
            Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
        )
    failed = response.get("Errors", ())
    if failed:
        first = failed[0]
        message = f"{first.get('Code')}: {first.get('Message')}"
        raise StorageError(driver.name, path, f"DeleteObjects left {len(failed)} keys: {message}")


async def _tree_keys(driver: S3Driver, path: str, keys: _KeyBatches, markers: set[str]) -> bool:
    """Hand every object below directory `path` to `keys`, and the directory markers
    (`<dir>/` keys) of `path` and of every directory below it to `markers`; whether
    there was any object.

    A writer state found there has its upload aborted. The markers must go
    after the objects (see the module docstring).
    """
    root = driver.key(path) + "/"
    found = False
    async for page in driver._pages(path, Prefix=root):
        for item in page.get("Contents", ()):
            key = item["Key"]
            found = True
            if key.endswith(STATE_SUFFIX):
                await driver._abort_saved_upload(driver._path(key[: -len(STATE_SUFFIX)]))
            names = key[len(root) :].split("/")[:-1]
            markers.update(root + "/".join(names[:n]) + "/" for n in range(1, len(names) + 1))
            await keys.add(key)
    if found:
        markers.add(root)
    return found


class _KeyBatches:
    """Keys to delete, sent in DeleteObjects requests of up to 1,000 keys as they come."""

    def __init__(self, driver: S3Driver, path: str) -> None:
        self._driver = driver
        self._path = path
        self._keys: list[str] = []

    async def add(self, key: str) -> None:
        self._keys.append(key)
        if len(self._keys) >= _BATCH:
            await self.flush()

    async def flush(self) -> None:
        batch, self._keys = self._keys, []
        await _delete_keys(self._driver, self._path, batch)
