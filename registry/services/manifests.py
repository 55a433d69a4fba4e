"""Manifests of a repository: push, pull, delete, tags and referrers.

Manifest bytes are stored exactly as pushed, as a blob under `blobs/`, and
linked into the repository by a revision link; tags are Distribution's
`current` and `index` links. Reads are served from the tag index and a bounded
in-memory cache of manifest bytes, so a pull storm does not reach storage; a
miss in the index asks storage. A push is acknowledged only when every blob
and child manifest it references is confirmed by storage, not by a cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from registry import layout
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    PathNotFound,
    RegistryError,
    Unsupported,
)
from registry.manifest import Manifest, detect_media_type, parse_manifest
from registry.metrics import cache_tallies
from registry.reference import is_tag
from registry.services.blobs import BlobStore
from registry.services.feed import Change, ChangeFeed
from registry.services.index import TagIndex

log = logging.getLogger(__name__)

# Manifests are small (most under 10 KiB); 64 MiB holds the working set of a
# large registry and bounds memory whatever is pushed.
_CACHE_BYTES = 64 * 1024 * 1024
_REFERRERS_LOAD_CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """Manifest bytes as stored, with the media type they are served as."""

    digest: str
    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a manifest push stored: its digest, and its subject if it has one."""

    digest: str
    subject: str | None


@dataclass(frozen=True, slots=True)
class TagPage:
    """A page of a repository's tags, and the `n` and `last` asking for the next (None: no more)."""

    tags: list[str]
    next: dict[str, str] | None = None

    @classmethod
    def cut(cls, tags: list[str], n: int | None) -> TagPage:
        """The first `n` of `tags` (all without `n`), and the next page's query if more follow."""
        if n is None:
            return cls(tags)
        page = tags[:n]
        if len(tags) <= n or not page:
            return cls(page)
        return cls(page, {"n": str(n), "last": page[-1]})


