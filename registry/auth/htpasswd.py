"""Users and passwords from an htpasswd file of bcrypt entries, as `htpasswd -B` writes them.

The file is re-read when it changes (its size, modification time or inode),
so users are added and removed without a restart. Only bcrypt entries
(`$2a$`, `$2b$`, `$2y$`) are accepted; any other line is ignored with a
warning that names the line number and user, never the hash.

bcrypt is slow on purpose (tens of milliseconds), so checks run in a worker
thread, and a successful check is remembered for as long as the user's entry
is unchanged: clients send their credentials with every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections import OrderedDict

import bcrypt

from registry.config import ConfigError

log = logging.getLogger(__name__)

_BCRYPT_RE = re.compile(r"\$2[aby]\$[0-9][0-9]\$[./A-Za-z0-9]{53}")
# bcrypt looks at the first 72 bytes only; htpasswd hashed a longer password
# truncated, so it must be checked truncated too.
_BCRYPT_MAX_PASSWORD = 72
# Successful checks remembered; each entry is two short byte strings.
_MAX_REMEMBERED = 4096

_FileSignature = tuple[int, int, int]


class Htpasswd:
    """The users of one htpasswd file and a way to check their passwords."""

    def __init__(self, path: str) -> None:
        """Read `path`; raise `ConfigError` if it cannot be read at start-up."""
        self._path = path
        self._signature: _FileSignature | None = None
        self._hashes: dict[str, bytes] = {}
        # Keyed by a keyed hash of the password, so no password is kept in memory.
        self._remembered: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()
        self._cache_key = secrets.token_bytes(32)
        try:
            self._signature = _signature(path)
        except OSError as e:
            raise ConfigError(f"cannot read htpasswd file {path}: {e.strerror}") from e
        self._hashes = _read(path)

    async def check(self, user: str, password: str) -> bool:
        """True if `password` is `user`'s; False for a wrong password or an unknown user.

        An unknown user costs one bcrypt check like a known one, so timing does
        not tell which users exist.
        """
        self._reload_if_changed()
        secret = password.encode()[:_BCRYPT_MAX_PASSWORD]
        stored = self._hashes.get(user)
        if stored is None:
            if self._hashes:
                decoy = next(iter(self._hashes.values()))
                await asyncio.to_thread(bcrypt.checkpw, secret, decoy)
            return False
        key = (user, hmac.new(self._cache_key, secret, hashlib.sha256).digest())
        if self._remembered.get(key) == stored:
            self._remembered.move_to_end(key)
            return True
        if not await asyncio.to_thread(bcrypt.checkpw, secret, stored):
            return False
        self._remembered[key] = stored
        if len(self._remembered) > _MAX_REMEMBERED:
            self._remembered.popitem(last=False)
        return True

    def _reload_if_changed(self) -> None:
        try:
            signature = _signature(self._path)
        except OSError as e:
            if self._signature is not None:
                # Nobody can log in until the file is back: safer than trusting stale entries.
                log.error("htpasswd file %s unreadable (%s): no user can log in", self._path, e)
                self._signature, self._hashes = None, {}
            return
        if signature == self._signature:
            return
        try:
            self._hashes = _read(self._path)
        except OSError as e:
            log.error("htpasswd file %s unreadable (%s): no user can log in", self._path, e)
            self._hashes = {}
        self._signature = signature
        self._remembered.clear()
        log.info("htpasswd file %s loaded: %d users", self._path, len(self._hashes))


def _signature(path: str) -> _FileSignature:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read(path: str) -> dict[str, bytes]:
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    hashes: dict[str, bytes] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            log.warning("%s:%d: not a user:hash line; ignored", path, number)
        elif not _BCRYPT_RE.fullmatch(hashed):
            log.warning("%s:%d: %r is not a bcrypt entry (htpasswd -B)", path, number, user)
        else:
            hashes[user] = hashed.encode()
    return hashes
