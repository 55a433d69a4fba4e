"""The HTTP client of one upstream registry: its manifests and blobs, and its authentication.

Requests go out anonymous, or with Basic credentials once the upstream asked
for them, or with a bearer token from the Docker token flow: on a 401 whose
`WWW-Authenticate` is a Bearer challenge, the client asks the challenge's realm
for a token for the request's scope (sending the Basic credentials, if any) and
retries once. Tokens are kept per scope until they expire, so a pull storm
costs the upstream one token request, not one per pull.

Every failure to get an answer (refused, timed out, 5xx, 429, credentials
refused) comes out as `UpstreamUnavailable` naming the upstream; a 404 is left
to the caller, who knows what was missing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from cachetools import TLRUCache
from yarl import URL

from registry.config import UpstreamConfig
from registry.errors import UpstreamUnavailable
from registry.manifest.mediatypes import (
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA2,
    OCI_INDEX,
    OCI_MANIFEST,
)

log = logging.getLogger(__name__)

#: What we accept from upstream, whatever the client asked: the cache serves every client.
MANIFEST_ACCEPT = ", ".join(
    (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA2, DOCKER_SCHEMA1_SIGNED)
)
# The token spec's default lifetime when a token server does not say.
_DEFAULT_TOKEN_SECONDS = 60
# Tokens are dropped this long before they expire, so none expires in flight.
_TOKEN_MARGIN_SECONDS = 10
_TOKEN_SCOPES = 1024
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
# A tag list is read whole to be checked; Docker Hub's longest lists are a few hundred KiB.
_MAX_TAG_LIST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class UpstreamManifest:
    """A manifest as the upstream served it; `data` is empty for a HEAD."""

    digest: str
    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class UpstreamTags:
    """A page of an upstream repository's tags, and the `n` and `last` of its next page."""

    tags: list[str]
    next: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    seconds: float


