"""`GET /token`: the built-in token server, for deployments without one of their own.

It is called as the Docker token specification describes and docker, podman
and skopeo do: `GET /token?service=S&scope=repository:NAME:pull,push` with the
user's Basic credentials (or none, for an anonymous token). The token grants
the requested accesses the access rules allow that user, and nothing else: a
user asking for more gets a token for less, and the registry then refuses
what the token does not cover. Wrong credentials are 401, so `docker login`
and `podman login` report them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from registry.auth.access import Access, Policy, parse_scope
from registry.auth.schemes import authenticate_basic

if TYPE_CHECKING:
    from registry.auth.htpasswd import Htpasswd
    from registry.auth.tokens import TokenIssuer


class TokenEndpoint:
    """Authenticates users against the htpasswd file and signs their tokens."""

    def __init__(self, users: Htpasswd, policy: Policy, issuer: TokenIssuer) -> None:
        self._users = users
        self._policy = policy
        self._issuer = issuer

    async def handle(self, request: web.Request) -> web.Response:
        """200 with `{"token", "access_token", "expires_in", "issued_at"}`; 401 for bad credentials.

        Scopes may be repeated (`scope=a&scope=b`) or space-separated in one
        parameter; malformed ones are ignored and grant nothing.
        """
        user = await authenticate_basic(request, self._users)
        requested: list[Access] = [
            access
            for value in request.query.getall("scope", [])
            for scope in value.split()
            for access in parse_scope(scope)
        ]
        issued = self._issuer.issue(user or "", self._policy.grant(user, requested))
        body = {
            "token": issued.token,
            # OAuth 2 clients read `access_token`; Docker's older ones `token`.
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": issued.issued_at,
        }
        return web.Response(
            body=orjson.dumps(body),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )
