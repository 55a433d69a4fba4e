"""The one entry to manifest parsing: choose the format by Content-Type or body, then parse.

How the format is chosen, in order:

1. A Content-Type (parameters such as `; charset=utf-8` ignored, case folded)
   that is one of `MANIFEST_MEDIA_TYPES` selects that format.
2. A missing, empty or generic one (`application/json`,
   `application/octet-stream`) defers to `detect_media_type` on the body.
3. Any other Content-Type is an unsupported manifest media type, whatever the
   body says: the client named a format this registry does not know. That is
   `ManifestInvalid` (400), as in Distribution; `Unsupported` is 405, which
   clients read as "this registry does not take pushes".

The body must then agree with the chosen type: a `mediaType` field must equal
it, and without one, the body's shape must read as that type (schema2 and
manifest lists must declare theirs; signed schema1 has `signatures`, unsigned
has none). So the media type a manifest is stored with is always the one
`detect_media_type` finds in its bytes, and it is served the same way after a
restart, when only the bytes are left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from registry.errors import ManifestInvalid
from registry.manifest import manifestlist, ocischema, schema1, schema2
from registry.manifest.descriptor import Manifest
from registry.manifest.mediatypes import (
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA2,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_RE,
    OCI_INDEX,
    OCI_MANIFEST,
)
from registry.manifest.validation import load_object

#: The largest manifest accepted; the HTTP layer refuses larger bodies before reading them.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024

_GENERIC_CONTENT_TYPES = frozenset({"", "application/json", "application/octet-stream"})

# Every manifest media type but signed schema1, which `schema1.parse_signed` parses from the bytes.
_PARSERS: dict[str, Callable[[dict[str, Any]], Manifest]] = {
    DOCKER_SCHEMA1: schema1.parse_unsigned,
    DOCKER_SCHEMA2: schema2.parse,
    DOCKER_MANIFEST_LIST: manifestlist.parse,
    OCI_MANIFEST: ocischema.parse_image_manifest,
    OCI_INDEX: ocischema.parse_image_index,
}


def parse_manifest(data: bytes, content_type: str | None) -> Manifest:
    """Parse and validate the manifest `data` pushed with `content_type`.

    Raises `ManifestInvalid` (and nothing else) when `data` is over
    `MAX_MANIFEST_SIZE`, not UTF-8 JSON, not an object, of an unsupported media
    type, contradicts `content_type`, or breaks its format's rules (missing or
    mistyped fields, wrong schemaVersion, bad digests, negative sizes...).
    The module docstring says how `content_type` chooses the format. The
    result's `media_type` is what `detect_media_type(data)` answers. Whether
    the referenced blobs and manifests exist is the caller's concern.
    """
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestInvalid(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_SIZE} limit")
    document = load_object(data)
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type in _GENERIC_CONTENT_TYPES:
        media_type = _detect(document)
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise ManifestInvalid(
            f"unsupported manifest media type {media_type[:200]!r}",
            detail={"mediaType": media_type[:200]},
        )
    _check_body_agrees(document, media_type)
    if media_type == DOCKER_SCHEMA1_SIGNED:
        # The one format whose identity is not the whole of its bytes needs them.
        return schema1.parse_signed(document, data)
    return _PARSERS[media_type](document)


def detect_media_type(data: bytes) -> str:
    """The media type of manifest bytes read back without one (e.g. written by Distribution).

    The body's `mediaType` if it is a syntactically valid media type (so the
    result is always safe as a Content-Type header); else by shape:
    `schemaVersion` 1 is signed schema1 with `signatures`, unsigned without;
    a `manifests` field makes an OCI index; anything else an OCI manifest.
    Never raises for a JSON object; raises `ManifestInvalid` for anything else.
    """
    return _detect(load_object(data))


def _detect(document: dict[str, Any]) -> str:
    declared = document.get("mediaType")
    if isinstance(declared, str) and MEDIA_TYPE_RE.fullmatch(declared):
        return declared
    return _type_by_shape(document)


def _type_by_shape(document: dict[str, Any]) -> str:
    version = document.get("schemaVersion")
    # `True == 1` in Python, but JSON's true is no schema version.
    if version == 1 and not isinstance(version, bool):
        return DOCKER_SCHEMA1_SIGNED if "signatures" in document else DOCKER_SCHEMA1
    return OCI_INDEX if "manifests" in document else OCI_MANIFEST


def _check_body_agrees(document: dict[str, Any], media_type: str) -> None:
    declared = document.get("mediaType")
    if declared is not None:
        if declared != media_type:
            raise ManifestInvalid(
                f"manifest mediaType {str(declared)[:200]!r} does not match {media_type!r}, "
                "the media type it was pushed as",
                detail={"mediaType": media_type},
            )
        return
    by_shape = _type_by_shape(document)
    if by_shape != media_type:
        raise ManifestInvalid(
            f"manifest has no mediaType and reads as {by_shape!r}, not {media_type!r}",
            detail={"mediaType": media_type},
        )
