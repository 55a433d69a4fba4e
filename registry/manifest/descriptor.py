"""The value objects every manifest format parses into, and the descriptor schema they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.digest import Digest
from registry.errors import DigestInvalid, ManifestInvalid, Unsupported
from registry.manifest.mediatypes import MEDIA_TYPE_PATTERN


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A reference to content by media type, digest and size.

    `size` is 0 where the format does not record it (schema1 `blobSum`s).
    `annotations` is the parsed JSON object itself: treat it as read-only.
    """

    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """What the registry needs to know of a manifest it stores.

    - `media_type`: the effective media type, served as Content-Type on GET.
      It is always what `detect_media_type` finds in the same bytes, so a
      manifest read back from storage is served as it was pushed.
    - `blobs`: what must exist in the repository as blobs: configs, layers
      (less foreign layers fetched from their `urls`), schema1 `blobSum`s, and
      index entries whose media type is not a manifest media type (BuildKit's
      cache index). Each digest appears once, in the order first referenced.
    - `manifests`: index or list entries with a manifest media type, which must
      exist in the repository as manifests; each digest once.
    - `subject`: the manifest this one refers to (referrers API); it need not exist.
    - `artifact_type`: `artifactType` if set, else an image manifest's config
      media type, else None.
    - `annotations`: the top-level annotations (OCI only); read-only.
    - `canonical`: for signed schema1 only, the bytes whose digest identifies
      the manifest; None means the whole pushed bytes do.
    """

    media_type: str
    blobs: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str] | None
    canonical: bytes | None = None


MEDIA_TYPE_SCHEMA: dict[str, Any] = {"type": "string", "pattern": MEDIA_TYPE_PATTERN}
ANNOTATIONS_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}

#: A descriptor as the OCI image-spec and Docker's schema2 write it. Fields we
#: do not read (`platform`, `data`, vendor extensions) are not checked.
DESCRIPTOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["mediaType", "digest", "size"],
    "properties": {
        "mediaType": MEDIA_TYPE_SCHEMA,
        "digest": {"type": "string"},
        # JSON has one number type: 1.0 is an integer, 1.5 is not. The spec's size is an int64.
        "size": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        "urls": {"type": "array", "items": {"type": "string"}},
        "artifactType": MEDIA_TYPE_SCHEMA,
        "annotations": ANNOTATIONS_SCHEMA,
    },
}


def parse_digest(text: str, where: str) -> Digest:
    """`Digest.parse(text)`, failing with `ManifestInvalid` that names the field `where`."""
    try:
        return Digest.parse(text)
    except (DigestInvalid, Unsupported) as e:
        raise ManifestInvalid(f"{where}: {e.message}", detail={"field": where}) from e


def to_descriptor(raw: dict[str, Any], where: str) -> Descriptor:
    """The `Descriptor` of a JSON object already checked against `DESCRIPTOR_SCHEMA`.

    Raises `ManifestInvalid` for a malformed or unsupported digest.
    """
    return Descriptor(
        media_type=raw["mediaType"],
        digest=parse_digest(raw["digest"], f"{where}.digest"),
        size=int(raw["size"]),
        artifact_type=raw.get("artifactType"),
        annotations=raw.get("annotations"),
    )


def unique(descriptors: list[Descriptor]) -> tuple[Descriptor, ...]:
    """`descriptors` without repeated digests, keeping the first of each."""
    first: dict[Digest, Descriptor] = {}
    for descriptor in descriptors:
        first.setdefault(descriptor.digest, descriptor)
    return tuple(first.values())
