"""OCI image manifest and image index (image-spec v1.1), artifacts and referrers included.

An OCI image manifest may carry any config media type (artifacts use
`application/vnd.oci.empty.v1+json`, BuildKit's cache `application/vnd.buildkit.cacheconfig.v0`),
and an index any entry media type (BuildKit's legacy cache lists blobs in it).
"""

from __future__ import annotations

from typing import Any

from registry.manifest.descriptor import (
    ANNOTATIONS_SCHEMA,
    DESCRIPTOR_SCHEMA,
    MEDIA_TYPE_SCHEMA,
    Descriptor,
    Manifest,
    to_descriptor,
)
from registry.manifest.mediatypes import OCI_INDEX, OCI_MANIFEST
from registry.manifest.references import image_blobs, index_references
from registry.manifest.validation import compile_schema

_COMMON_PROPERTIES: dict[str, Any] = {
    "schemaVersion": {"type": "integer", "enum": [2]},
    "mediaType": {"type": "string"},
    "artifactType": MEDIA_TYPE_SCHEMA,
    "subject": DESCRIPTOR_SCHEMA,
    "annotations": ANNOTATIONS_SCHEMA,
}

_check_manifest = compile_schema(
    {
        "type": "object",
        "required": ["schemaVersion", "config", "layers"],
        "properties": {
            **_COMMON_PROPERTIES,
            "config": DESCRIPTOR_SCHEMA,
            "layers": {"type": "array", "items": DESCRIPTOR_SCHEMA},
        },
    },
    "OCI image manifest",
)

_check_index = compile_schema(
    {
        "type": "object",
        "required": ["schemaVersion", "manifests"],
        "properties": {
            **_COMMON_PROPERTIES,
            "manifests": {"type": "array", "items": DESCRIPTOR_SCHEMA},
        },
    },
    "OCI image index",
)


def parse_image_manifest(document: dict[str, Any]) -> Manifest:
    """Check a decoded OCI image manifest and list its blobs; raise `ManifestInvalid`.

    The caller has checked that `mediaType`, if present, is the OCI manifest's.
    """
    _check_manifest(document)
    config = document["config"]
    return Manifest(
        media_type=OCI_MANIFEST,
        blobs=image_blobs(config, document["layers"]),
        manifests=(),
        subject=_subject(document),
        artifact_type=document.get("artifactType") or config["mediaType"],
        annotations=document.get("annotations"),
    )


def parse_image_index(document: dict[str, Any]) -> Manifest:
    """Check a decoded OCI image index and split its entries; raise `ManifestInvalid`.

    The caller has checked that `mediaType`, if present, is the OCI index's.
    """
    _check_index(document)
    blobs, manifests = index_references(document["manifests"])
    return Manifest(
        media_type=OCI_INDEX,
        blobs=blobs,
        manifests=manifests,
        subject=_subject(document),
        artifact_type=document.get("artifactType"),
        annotations=document.get("annotations"),
    )


def _subject(document: dict[str, Any]) -> Descriptor | None:
    subject = document.get("subject")
    return None if subject is None else to_descriptor(subject, "subject")
