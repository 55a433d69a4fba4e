"""Docker manifest list (`application/vnd.docker.distribution.manifest.list.v2+json`).

BuildKit's legacy registry cache may be written as a manifest list whose
entries are layer and cache-config blobs; those entries end up in `blobs`.
"""

from __future__ import annotations

from typing import Any

from registry.manifest.descriptor import DESCRIPTOR_SCHEMA, Manifest
from registry.manifest.mediatypes import DOCKER_MANIFEST_LIST
from registry.manifest.references import index_references
from registry.manifest.validation import compile_schema

# `mediaType` is required, as Distribution requires it: without it the bytes
# read back from storage would pass for an OCI index. Entries' `platform` is
# not checked: BuildKit's cache entries have none, and the registry never reads it.
_check = compile_schema(
    {
        "type": "object",
        "required": ["schemaVersion", "mediaType", "manifests"],
        "properties": {
            "schemaVersion": {"type": "integer", "enum": [2]},
            "mediaType": {"type": "string"},
            "manifests": {"type": "array", "items": DESCRIPTOR_SCHEMA},
        },
    },
    "Docker manifest list",
)


def parse(document: dict[str, Any]) -> Manifest:
    """Check a decoded manifest list and split its entries; raise `ManifestInvalid`.

    The caller has checked that `mediaType` is the manifest list's.
    """
    _check(document)
    blobs, manifests = index_references(document["manifests"])
    return Manifest(
        media_type=DOCKER_MANIFEST_LIST,
        blobs=blobs,
        manifests=manifests,
        subject=None,
        artifact_type=None,
        annotations=None,
    )
