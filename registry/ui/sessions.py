"""Who is looking at the web page, what they may see and delete, and the forms they may send.

The page knows the API's users and obeys its rules:

- `[auth] mode = "none"`: no login; every visitor may see and delete
  everything, as every API client may.
- `htpasswd`, and `token` with this registry's own token endpoint: visitors
  log in with the htpasswd users; each repository is shown if the rules grant
  the visitor `pull` on it (anonymous visitors: what the anonymous rules
  grant), and offers deletes if they grant `delete`. Deletes need
  `storage.delete` on and `storage.read_only` off, as in the API.
- `token` with an external token server: the users are not known here, so
  the page is not served at all (`page_available` is False).

A browser holds one session cookie, signed (HMAC-SHA256) with a key that
every process of the storage shares (`keys`): a random session id, the user
name if logged in, and an expiry. Every visitor gets one on the first page, so
that every form carries a token bound to it: `csrf_token` is an HMAC of the
session id and user, checked with `hmac.compare_digest`. The cookie is
HttpOnly and SameSite=Strict (Secure over HTTPS), so another site can neither
read it nor send it with a forged form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from registry.auth.access import DELETE, PULL, REPOSITORY, Access, Policy
from registry.config import Config
from registry.drivers.base import StorageDriver
from registry.keys import SharedKeys

if TYPE_CHECKING:
    from registry.auth.htpasswd import Htpasswd

log = logging.getLogger(__name__)

COOKIE = "cargobay_ui"
#: Where the keys that sign sessions and forms live (see `registry.keys`).
KEYS = "/cargobay/ui/session-keys"
#: How long a session lasts from its login (or first page).
SESSION_SECONDS = 12 * 3600
_PATH = "/ui/"


@dataclass(frozen=True, slots=True)
class Session:
    """One browser's session: a random id, who logged in (None: nobody), until when."""

    sid: str
    user: str | None
    expires: int


class Gate:
    """Sessions, logins and the access decisions of the page, for one configuration."""

    def __init__(self, config: Config) -> None:
        auth = config.auth
        self._keys: SharedKeys | None = None
        self._read_only = config.storage.read_only
        self._deletes = config.storage.delete and not config.storage.read_only
        self._policy: Policy | None = None
        self._users: Htpasswd | None = None
        self.page_available = auth.mode != "token" or bool(auth.token.signing_key)
        if auth.mode != "none" and self.page_available:
            # Imported only when used, as the API's authenticators are (bcrypt's memory).
            from registry.auth.htpasswd import Htpasswd

            self._policy = Policy(auth.access, auth.groups)
            self._users = Htpasswd(auth.htpasswd.path)

    async def open(self, driver: StorageDriver) -> None:
        """Read (or make) the signing keys in `driver`'s storage; before any request.

        Raises `StorageError` if storage fails.
        """
        keys = SharedKeys(driver, KEYS, may_write=not self._read_only)
        await keys.open()
        self._keys = keys

    @property
    def keys(self) -> SharedKeys:
        assert self._keys is not None, "Gate.open was not awaited"
        return self._keys

    @property
    def has_logins(self) -> bool:
        """True if visitors log in (any mode but "none")."""
        return self._users is not None

    # -- access ------------------------------------------------------------------------

    def may_pull(self, session: Session, name: str) -> bool:
        """True if the session's user may see repository `name`."""
        return self._allows(session, Access(REPOSITORY, name, PULL))

    def may_delete(self, session: Session, name: str) -> bool:
        """True if the session's user may delete tags and manifests of `name`, now."""
        return self._deletes and self._allows(session, Access(REPOSITORY, name, DELETE))

    def _allows(self, session: Session, access: Access) -> bool:
        return self._policy is None or self._policy.allows(session.user, access)

    async def check_password(self, user: str, password: str) -> bool:
        """True if `password` is `user`'s in the htpasswd file (False without logins)."""
        return self._users is not None and await self._users.check(user, password)

    # -- sessions ----------------------------------------------------------------------

    async def session_of(self, request: web.Request) -> Session | None:
        """The request's session if its cookie is ours, unaltered and current; else None."""
        raw = request.cookies.get(COOKIE, "")
        sid, _, rest = raw.partition(".")
        user_b64, _, rest = rest.partition(".")
        expires_text, _, mac = rest.partition(".")
        if not (sid and expires_text.isdigit() and mac):
            return None
        payload = f"{sid}.{user_b64}.{expires_text}"
        if not await self._verify("session", payload, mac):
            return None
        expires = int(expires_text)
        if expires < time.time():
            return None
        try:
            user = base64.urlsafe_b64decode(user_b64).decode() if user_b64 else None
        except ValueError:
            return None
        return Session(sid, user, expires)

    def new_session(self, user: str | None = None) -> Session:
        """A fresh session (a new id, so a login never reuses an id seen before it)."""
        return Session(secrets.token_urlsafe(18), user, int(time.time()) + SESSION_SECONDS)

    def set_cookie(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        """Make `response` give the browser `session`."""
        user_b64 = base64.urlsafe_b64encode(session.user.encode()).decode() if session.user else ""
        payload = f"{session.sid}.{user_b64}.{session.expires}"
        response.set_cookie(
            COOKIE,
            f"{payload}.{self._mac('session', payload, self.keys.signing)}",
            path=_PATH,
            max_age=max(0, session.expires - int(time.time())),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )

    def csrf_token(self, session: Session) -> str:
        """The token the session's forms carry; it changes with the session and the user."""
        return self._mac("csrf", _csrf_payload(session), self.keys.signing)

    async def check_csrf(self, session: Session, token: str) -> bool:
        """True if `token` is the session's form token (made by any process of the storage)."""
        return await self._verify("csrf", _csrf_payload(session), token)

    async def _verify(self, purpose: str, payload: str, mac: str) -> bool:
        if self._matches(purpose, payload, mac):
            return True
        # Perhaps signed by a process whose key this one has not read yet.
        return await self.keys.refresh() and self._matches(purpose, payload, mac)

    def _matches(self, purpose: str, payload: str, mac: str) -> bool:
        return any(
            hmac.compare_digest(mac.encode(), self._mac(purpose, payload, key).encode())
            for key in self.keys.trusted
        )

    @staticmethod
    def _mac(purpose: str, payload: str, key: bytes) -> str:
        digest = hmac.new(key, f"{purpose}\0{payload}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _csrf_payload(session: Session) -> str:
    return f"{session.sid}.{session.user or ''}"
