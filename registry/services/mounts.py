"""Cross-repository mounts without a named source: find a repository the client may read.

The distribution-spec lets a client send `POST /blobs/uploads/?mount=<digest>`
without `from`; the registry may then link the blob from any repository
holding it. Only repositories the client may pull are considered, so a mount
never reveals or copies a blob the client could not fetch itself.
"""

from __future__ import annotations

from collections.abc import Callable

from registry.digest import Digest
from registry.services.blobs import BlobInfo, BlobStore
from registry.services.index import TagIndex

#: Whether the client may pull a repository, by name.
Readable = Callable[[str], bool]


async def mount_from_any(
    index: TagIndex, blobs: BlobStore, name: str, digest: Digest, readable: Readable
) -> BlobInfo | None:
    """Link `digest` into `name` from the first readable repository that links it.

    None, with nothing linked, if no content is stored under `digest` (one
    storage stat: the usual case for a new layer, which spares the search) or
    no readable repository links it. Repositories are searched in name order,
    `name` itself first, in the tag index (each one not yet loaded is loaded);
    the one found is confirmed by storage (`BlobStore.mount`). A link another
    process wrote that the index has not heard of yet is missed: the client
    then uploads the blob, which is never wrong.
    """
    if await blobs.content_size(digest) is None:
        return None
    for source in [name, *index.repositories()]:
        if source != name and not readable(source):
            continue
        await index.load(source)
        if index.has_layer(source, str(digest)):
            return await blobs.mount(name, digest, source)
    return None
