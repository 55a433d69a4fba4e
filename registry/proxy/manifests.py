"""The manifest service of a pull-through cache: proxied manifests are fetched and kept.

`ProxyManifestStore` decorates the registry's `ManifestStore`; local
repositories go straight to it, and so do writes (the HTTP layer refuses
writes to proxied repositories before they get here).

In a proxied repository:
- a manifest by digest is fetched once and kept for good (content addressing);
- a tag is served from the cache for its upstream's `tag_ttl_seconds` after it
  was last checked, then revalidated with a HEAD upstream (which Docker Hub
  does not count against its pull limit), and fetched again only if it moved;
- when the upstream cannot answer (down, 5xx, 429, refused), a cached tag is
  served stale, logged and marked for a `Warning` header; an uncached one is
  `UpstreamUnavailable`. What the upstream says is not there is `ManifestUnknown`;
- the tag list is the upstream's, paged by the upstream (or here, if it
  ignores `n`); when the upstream cannot answer, the cached tags, stale as above.

Concurrent requests for the same repository and reference share one upstream
exchange, which runs in its own task so a client leaving does not cancel it.
Fetched manifests are written in Distribution's layout (content, revision
link, tag links) before the index learns of them and the change feed tells
the other processes sharing the storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cachetools import TTLCache

from registry import layout
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.errors import (
    DigestInvalid,
    ManifestUnknown,
    NameUnknown,
    PathNotFound,
    UpstreamUnavailable,
)
from registry.proxy import stale
from registry.proxy.routing import Route, Router
from registry.reference import is_tag
from registry.services.feed import Change, ChangeFeed
from registry.services.index import TagIndex
from registry.services.manifests import ManifestStore, PutResult, StoredManifest, TagPage

log = logging.getLogger(__name__)

# Tags whose freshness is remembered per upstream; beyond it the oldest are revalidated early.
_FRESH_TAGS = 100_000


class ProxyManifestStore(ManifestStore):
    """`ManifestStore` with read-through of proxied repositories (same methods, same contracts)."""

    def __init__(
        self,
        inner: ManifestStore,
        driver: StorageDriver,
        index: TagIndex,
        feed: ChangeFeed,
        router: Router,
        max_manifest_bytes: int,
    ) -> None:
        # The base class's state is not used: every method goes to `inner`.
        self._inner = inner
        self._driver = driver
        self._index = index
        self._changes = feed
        self._router = router
        self._limit = max_manifest_bytes
        self._fresh: dict[str, TTLCache[tuple[str, str], bool]] = {
            u.name: TTLCache(maxsize=_FRESH_TAGS, ttl=u.config.tag_ttl_seconds)
            for u in router.upstreams
            if u.config.tag_ttl_seconds > 0
        }
        self._exchanges: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def get(self, name: str, reference: str) -> StoredManifest:
        route = self._router.by_local_name(name)
        if route is None:
            return await self._inner.get(name, reference)
        if is_tag(reference):
            return await self._get_tag(route, name, reference)
        return await self._get_digest(route, name, reference)

    async def put(
        self, name: str, reference: str, content_type: str | None, data: bytes
    ) -> PutResult:
        return await self._inner.put(name, reference, content_type, data)

    async def delete(self, name: str, reference: str) -> None:
        await self._inner.delete(name, reference)

    async def referrers(
        self, name: str, subject: Digest, artifact_type: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._inner.referrers(name, subject, artifact_type)

    async def tags(self, name: str, last: str | None = None, n: int | None = None) -> TagPage:
        route = self._router.by_local_name(name)
        if route is None:
            return await self._inner.tags(name, last, n)
        try:
            listed = await route.upstream.list_tags(route.remote, last, n)
        except UpstreamUnavailable as e:
            try:
                cached = await self._inner.tags(name, last, n)
            except NameUnknown:
                raise e from None
            log.warning("listing the cached tags of %s, not the upstream's: %s", name, e)
            stale.warn(e.message)
            return cached
        if listed is None:
            raise NameUnknown(detail={"name": name, "upstream": route.upstream.name})
        ignored_n = n is not None and len(listed.tags) > n
        ignored_last = last is not None and any(t <= last for t in listed.tags)
        if ignored_n or ignored_last:
            # As Distribution 2.8 does: it sends every tag, unsorted. Paged here instead.
            after = sorted(t for t in listed.tags if last is None or t > last)
            return TagPage.cut(after, n)
        return TagPage(listed.tags, listed.next)

    def forget_referrers(self, name: str) -> None:
        self._inner.forget_referrers(name)

    # -- read-through --------------------------------------------------------

    async def _get_digest(self, route: Route, name: str, reference: str) -> StoredManifest:
        with contextlib.suppress(ManifestUnknown):
            return await self._inner.get(name, reference)
        await self._once(name, reference, lambda: self._fetch_digest(route, name, reference))
        return await self._inner.get(name, reference)

    async def _get_tag(self, route: Route, name: str, tag: str) -> StoredManifest:
        fresh = self._fresh.get(route.upstream.name)
        if fresh is not None and (name, tag) in fresh:
            with contextlib.suppress(ManifestUnknown):
                return await self._inner.get(name, tag)
        try:
            await self._once(name, tag, lambda: self._revalidate(route, name, tag))
        except UpstreamUnavailable as e:
            try:
                stored = await self._inner.get(name, tag)
            except ManifestUnknown:
                raise e from None
            log.warning("serving %s:%s from the cache, not revalidated: %s", name, tag, e)
            stale.warn(e.message)
            return stored
        return await self._inner.get(name, tag)

    async def _once(
        self, name: str, reference: str, exchange: Callable[[], Awaitable[None]]
    ) -> None:
        """Run `exchange` unless one for the same manifest is running; wait for it either way."""
        key = (name, reference)
        task = self._exchanges.get(key)
        if task is None:

            async def run() -> None:
                await exchange()

            task = asyncio.create_task(run())
            self._exchanges[key] = task
            task.add_done_callback(lambda done: self._ended(key, done))
        await asyncio.shield(task)

    def _ended(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._exchanges.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: its waiters may all have gone

    async def _revalidate(self, route: Route, name: str, tag: str) -> None:
        cached = await self._index.find_tag(name, tag)
        current = _parse_or_none(await route.upstream.head_manifest(route.remote, tag) or "")
        if current is not None and await self._adopt(name, current):
            if str(current) != cached:
                await self._store_tag(name, tag, current)
            self._mark_fresh(route, name, tag)
            return
        await self._fetch(route, name, tag, tag)
        self._mark_fresh(route, name, tag)

    async def _adopt(self, name: str, digest: Digest) -> bool:
        """Whether manifest `digest` is in `name` now, made so from storage if it is stored.

        Another process, or another repository, may have stored it: content
        addressing makes it the same manifest, and spares the upstream a GET.
        """
        if await self._index.find_manifest(name, str(digest)):
            return True
        try:
            data = await self._driver.get_content(layout.blob_data(digest))
        except PathNotFound:
            return False
        if Digest.of(data, digest.algorithm) != digest:
            return False
        await self._store(name, digest, data)
        return True

    def _mark_fresh(self, route: Route, name: str, tag: str) -> None:
        fresh = self._fresh.get(route.upstream.name)
        if fresh is not None:
            fresh[(name, tag)] = True

    async def _fetch_digest(self, route: Route, name: str, reference: str) -> None:
        if not await self._adopt(name, Digest.parse(reference)):
            await self._fetch(route, name, reference, None)

    async def _fetch(self, route: Route, name: str, reference: str, tag: str | None) -> None:
        """Get the manifest from upstream, check its digest and store it (and `tag`)."""
        upstream = route.upstream
        got = await upstream.get_manifest(route.remote, reference, self._limit)
        if got is None:
            what = "tag" if tag is not None else "digest"
            raise ManifestUnknown(detail={what: reference, "upstream": upstream.name})
        claimed = Digest.parse(reference) if tag is None else _parse_or_none(got.digest)
        digest = Digest.of(got.data, claimed.algorithm if claimed else "sha256")
        if claimed is not None and claimed != digest:
            raise UpstreamUnavailable(
                f"{upstream.name}: manifest {route.remote}:{reference} does not match {claimed}"
            )
        await self._store(name, digest, got.data)
        if tag is not None:
            await self._store_tag(name, tag, digest)
        log.info("cached manifest %s@%s from %s", name, digest, upstream.name)

    async def _store(self, name: str, digest: Digest, data: bytes) -> None:
        """Content and revision link first, then the index and the other processes."""
        key = str(digest)
        if await self._index.find_manifest(name, key):
            return
        await self._driver.put_content(layout.blob_data(digest), data)
        await self._driver.put_content(layout.manifest_revision_link(name, digest), key.encode())
        self._index.add_manifest(name, key)
        self._changes.publish(Change("manifest", name, key))

    async def _store_tag(self, name: str, tag: str, digest: Digest) -> None:
        key = str(digest)
        await self._driver.put_content(layout.tag_index_link(name, tag, digest), key.encode())
        await self._driver.put_content(layout.tag_current_link(name, tag), key.encode())
        self._index.set_tag(name, tag, key)
        self._changes.publish(Change("tag", name, tag=tag))


def _parse_or_none(text: str) -> Digest | None:
    try:
        return Digest.parse(text) if text else None
    except DigestInvalid:
        return None
