"""Secret keys shared by every process of one storage, kept in the storage itself.

Workers (`--workers N`) and replicas serve one registry, and a client's next
request may reach any of them, so whatever one process signs (a web page
session, an upload id) every other must verify. Storage is what they share:
each use keeps its keys in a directory of its own under `/cargobay/`, beside
the change feed and outside Distribution's tree, and they survive restarts.
Whoever can read the storage can forge what the keys sign; they can also
rewrite every manifest, so that protects nothing more.

Storage has no "create if absent", so processes starting together may each
write a key. Every key in the directory is trusted; each process signs with
the first in name order it knows of. A signature no known key verifies makes
the process list the directory again (at most every `RELIST_SECONDS`), so
processes converge on one signing key within seconds and nothing signed in
the meantime is refused for long.

With `storage.read_only` no key is written: if none is stored, the process
uses a key of its own, which only it can verify.
"""

from __future__ import annotations

import logging
import secrets
import time

from registry.drivers.base import StorageDriver
from registry.errors import PathNotFound, StorageError

log = logging.getLogger(__name__)

RELIST_SECONDS = 5.0
_KEY_BYTES = 32


class SharedKeys:
    """The signing keys stored in one directory, as far as this process has read them.

    Each key is a file of hex text named by a random id.
    """

    def __init__(self, driver: StorageDriver, directory: str, may_write: bool) -> None:
        self._driver = driver
        self.directory = directory
        self._may_write = may_write
        self._keys: dict[str, bytes] = {}
        self._listed_at = 0.0

    async def open(self) -> None:
        """Read the stored keys, storing a new one if there is none (and storage may be written).

        Raises `StorageError` if storage cannot be read or written.
        """
        await self._list()
        if self._keys:
            return
        if not self._may_write:
            log.warning(
                "no key in read-only storage at %s: what it signs works with one process only",
                self.directory,
            )
            self._keys["~local"] = secrets.token_bytes(_KEY_BYTES)
            return
        key = secrets.token_hex(_KEY_BYTES).encode()
        await self._driver.put_content(f"{self.directory}/{secrets.token_hex(8)}", key)
        await self._list()

    @property
    def signing(self) -> bytes:
        """The key new signatures are made with."""
        return self._keys[min(self._keys)]

    @property
    def trusted(self) -> list[bytes]:
        """Every key a signature may have been made with."""
        return list(self._keys.values())

    async def refresh(self) -> bool:
        """List the stored keys again unless done lately; True if any new key was found.

        A storage error is logged and counts as nothing new: the caller then
        refuses the signature it could not verify rather than failing.
        """
        if time.monotonic() - self._listed_at < RELIST_SECONDS:
            return False
        known = len(self._keys)
        try:
            await self._list()
        except StorageError as e:
            log.warning("keys at %s not re-read: %s", self.directory, e)
            return False
        return len(self._keys) > known

    async def _list(self) -> None:
        self._listed_at = time.monotonic()
        try:
            paths = await self._driver.list(self.directory)
        except PathNotFound:
            return
        for path in paths:
            key_id = path.rpartition("/")[2]
            if key_id in self._keys:
                continue
            try:
                key = bytes.fromhex((await self._driver.get_content(path)).decode())
            except (PathNotFound, UnicodeDecodeError, ValueError):
                continue  # removed meanwhile, or not one of ours
            if len(key) >= _KEY_BYTES:
                self._keys[key_id] = key
