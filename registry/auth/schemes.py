"""The two ways a client proves who it is: Basic (htpasswd) and Bearer (JWT) authentication.

Each authenticator answers one question per request: may this client perform
these accesses? It returns the client's `Identity`, or raises the error the
spec prescribes:

- Basic: no or wrong credentials are `Unauthorized` with a `Basic` challenge;
  a known user the rules refuse is `Denied` (403). Anonymous clients get what
  the `anonymous` rules grant.
- Bearer: no token, or one that fails verification, is `Unauthorized` with a
  `Bearer` challenge naming the scope the request needs (`error="invalid_token"`
  for a bad one); a good token that lacks an access is `Unauthorized` with
  `error="insufficient_scope"`, as Distribution answers, so that clients fetch a
  token with the wider scope.

Failed logins are logged with the user name and the client's address, never
with the password or the token.
"""

from __future__ import annotations

import base64
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from registry.auth.access import Access, Grant, Policy, format_scopes
from registry.errors import Denied, Unauthorized

if TYPE_CHECKING:
    from registry.auth.htpasswd import Htpasswd
    from registry.auth.tokens import TokenVerifier


log = logging.getLogger(__name__)

BASIC_CHALLENGE = 'Basic realm="Cargobay"'
#: Where the built-in token endpoint answers.
TOKEN_PATH = "/token"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request comes from: a user name, or None for an anonymous client.

    `grant` is what the client's bearer token allows (None outside token mode).
    """

    user: str | None
    grant: Grant | None = None


class Authenticator(ABC):
    """Authenticates a request and authorises the accesses it needs."""

    @abstractmethod
    async def authorize(self, request: web.Request, needed: Sequence[Access]) -> Identity:
        """The client's identity if it may perform every access in `needed`.

        An empty `needed` asks only that the client be authenticated (the
        `/v2/` check that `docker login` relies on). Raises `Unauthorized`
        with a challenge, or `Denied`.
        """

    @abstractmethod
    def permits(self, identity: Identity, access: Access) -> bool:
        """True if `identity`, already authorised for its request, may also perform `access`."""


class BasicAuthenticator(Authenticator):
    """Users from an htpasswd file, permissions from the access rules."""

    def __init__(self, users: Htpasswd, policy: Policy) -> None:
        self._users = users
        self._policy = policy

    async def authorize(self, request: web.Request, needed: Sequence[Access]) -> Identity:
        user = await authenticate_basic(request, self._users)
        if user is None:
            if needed and all(self._policy.allows(None, access) for access in needed):
                return Identity(None)
            raise Unauthorized(detail=access_detail(needed), challenge=BASIC_CHALLENGE)
        refused = [access for access in needed if not self._policy.allows(user, access)]
        if refused:
            raise Denied(detail=access_detail(refused))
        return Identity(user)

    def permits(self, identity: Identity, access: Access) -> bool:
        return self._policy.allows(identity.user, access)


async def authenticate_basic(request: web.Request, users: Htpasswd) -> str | None:
    """The user whose Basic credentials the request carries; None if it carries none.

    Credentials with an empty user name count as none (some clients send them
    when they have nothing better). Malformed credentials, other schemes and a
    wrong password raise `Unauthorized` with the Basic challenge.
    """
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    try:
        if scheme.lower() != "basic":
            raise ValueError(f"not Basic credentials: {scheme[:20]!r}")
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        user, colon, password = decoded.partition(":")
        if not colon:
            raise ValueError("no colon between user and password")
    except ValueError as e:  # binascii.Error and UnicodeDecodeError included
        raise Unauthorized("malformed Basic credentials", challenge=BASIC_CHALLENGE) from e
    if not user:
        return None
    if not await users.check(user, password):
        log.warning("failed login for user %r from %s", user, request.remote)
        raise Unauthorized("invalid username or password", challenge=BASIC_CHALLENGE)
    return user


class BearerAuthenticator(Authenticator):
    """Bearer tokens of the Docker token specification, from us or another token server.

    `realm` is where clients get tokens; empty means this registry's own token
    endpoint, at the scheme and host the client used.
    """

    def __init__(self, verifier: TokenVerifier, realm: str, service: str) -> None:
        self._verifier = verifier
        self._realm = realm
        self._service = service

    async def authorize(self, request: web.Request, needed: Sequence[Access]) -> Identity:
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise Unauthorized(
                detail=access_detail(needed), challenge=self._challenge(request, needed)
            )
        try:
            claims = self._verifier.verify(raw.strip())
        except Unauthorized as e:
            log.warning("rejected token from %s: %s", request.remote, e.message)
            raise Unauthorized(
                e.message,
                detail=access_detail(needed),
                challenge=self._challenge(request, needed, "invalid_token"),
            ) from e
        missing = [access for access in needed if not claims.grant.covers(access)]
        if missing:
            raise Unauthorized(
                f"token does not grant {format_scopes(missing)}",
                detail=access_detail(missing),
                challenge=self._challenge(request, needed, "insufficient_scope"),
            )
        return Identity(claims.subject or None, claims.grant)

    def permits(self, identity: Identity, access: Access) -> bool:
        return identity.grant is not None and identity.grant.covers(access)

    def _challenge(self, request: web.Request, needed: Sequence[Access], error: str = "") -> str:
        realm = self._realm or f"{request.scheme}://{request.host}{TOKEN_PATH}"
        challenge = f"Bearer realm={_quote(realm)},service={_quote(self._service)}"
        if needed:
            challenge += f",scope={_quote(format_scopes(needed))}"
        if error:
            challenge += f",error={_quote(error)}"
        return challenge


def access_detail(accesses: Sequence[Access]) -> list[dict[str, Any]] | None:
    """The accesses as the `detail` of an auth error, as Distribution reports them."""
    if not accesses:
        return None
    return [{"Type": a.type, "Name": a.name, "Action": a.action} for a in accesses]


def _quote(value: str) -> str:
    """An RFC 7230 quoted-string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