class ManifestStore:
    """Stores, resolves, serves and deletes manifests and tags."""

    def __init__(
        self,
        driver: StorageDriver,
        index: TagIndex,
        blobs: BlobStore,
        delete_enabled: bool,
        feed: ChangeFeed | None = None,
    ) -> None:
        self._driver = driver
        self._index = index
        self._blobs = blobs
        self._delete_enabled = delete_enabled
        self._feed = feed
        self._cache: OrderedDict[str, StoredManifest] = OrderedDict()
        self._cache_size = 0
        # repository -> subject digest -> referrer digest -> descriptor, built
        # lazily on a repository's first referrers query and kept up to date.
        self._referrers: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self._referrers_loading: dict[str, asyncio.Lock] = {}
        self._hits, self._misses = cache_tallies("manifests")

    # -- reads ---------------------------------------------------------------

    async def _resolve(self, name: str, reference: str) -> str:
        """The digest `reference` (a tag or a digest) names in `name`; `ManifestUnknown` if none."""
        if is_tag(reference):
            digest = await self._index.find_tag(name, reference)
            if digest is None:
                raise ManifestUnknown(detail={"tag": reference})
            return digest
        digest = str(Digest.parse(reference))
        if not await self._index.find_manifest(name, digest):
            raise ManifestUnknown(detail={"digest": digest})
        return digest

    async def get(self, name: str, reference: str) -> StoredManifest:
        """The manifest `reference` names in `name`; `ManifestUnknown` if none."""
        digest = await self._resolve(name, reference)
        cached = self._cache.get(digest)
        if cached is not None:
            self._hits.add()
            self._cache.move_to_end(digest)
            return cached
        self._misses.add()
        try:
            data = await self._driver.get_content(layout.blob_data(Digest.parse(digest)))
        except PathNotFound as e:
            raise ManifestUnknown(detail={"digest": digest}) from e
        try:
            media_type = detect_media_type(data)
        except ManifestInvalid:
            # Stored by someone else and not JSON: still serve what is there.
            media_type = "application/octet-stream"
        return self._remember(StoredManifest(digest, media_type, data))

    async def tags(self, name: str, last: str | None = None, n: int | None = None) -> TagPage:
        """The tags of `name` in lexical order after `last`, at most `n` of them.

        `NameUnknown` if storage holds no repository `name`.
        """
        await self._index.load(name)
        if not self._index.has_repository(name):
            raise NameUnknown(detail={"name": name})
        # One more than asked tells whether a next page exists.
        return TagPage.cut(self._index.tags(name, last, None if n is None else n + 1), n)

    # -- writes --------------------------------------------------------------

    async def put(
        self, name: str, reference: str, content_type: str | None, data: bytes
    ) -> PutResult:
        """Validate and store a manifest under `reference` (a tag or its digest).

        Raises `ManifestInvalid`, `DigestInvalid` (the digest reference does not
        match the bytes) or `ManifestBlobUnknown` (a referenced blob or child
        manifest is not in the repository). Storage is written before the index.
        """
        manifest = parse_manifest(data, content_type)
        await self._index.load(name)
        payload = data if manifest.canonical is None else manifest.canonical
        tag: str | None = None
        if is_tag(reference):
            tag = reference
            digest = Digest.of(payload)
        else:
            claimed = Digest.parse(reference)
            digest = Digest.of(payload, claimed.algorithm)
            if digest != claimed:
                raise DigestInvalid(
                    "manifest digest does not match the reference", detail={"digest": reference}
                )
        await self._check_references(name, manifest)
        key = str(digest)
        await self._driver.put_content(layout.blob_data(digest), data)
        await self._driver.put_content(layout.manifest_revision_link(name, digest), key.encode())
        if tag is not None:
            await self._driver.put_content(layout.tag_index_link(name, tag, digest), key.encode())
            await self._driver.put_content(layout.tag_current_link(name, tag), key.encode())
        self._index.add_manifest(name, key)
        self._publish(Change("manifest", name, key))
        if tag is not None:
            self._index.set_tag(name, tag, key)
            self._publish(Change("tag", name, tag=tag))
        self._remember(StoredManifest(key, manifest.media_type, data))
        subject = manifest.subject
        if subject is not None and name in self._referrers:
            self._add_referrer(name, key, manifest, len(data))
        return PutResult(key, str(subject.digest) if subject is not None else None)

    async def delete(self, name: str, reference: str) -> None:
        """Delete a tag, or a manifest by digest together with every tag pointing at it."""
        if not self._delete_enabled:
            raise Unsupported("deletes are disabled on this registry")
        if is_tag(reference):
            if await self._index.find_tag(name, reference) is None:
                raise ManifestUnknown(detail={"tag": reference})
            await self._delete_tag(name, reference)
            return
        digest = await self._resolve(name, reference)
        for tag in sorted(await self._tags_pointing_at(name, digest)):
            await self._delete_tag(name, tag)
        # Already gone from storage means the index was behind: catch it up.
        with contextlib.suppress(PathNotFound):
            await self._driver.delete(layout.manifest_revision_dir(name, Digest.parse(digest)))
        self._index.remove_manifest(name, digest)
        self._publish(Change("manifest", name, digest))
        for subjects in self._referrers.get(name, {}).values():
            subjects.pop(digest, None)

    async def _tags_pointing_at(self, name: str, digest: str) -> set[str]:
        """Tags of `name` whose current link names `digest`, as storage says.

        Another process may have set one a moment ago, unknown here yet: the
        tags whose history names the digest are found in one listing, and
        those this index does not already know to point at it are read.
        """
        known = set(self._index.tags_of(name, digest))
        candidates: set[str] = set()
        try:
            async for info in self._driver.walk(layout.tags_dir(name)):
                entry = layout.parse_repository_path(info.path)
                if (
                    entry is not None
                    and entry.kind == "tag-history"
                    and f"{entry.algorithm}:{entry.hex}" == digest
                    and entry.tag not in known
                ):
                    candidates.add(entry.tag)
        except PathNotFound:
            return known
        for tag in candidates:
            if await self._index.refresh_tag(name, tag) == digest:
                known.add(tag)
        return known

    def forget_referrers(self, name: str) -> None:
        """Drop the referrers of `name` held here; the next query re-reads them.

        For manifests another process pushed or deleted.
        """
        self._referrers.pop(name, None)

    async def _delete_tag(self, name: str, tag: str) -> None:
        with contextlib.suppress(PathNotFound):
            await self._driver.delete(layout.tag_dir(name, tag))
        self._index.remove_tag(name, tag)
        self._publish(Change("tag", name, tag=tag))

    async def _check_references(self, name: str, manifest: Manifest) -> None:
        """Refuse with `ManifestBlobUnknown` unless every child manifest and blob of
        `manifest` is in `name` and its content is in storage now (not in a cache:
        it may have been collected a moment ago)."""

        async def child(digest: Digest) -> None:
            if not await self._index.find_manifest(name, str(digest)):
                raise ManifestBlobUnknown(detail={"digest": str(digest)})
            await stored(digest)

        async def blob(digest: Digest) -> None:
            key = str(digest)
            # Index entries that are not manifests (BuildKit's cache index) may
            # name blobs or manifests; image layers and configs must be blobs.
            if not (
                await self._index.find_layer(name, key)
                or await self._index.find_manifest(name, key)
            ):
                raise ManifestBlobUnknown(detail={"digest": key})
            await stored(digest)

        async def stored(digest: Digest) -> None:
            if await self._blobs.content_size(digest) is None:
                raise ManifestBlobUnknown(detail={"digest": str(digest)})

        checks = [child(c.digest) for c in manifest.manifests]
        checks += [blob(b.digest) for b in manifest.blobs]
        # All checks run; the first refusal (in manifest order) is the answer.
        results = await asyncio.gather(*checks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _publish(self, change: Change) -> None:
        if self._feed is not None:
            self._feed.publish(change)

    def _remember(self, stored: StoredManifest) -> StoredManifest:
        if stored.digest not in self._cache:
            self._cache_size += len(stored.data)
        self._cache[stored.digest] = stored
        self._cache.move_to_end(stored.digest)
        while self._cache_size > _CACHE_BYTES and self._cache:
            _, evicted = self._cache.popitem(last=False)
            self._cache_size -= len(evicted.data)
        return stored

    # -- referrers -----------------------------------------------------------

    async def referrers(
        self, name: str, subject: Digest, artifact_type: str | None = None
    ) -> list[dict[str, Any]]:
        """Descriptors of the manifests in `name` whose subject is `subject`, sorted by digest.

        With `artifact_type`, only those of that artifact type.
        """
        await self._index.load(name)
        if name not in self._referrers:
            await self._load_referrers(name)
        found = self._referrers.get(name, {}).get(str(subject), {})
        return [
            found[d]
            for d in sorted(found)
            if artifact_type is None or found[d].get("artifactType") == artifact_type
        ]

    async def _load_referrers(self, name: str) -> None:
        lock = self._referrers_loading.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self._referrers:
                return
            self._referrers[name] = {}
            limit = asyncio.Semaphore(_REFERRERS_LOAD_CONCURRENCY)

            async def load(digest: str) -> None:
                async with limit:
                    try:
                        stored = await self.get(name, digest)
                        manifest = parse_manifest(stored.data, stored.media_type)
                    except RegistryError as e:
                        log.warning("referrers: skipping %s@%s: %s", name, digest, e)
                        return
                if manifest.subject is not None:
                    self._add_referrer(name, digest, manifest, len(stored.data))

            await asyncio.gather(*(load(d) for d in self._index.manifests(name)))
        self._referrers_loading.pop(name, None)

    def _add_referrer(self, name: str, digest: str, manifest: Manifest, size: int) -> None:
        assert manifest.subject is not None
        descriptor: dict[str, Any] = {
            "mediaType": manifest.media_type,
            "digest": digest,
            "size": size,
        }
        if manifest.artifact_type:
            descriptor["artifactType"] = manifest.artifact_type
        if manifest.annotations:
            descriptor["annotations"] = manifest.annotations
        subjects = self._referrers.setdefault(name, {})
        subjects.setdefault(str(manifest.subject.digest), {})[digest] = descriptor