class Upstream:
    """One configured upstream registry, spoken to over a shared aiohttp session."""

    def __init__(self, config: UpstreamConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self._session = session
        self._base = config.url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=config.connect_timeout, sock_read=config.read_timeout
        )
        self._basic = _basic_header(config.username, config.password) if config.username else None
        self._basic_wanted = False
        self._tokens: TLRUCache[str, _Token] = TLRUCache(
            maxsize=_TOKEN_SCOPES, ttu=_token_expiry, timer=time.monotonic
        )
        self._token_requests: dict[str, asyncio.Task[_Token]] = {}

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def host(self) -> str:
        """The upstream's `host[:port]`, as containerd names it in `?ns=`."""
        return urlsplit(self.config.url).netloc

    async def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest `reference` names upstream (None if the upstream does not say).

        Raises `UpstreamUnavailable`; a 404 returns None too (the caller then GETs).
        """
        headers = {"Accept": MANIFEST_ACCEPT}
        async with self._request("HEAD", repository, f"manifests/{reference}", headers) as r:
            if r.status == 404:
                return None
            self._check(r, repository, reference)
            return r.headers.get("Docker-Content-Digest")

    async def get_manifest(
        self, repository: str, reference: str, limit: int
    ) -> UpstreamManifest | None:
        """The manifest `reference` names upstream, or None if the upstream has none.

        Raises `UpstreamUnavailable`, also for a manifest larger than `limit` bytes.
        """
        headers = {"Accept": MANIFEST_ACCEPT}
        async with self._request("GET", repository, f"manifests/{reference}", headers) as r:
            if r.status == 404:
                return None
            self._check(r, repository, reference)
            data = await self._read(r, limit, f"manifest {reference}")
            return UpstreamManifest(
                digest=r.headers.get("Docker-Content-Digest", ""),
                media_type=r.headers.get("Content-Type", "").split(";")[0].strip(),
                data=data,
            )

    async def list_tags(
        self, repository: str, last: str | None, n: int | None
    ) -> UpstreamTags | None:
        """The page of the repository's tags the upstream answers to `last` and `n`; None if
        the upstream has no such repository.

        `next` is the `n` and `last` of the upstream's `Link` to its next page.
        Raises `UpstreamUnavailable`, also for an answer that is not a tag list.
        """
        params = {"n": str(n)} if n is not None else {}
        if last is not None:
            params["last"] = last
        headers = {"Accept": "application/json"}
        async with self._request("GET", repository, "tags/list", headers, params) as r:
            if r.status == 404:
                return None
            self._check(r, repository, "tags/list")
            data = await self._read(r, _MAX_TAG_LIST_BYTES, f"tag list of {repository}")
            try:
                document = json.loads(data)
                tags = document.get("tags") or []  # some registries send null for none
            except (ValueError, AttributeError):
                tags = None
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise UpstreamUnavailable(f"{self.name}: sent no tag list for {repository}")
            link = r.links.get("next")
            if link is None or not tags:
                return UpstreamTags(tags, None)
            query = URL(str(link.get("url", ""))).query
            following = {key: query[key] for key in ("n", "last") if query.get(key)}
            following.setdefault("last", tags[-1])
            return UpstreamTags(tags, following)

    async def _read(self, response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        """The body of `response`; `UpstreamUnavailable` if over `limit` bytes or broken off."""
        if (response.content_length or 0) > limit:
            raise UpstreamUnavailable(f"{self.name}: {what} is over {limit} bytes")
        data = bytearray()
        try:
            async for piece in response.content.iter_any():
                data += piece
                if len(data) > limit:
                    raise UpstreamUnavailable(f"{self.name}: {what} is over {limit} bytes")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise self._unavailable(e) from e
        return bytes(data)

    async def head_blob(self, repository: str, digest: str) -> int | None:
        """The size of blob `digest` upstream, by a HEAD; None if the upstream has no such blob.

        Raises `UpstreamUnavailable`, also for an answer that does not say the size.
        """
        async with self._request("HEAD", repository, f"blobs/{digest}", {}) as response:
            if response.status == 404:
                return None
            self._check(response, repository, digest)
            if response.content_length is None:
                raise UpstreamUnavailable(f"{self.name}: no size for {repository}@{digest}")
            return response.content_length

    @asynccontextmanager
    async def blob(self, repository: str, digest: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """The upstream's answer to GET of the blob, status checked; None body for a 404.

        The caller reads the body (errors reading it are aiohttp's and
        `TimeoutError`); a 404 is yielded as is, anything else not 200 raises
        `UpstreamUnavailable`.
        """
        async with self._request("GET", repository, f"blobs/{digest}", {}) as response:
            if response.status != 404:
                self._check(response, repository, digest)
            yield response

    @asynccontextmanager
    async def _request(
        self,
        method: str,
        repository: str,
        path: str,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request, authenticated as the upstream asks: at most one retry after a 401."""
        url = f"{self._base}/v2/{repository}/{path}"
        scope = f"repository:{repository}:pull"
        try:
            sent = self._tokens.get(scope)
            response = await self._send(method, url, scope, headers, params)
            if response.status == 401:
                challenge = response.headers.get("WWW-Authenticate", "")
                response.release()
                await self._answer_challenge(challenge, scope, sent)
                response = await self._send(method, url, scope, headers, params)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise self._unavailable(e) from e
        try:
            yield response
        finally:
            response.release()

    async def _send(
        self,
        method: str,
        url: str,
        scope: str,
        headers: dict[str, str],
        params: dict[str, str] | None,
    ) -> aiohttp.ClientResponse:
        token = self._tokens.get(scope)
        if token is not None:
            headers = {**headers, "Authorization": f"Bearer {token.value}"}
        elif self._basic_wanted and self._basic is not None:
            headers = {**headers, "Authorization": self._basic}
        return await self._session.request(
            method, url, headers=headers, params=params, timeout=self._timeout
        )

    async def _answer_challenge(self, challenge: str, scope: str, sent: _Token | None) -> None:
        """Prepare the retry of a request the upstream answered 401 with `challenge`.

        `sent` is the token the request carried: a newer one (got while it
        was in flight) is used as is.
        """
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic" and self._basic is not None:
            self._basic_wanted = True
            return
        if scheme.lower() != "bearer":
            raise UpstreamUnavailable(f"{self.name}: refused our credentials ({challenge!r})")
        cached = self._tokens.get(scope)
        if cached is not None and cached is not sent:
            return
        # One token request per scope at a time: a storm's first 401s share it.
        pending = self._token_requests.get(scope)
        if pending is None:
            pending = asyncio.create_task(
                self._fetch_token(dict(_CHALLENGE_PARAM.findall(params)), scope)
            )
            self._token_requests[scope] = pending
            pending.add_done_callback(lambda _: self._token_requests.pop(scope, None))
        self._tokens[scope] = await asyncio.shield(pending)

    async def _fetch_token(self, challenge: dict[str, str], scope: str) -> _Token:
        realm = challenge.get("realm")
        if not realm:
            raise UpstreamUnavailable(f"{self.name}: Bearer challenge without a realm")
        query = {"scope": challenge.get("scope", scope)}
        if "service" in challenge:
            query["service"] = challenge["service"]
        headers = {"Authorization": self._basic} if self._basic is not None else {}
        try:
            async with self._session.get(
                realm, params=query, headers=headers, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    raise UpstreamUnavailable(
                        f"{self.name}: token server {realm} answered {response.status}"
                    )
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise self._unavailable(e) from e
        value = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise UpstreamUnavailable(f"{self.name}: token server {realm} sent no token")
        seconds = body.get("expires_in", _DEFAULT_TOKEN_SECONDS)
        if not isinstance(seconds, int | float) or seconds <= 0:
            seconds = _DEFAULT_TOKEN_SECONDS
        log.debug("upstream %s: token for %s, %ss", self.name, scope, seconds)
        return _Token(value, float(seconds))

    def _check(self, response: aiohttp.ClientResponse, repository: str, reference: str) -> None:
        if response.status == 200:
            return
        raise UpstreamUnavailable(
            f"{self.name}: answered {response.status} for {repository}:{reference}"
        )

    def _unavailable(self, error: BaseException) -> UpstreamUnavailable:
        reason = str(error) or type(error).__name__
        return UpstreamUnavailable(f"{self.name}: unreachable: {reason}")


def _basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _token_expiry(_scope: str, token: _Token, now: float) -> float:
    return now + max(token.seconds - _TOKEN_MARGIN_SECONDS, token.seconds / 2)
