"""The blob service of a pull-through cache: a blob missing from a proxied repository is fetched.

`ProxyBlobStore` decorates the registry's `BlobStore`; local repositories go
straight to it. In a proxied repository a blob that is not linked yet is, in
order: linked, if its content is already stored (fetched for another
repository, or by another process sharing the storage); joined, if a download
of it is in flight in this process; else downloaded once, in a `BlobFlight`
that every concurrent request for the digest follows. The download goes
through `UploadStore.put`, so the content is verified against its digest
before it is committed, and a failed or corrupt download leaves nothing under
the digest. The repositories that asked for it are linked once it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import BinaryIO

import aiohttp

from registry.digest import Digest
from registry.errors import BlobUnknown, DigestInvalid, UpstreamUnavailable
from registry.proxy.flight import BlobFlight
from registry.proxy.routing import Route, Router
from registry.services.blobs import BlobInfo, BlobStore
from registry.services.uploads import UploadStore

log = logging.getLogger(__name__)

# Pieces read from upstream: each is one storage write and one wake-up of the readers.
_PIECE = 256 * 1024
# How long a request joining a download waits for it to end before following it.
# Sent from storage, a blob costs the kernel's sendfile, not Python copies from the
# spool: in the bench's `mirror` cold storm (50 pulls of a 50 MiB layer, loopback
# upstream) the mirror's CPU per request fell from 9.5 ms (all 50 following) to 4.4 ms.
_FOLLOWERS_WAIT_SECONDS = 2.0


@dataclass(slots=True)
class _Fetch:
    flight: BlobFlight
    names: set[str] = field(default_factory=set)


class ProxyBlobStore(BlobStore):
    """`BlobStore` with read-through of proxied repositories (same methods, same contracts).

    `stat` (behind a GET) of a blob not stored starts its download and answers
    once the upstream said its size; `open` then follows the download;
    `open_file` and `redirect_url` are None until it is stored. `head` (behind
    a HEAD) starts nothing: it asks the upstream with a HEAD. Upstream errors
    come out of `stat` and `head` as `UpstreamUnavailable`; a blob the upstream
    does not have is `BlobUnknown`.
    """

    def __init__(
        self, inner: BlobStore, uploads: UploadStore, router: Router, spool_dir: str | None
    ) -> None:
        # The base class's state is not used: every method goes to `inner`.
        self._inner = inner
        self._uploads = uploads
        self._router = router
        self._spool_dir = spool_dir
        self._fetches: dict[str, _Fetch] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def stat(self, name: str, digest: Digest) -> BlobInfo:
        route = self._router.by_local_name(name)
        try:
            return await self._inner.stat(name, digest)
        except BlobUnknown:
            if route is None:
                raise
        key = str(digest)
        fetch = self._fetches.get(key)
        leader = False
        if fetch is None:
            size = await self._inner.content_size(digest)
            if size is not None:
                await self._inner.link(name, digest)
                return BlobInfo(digest, size)
            fetch = self._fetches.get(key)
            if fetch is None:
                fetch, leader = self._start(route, digest), True
        fetch.names.add(name)
        size = await fetch.flight.length()
        if not leader:
            # Served from storage once the download ends (the kernel sends a stored
            # blob: fifty followers of the spool cost more CPU than the download);
            # from the spool if it takes longer, so no client waits long for headers.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fetch.flight.outcome(), _FOLLOWERS_WAIT_SECONDS)
            if fetch.flight.ended:
                return await self._stored(name, digest)
        return BlobInfo(digest, size)

    async def head(self, name: str, digest: Digest) -> BlobInfo:
        """As `stat`, but a blob neither stored nor being fetched is asked of the upstream with a
        HEAD: a HEAD starts no download, and links nothing."""
        route = self._router.by_local_name(name)
        try:
            return await self._inner.head(name, digest)
        except BlobUnknown:
            if route is None:
                raise
        fetch = self._fetches.get(str(digest))
        if fetch is not None:
            return BlobInfo(digest, await fetch.flight.length())
        size = await self._inner.content_size(digest)
        if size is None:
            size = await route.upstream.head_blob(route.remote, str(digest))
        if size is None:
            raise BlobUnknown(detail={"digest": str(digest)})
        return BlobInfo(digest, size)

    async def _stored(self, name: str, digest: Digest) -> BlobInfo:
        """The blob just stored, linked in `name` (the download may have linked it already)."""
        try:
            return await self._inner.stat(name, digest)
        except BlobUnknown:
            await self._inner.link(name, digest)
            return await self._inner.stat(name, digest)

    async def open(
        self, blob: BlobInfo, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        flight = self._in_flight(blob.digest)
        if flight is None:
            return await self._inner.open(blob, offset, length)
        wanted = blob.size - offset if length is None else length
        return self._follow(flight, blob, offset, wanted)

    async def redirect_url(self, blob: BlobInfo) -> str | None:
        if self._in_flight(blob.digest) is not None:
            return None
        return await self._inner.redirect_url(blob)

    async def open_file(self, blob: BlobInfo) -> BinaryIO | None:
        if self._in_flight(blob.digest) is not None:
            return None
        return await self._inner.open_file(blob)

    def _in_flight(self, digest: Digest) -> BlobFlight | None:
        fetch = self._fetches.get(str(digest))
        return fetch.flight if fetch is not None and not fetch.flight.ended else None

    async def content_size(self, digest: Digest) -> int | None:
        return await self._inner.content_size(digest)

    def remember_size(self, digest: Digest, size: int) -> None:
        self._inner.remember_size(digest, size)

    def forget(self, digest: str) -> None:
        self._inner.forget(digest)

    async def link(self, name: str, digest: Digest) -> None:
        await self._inner.link(name, digest)

    async def mount(self, name: str, digest: Digest, source: str) -> BlobInfo | None:
        return await self._inner.mount(name, digest, source)

    async def delete(self, name: str, digest: Digest) -> None:
        await self._inner.delete(name, digest)

    async def _follow(
        self, flight: BlobFlight, blob: BlobInfo, offset: int, length: int
    ) -> AsyncGenerator[bytes, None]:
        """The bytes as the download brings them; from storage if it ended meanwhile."""
        if flight.attach():
            async with contextlib.aclosing(flight.read(offset, length)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        stream = await self._inner.open(blob, offset, length)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()

    # -- fetching ------------------------------------------------------------

    def _start(self, route: Route, digest: Digest) -> _Fetch:
        key = str(digest)
        fetch = _Fetch(BlobFlight(key, self._spool_dir))
        self._fetches[key] = fetch

        async def download(flight: BlobFlight) -> None:
            await self._download(route, digest, fetch)

        task = asyncio.create_task(fetch.flight.run(download))
        # Held here, not by any request: a client going away does not cancel it.
        self._tasks.add(task)
        task.add_done_callback(lambda _: self._finished(key, task))
        return fetch

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._fetches.pop(key, None)

    async def _download(self, route: Route, digest: Digest, fetch: _Fetch) -> None:
        upstream = route.upstream
        started = time.monotonic()
        async with upstream.blob(route.remote, str(digest)) as response:
            if response.status == 404:
                raise BlobUnknown(detail={"digest": str(digest)})
            fetch.flight.announce(response.content_length)

            async def body() -> AsyncIterator[bytes]:
                try:
                    async for piece in response.content.iter_chunked(_PIECE):
                        fetch.flight.append(piece)
                        yield piece
                except (aiohttp.ClientError, TimeoutError) as e:
                    raise UpstreamUnavailable(
                        f"{upstream.name}: download of {digest} broke off: {e}"
                    ) from e

            first = route.local
            try:
                await self._uploads.put(first, digest, body())
            except DigestInvalid as e:
                raise UpstreamUnavailable(
                    f"{upstream.name}: sent content that does not match {digest}"
                ) from e
        log.info(
            "cached %s in %s from %s: %d bytes in %.1f s",
            digest,
            first,
            upstream.name,
            fetch.flight.received,
            time.monotonic() - started,
        )
        for name in fetch.names - {first}:
            await self._inner.link(name, digest)
