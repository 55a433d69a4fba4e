"""What each page shows, read from the registry's services (the index, manifests, blobs).

Listings come from the in-memory index alone. A tag's summary (kind, size,
platforms) needs its manifest, and for an image its config blob, and for a
list its children: summaries are kept per digest in a bounded LRU cache, since
content under a digest never changes, so a repository page seen once is then
answered from memory. Config blobs are read only up to `MAX_CONFIG_BYTES`.

Push times are the index's (`TagIndex.pushed_at`, `last_push`): when a tag
was last pointed at its digest; None ("unknown") where it has none.

Manifests and blobs are read as stored (`Registry.stored_manifests`,
`stored_blobs`): looking at a page is no pull, so it sends no pull event,
records no pull time for retention rules, and fetches nothing from a
pull-through cache's upstream; what a mirror has not cached shows as unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import LRUCache

from registry.digest import Digest
from registry.errors import RegistryError
from registry.services.index import TagIndex
from registry.services.manifests import StoredManifest
from registry.services.registry import Registry
from registry.ui import views

#: Image configs are small (a few KiB); a larger one is not read, only linked.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
#: Children of a list whose sizes are added up for the list's size; past that it is unknown.
MAX_SUMMED_CHILDREN = 64
_SUMMARIES = 10_000
_CONFIGS = 1_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing: its rows, and the cursor of the next page (None: the last)."""

    rows: tuple[T, ...]
    next_after: str | None


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    name: str
    tags: int
    last_push: float | None


@dataclass(frozen=True, slots=True)
class Summary:
    """What a repository page says of one manifest."""

    kind: views.Kind
    size: int | None
    platforms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TagRow:
    tag: str
    digest: str
    summary: Summary | None
    pushed_at: float | None


@dataclass(frozen=True, slots=True)
class Referrer:
    digest: str
    media_type: str
    artifact_type: str
    size: int | None
    annotations: tuple[tuple[str, str], ...]


#: Referrers grouped by artifact type, groups in order of artifact type.
Referrers = tuple[tuple[str, tuple[Referrer, ...]], ...]


@dataclass(frozen=True, slots=True)
class ManifestPage:
    """Everything the manifest page shows of `digest` in `name`."""

    name: str
    digest: str
    document: views.Document
    size: int | None
    config: views.Config | None
    layers: views.Cut[views.Layer]
    entries: views.Cut[views.Entry]
    history: views.Cut[views.HistoryRow]
    referrers: Referrers
    tags: tuple[tuple[str, float | None], ...]
    raw_json: str
    raw_cut: bool


