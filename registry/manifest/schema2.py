"""Docker image manifest schema 2 (`application/vnd.docker.distribution.manifest.v2+json`)."""

from __future__ import annotations

from typing import Any

from registry.manifest.descriptor import DESCRIPTOR_SCHEMA, Manifest
from registry.manifest.mediatypes import DOCKER_SCHEMA2
from registry.manifest.references import image_blobs
from registry.manifest.validation import compile_schema

# `mediaType` is required, as Distribution requires it: without it the bytes
# read back from storage would pass for an OCI manifest.
_check = compile_schema(
    {
        "type": "object",
        "required": ["schemaVersion", "mediaType", "config", "layers"],
        "properties": {
            "schemaVersion": {"type": "integer", "enum": [2]},
            "mediaType": {"type": "string"},
            "config": DESCRIPTOR_SCHEMA,
            "layers": {"type": "array", "items": DESCRIPTOR_SCHEMA},
        },
    },
    "Docker schema2 manifest",
)


def parse(document: dict[str, Any]) -> Manifest:
    """Check a decoded schema2 manifest and list its blobs; raise `ManifestInvalid`.

    The caller has checked that `mediaType`, if present, is schema2's.
    """
    _check(document)
    config = document["config"]
    return Manifest(
        media_type=DOCKER_SCHEMA2,
        blobs=image_blobs(config, document["layers"]),
        manifests=(),
        subject=None,
        artifact_type=config["mediaType"],
        annotations=None,
    )
