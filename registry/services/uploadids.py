"""Upload session ids that vouch for themselves, so that opening a session writes nothing.

A POST that opens an upload session used to store its `startedat` file: one
storage write per blob pushed, for a session that is mostly finished by the
very next request. Instead the id carries what storage would have said, signed:

    <started, ms since the epoch, hex>-<16 random hex digits>-<HMAC, 32 hex digits>

The HMAC-SHA256 (truncated to 128 bits) covers the repository's name, the
start time and the random part, with a key every process of the storage
shares (`registry.keys`, under `UPLOAD_KEYS`): any worker or replica can
verify an id another made, and an id is good in its own repository only. An
id is refused once it is older than the upload expiry, as the purge would
have removed its session by then.

Prior art: Distribution 2.x signs its upload state into the Location
(`_state`, an HMAC of name, UUID, offset and start time with `http.secret`).

Ids in Distribution's form, a UUID, are accepted unsigned: they name sessions
opened by Distribution or by an older Cargobay on the same storage (during a
migration or a rolling upgrade), and only storage can say whether they exist.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
import time

from registry.errors import BlobUploadUnknown
from registry.keys import SharedKeys

#: Where the keys that sign upload ids live (see `registry.keys`).
UPLOAD_KEYS = "/cargobay/uploads/keys"

_SIGNED_RE = re.compile(r"([0-9a-f]{1,12})-([0-9a-f]{16})-([0-9a-f]{32})")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAC_BYTES = 16


class UploadIds:
    """Makes and checks the ids of upload sessions."""

    def __init__(self, keys: SharedKeys, max_age: float = 0.0) -> None:
        """`max_age` (seconds) bounds how old an id may be; 0 for no bound."""
        self._keys = keys
        self._max_age = max_age

    def new(self, name: str) -> str:
        """A fresh id for a session of repository `name`, started now."""
        body = f"{int(time.time() * 1000):x}-{secrets.token_hex(8)}"
        return f"{body}-{_mac(self._keys.signing, name, body)}"

    async def started(self, name: str, upload_id: str) -> datetime.datetime | None:
        """When session `upload_id` of repository `name` started, as its id says.

        None for an id in Distribution's form (a UUID), which storage alone
        vouches for. Raises `BlobUploadUnknown` for any other id that is not
        one of ours for `name`: malformed, forged, of another repository, or
        older than the expiry. Asks storage for keys only when no key known
        verifies the id, and then at most every few seconds (`SharedKeys.refresh`).
        """
        if _UUID_RE.fullmatch(upload_id):
            return None
        match = _SIGNED_RE.fullmatch(upload_id)
        if match is None:
            raise BlobUploadUnknown(detail={"upload": upload_id[:100]})
        started_hex, nonce, mac = match.groups()
        body = f"{started_hex}-{nonce}"
        if not self._verifies(name, body, mac) and not (
            await self._keys.refresh() and self._verifies(name, body, mac)
        ):
            raise BlobUploadUnknown(detail={"upload": upload_id})
        started = int(started_hex, 16) / 1000
        if self._max_age and time.time() - started > self._max_age:
            raise BlobUploadUnknown(detail={"upload": upload_id, "reason": "expired"})
        return datetime.datetime.fromtimestamp(started, datetime.UTC)

    def _verifies(self, name: str, body: str, mac: str) -> bool:
        return any(hmac.compare_digest(_mac(key, name, body), mac) for key in self._keys.trusted)


def _mac(key: bytes, name: str, body: str) -> str:
    message = f"upload\n{name}\n{body}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES].hex()