class Reader:
    """Reads pages from one registry; holds the caches of summaries and configs."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._summaries: LRUCache[str, Summary] = LRUCache(_SUMMARIES)
        self._configs: LRUCache[str, views.Config] = LRUCache(_CONFIGS)

    @property
    def index(self) -> TagIndex:
        return self._registry.index

    async def repositories(
        self, visible: Callable[[str], bool], query: str, after: str | None, n: int
    ) -> Page[RepositoryRow]:
        """Up to `n` repositories after `after` whose name contains `query` and are `visible`."""
        names: list[str] = []
        more = False
        for name in self.index.repositories(after):
            if query in name and visible(name):
                if len(names) == n:
                    more = True
                    break
                names.append(name)
        await asyncio.gather(*(self.index.load(name) for name in names))
        rows = tuple(
            RepositoryRow(name, len(self.index.tags(name)), self.index.last_push(name))
            for name in names
        )
        return Page(rows, names[-1] if more else None)

    async def tags(self, name: str, after: str | None, n: int) -> Page[TagRow]:
        """Up to `n` tags of `name` after `after`, each with its manifest's summary."""
        await self.index.load(name)
        tags = self.index.tags(name, after, n + 1)
        shown = tags[:n]
        digests = [self.index.resolve_tag(name, tag) or "" for tag in shown]
        summaries = await asyncio.gather(*(self.summary(name, digest) for digest in digests))
        rows = tuple(
            TagRow(tag, digest, summary, self.index.pushed_at(name, tag))
            for tag, digest, summary in zip(shown, digests, summaries, strict=True)
        )
        return Page(rows, shown[-1] if len(tags) > n else None)

    async def summary(self, name: str, digest: str) -> Summary | None:
        """The kind, size and platforms of manifest `digest` of `name`; None if unreadable."""
        cached = self._summaries.get(digest)
        if cached is not None:
            return cached
        try:
            stored = await self._registry.stored_manifests.get(name, digest)
        except RegistryError:
            return None
        document = views.read_manifest(stored.data, stored.media_type)
        platforms: tuple[str, ...] = ()
        if document.kind.is_list:
            platforms = tuple(str(e.platform) for e in document.entries if e.platform)
        else:
            config = await self.config(name, stored, document)
            if config is not None and str(config.platform):
                platforms = (str(config.platform),)
        summary = Summary(document.kind, await self._size(name, document), platforms)
        self._summaries[digest] = summary
        return summary

    async def _size(self, name: str, document: views.Document) -> int | None:
        if not document.kind.is_list:
            return document.size
        children = [entry for entry in document.entries if entry.is_manifest]
        if len(children) > MAX_SUMMED_CHILDREN:
            return None
        summaries = await asyncio.gather(*(self.summary(name, e.digest) for e in children))
        sizes = [s.size for s in summaries if s is not None and s.size is not None]
        # A child not stored (a mirror caches only the platforms pulled) makes the sum unknown,
        # not smaller.
        return sum(sizes) if len(sizes) == len(children) else None

    async def config(
        self, name: str, stored: StoredManifest, document: views.Document
    ) -> views.Config | None:
        """The config of image manifest `stored` (read as `document`), or None if it has none
        or it cannot be read (missing, or over `MAX_CONFIG_BYTES`).

        Schema1 carries its config inline; the other formats name a config blob.
        """
        if document.kind.label == "schema1":
            return views.schema1_config(stored.data)
        if not document.kind.is_image or document.config_media_type not in views.IMAGE_CONFIG_TYPES:
            return None
        digest = document.config_digest
        cached = self._configs.get(digest)
        if cached is not None:
            return cached
        data = await self._read_small_blob(name, digest)
        if data is None:
            return None
        config = views.read_config(data)
        self._configs[digest] = config
        return config

    async def _read_small_blob(self, name: str, digest: str) -> bytes | None:
        blobs = self._registry.stored_blobs
        try:
            info = await blobs.stat(name, Digest.parse(digest))
            if info.size > MAX_CONFIG_BYTES:
                return None
            stream = await blobs.open(info)
            data = bytearray()
            try:
                async for piece in stream:
                    data += piece
            finally:
                await stream.aclose()
        except RegistryError:
            return None
        return bytes(data)

    async def manifest(self, name: str, reference: str, page: int) -> ManifestPage:
        """The manifest page of `reference` (tag or digest) in `name`; `page` of its tables.

        Raises `ManifestUnknown` (or `DigestInvalid`) as the manifest API does.
        """
        manifests = self._registry.stored_manifests
        stored = await manifests.get(name, reference)
        document = views.read_manifest(stored.data, stored.media_type)
        config = await self.config(name, stored, document)
        history = config.history if config is not None else ()
        layers = document.layers
        if document.kind.label == "image":
            layers = views.with_commands(layers, history)
        start = page * views.PAGE_ROWS
        summary = await self.summary(name, stored.digest)
        raw_json, raw_cut = views.pretty_json(stored.data)
        tags = sorted(self.index.tags_of(name, stored.digest))
        return ManifestPage(
            name=name,
            digest=stored.digest,
            document=document,
            size=summary.size if summary is not None else document.size,
            config=config,
            layers=views.cut(layers, start, views.PAGE_ROWS),
            entries=views.cut(document.entries, start, views.PAGE_ROWS),
            history=views.cut(history, start, views.PAGE_ROWS),
            referrers=await self._referrers(name, stored.digest),
            tags=tuple((tag, self.index.pushed_at(name, tag)) for tag in tags),
            raw_json=raw_json,
            raw_cut=raw_cut,
        )

    async def _referrers(self, name: str, digest: str) -> Referrers:
        found = await self._registry.stored_manifests.referrers(name, Digest.parse(digest))
        groups: dict[str, list[Referrer]] = {}
        for descriptor in found:
            referrer = Referrer(
                digest=str(descriptor.get("digest", "")),
                media_type=str(descriptor.get("mediaType", "")),
                artifact_type=str(descriptor.get("artifactType", "")),
                size=views.json_size(descriptor.get("size")),
                annotations=views.pairs(descriptor.get("annotations")),
            )
            groups.setdefault(referrer.artifact_type, []).append(referrer)
        return tuple((kind, tuple(rows)) for kind, rows in sorted(groups.items()))
