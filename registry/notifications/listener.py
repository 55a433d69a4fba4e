"""Decorators around the registry services that emit an event after each action succeeds.

As Distribution's `notifications/listener.go` wraps its repository services,
`NotifyingManifests`, `NotifyingBlobs` and `NotifyingUploads` wrap
`ManifestStore`, `BlobStore` and `UploadStore`: each public method runs the
inner store's and, once it returned, emits one event. A failed action emits
none. Emitting only queues (see `Notifier.emit`), so it costs the request no
I/O. Every other attribute is the inner store's own (bound to it), so calls
the store makes on itself never emit, and methods added to a store later pass
through untouched. The decorators stand in for the stores they wrap: they
have the same public methods with the same signatures.

- manifests: `get` is a pull (GET and HEAD alike, as in Distribution), `put`
  a push, `delete` a delete (of a tag, or of a manifest by digest);
- blobs: `stat` (what a GET reads) and `head` are pulls, as Distribution's
  `ServeBlob` sends one for GET and HEAD alike; `mount` is a mount, `delete`
  a delete;
- uploads: `finish` and `put` push a blob.

A GET's pull is emitted once the blob is found linked, before its bytes go
out, so a client that drops the download half-way has pulled (as in
Distribution, which emits after `ServeBlob` returns, and that ignores a
broken connection). In the rare race where another process deletes the
content between that check and the read, the GET answers 404 after its
pull was emitted.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from typing import Any

from registry.digest import Digest
from registry.manifest import parse_manifest
from registry.notifications.events import BLOB_MEDIA_TYPE, Target
from registry.reference import is_tag
from registry.services.blobs import BlobInfo, BlobStore
from registry.services.manifests import ManifestStore, PutResult, StoredManifest
from registry.services.uploads import UploadStore

Emit = Callable[[str, Target], None]


class NotifyingManifests:
    """`inner`, emitting pull, push and delete events of manifests."""

    def __init__(self, inner: ManifestStore, emit: Emit) -> None:
        self._inner = inner
        self._emit = emit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get(self, name: str, reference: str) -> StoredManifest:
        manifest = await self._inner.get(name, reference)
        tag = reference if is_tag(reference) else None
        target = Target(
            manifest.media_type, len(manifest.data), manifest.digest, name, "manifests", tag
        )
        self._emit("pull", target)
        return manifest

    async def put(
        self, name: str, reference: str, content_type: str | None, data: bytes
    ) -> PutResult:
        result = await self._inner.put(name, reference, content_type, data)
        # Parsed once more, only with notifications on: the store keeps no media type to return.
        media_type = parse_manifest(data, content_type).media_type
        tag = reference if is_tag(reference) else None
        self._emit("push", Target(media_type, len(data), result.digest, name, "manifests", tag))
        return result

    async def delete(self, name: str, reference: str) -> None:
        await self._inner.delete(name, reference)
        if is_tag(reference):
            target = Target("", 0, "", name, "manifests", tag=reference)
        else:
            target = Target("", 0, str(Digest.parse(reference)), name, "manifests")
        self._emit("delete", target)


class NotifyingBlobs:
    """`inner`, emitting pull, mount and delete events of blobs."""

    def __init__(self, inner: BlobStore, emit: Emit) -> None:
        self._inner = inner
        self._emit = emit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def stat(self, name: str, digest: Digest) -> BlobInfo:
        return self._pulled(name, await self._inner.stat(name, digest))

    async def head(self, name: str, digest: Digest) -> BlobInfo:
        return self._pulled(name, await self._inner.head(name, digest))

    def _pulled(self, name: str, blob: BlobInfo) -> BlobInfo:
        self._emit("pull", Target(BLOB_MEDIA_TYPE, blob.size, str(blob.digest), name, "blobs"))
        return blob

    async def mount(self, name: str, digest: Digest, source: str) -> BlobInfo | None:
        blob = await self._inner.mount(name, digest, source)
        if blob is not None:
            target = Target(
                BLOB_MEDIA_TYPE, blob.size, str(digest), name, "blobs", from_repository=source
            )
            self._emit("mount", target)
        return blob

    async def delete(self, name: str, digest: Digest) -> None:
        await self._inner.delete(name, digest)
        self._emit("delete", Target(BLOB_MEDIA_TYPE, 0, str(digest), name, "blobs"))


class NotifyingUploads:
    """`inner`, emitting a push event for each blob an upload stores."""

    def __init__(self, inner: UploadStore, emit: Emit) -> None:
        self._inner = inner
        self._emit = emit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def finish(
        self,
        name: str,
        upload_id: str,
        digest: Digest,
        body: AsyncIterable[bytes] | None,
        fresh: bool = False,
    ) -> BlobInfo:
        blob = await self._inner.finish(name, upload_id, digest, body, fresh=fresh)
        return self._pushed(name, blob)

    async def put(self, name: str, digest: Digest, body: AsyncIterable[bytes]) -> BlobInfo:
        return self._pushed(name, await self._inner.put(name, digest, body))

    def _pushed(self, name: str, blob: BlobInfo) -> BlobInfo:
        self._emit("push", Target(BLOB_MEDIA_TYPE, blob.size, str(blob.digest), name, "blobs"))
        return blob
