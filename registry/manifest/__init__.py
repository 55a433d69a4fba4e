"""Parsing and validating image manifests of every format the registry stores.

Docker schema1 (signed and unsigned), Docker schema2 and manifest lists, OCI
image manifests and indexes (artifacts, referrers and BuildKit caches
included). `parse_manifest` is the only entry; each format lives in its own
module, and `registry.manifest.mediatypes` names the media types.
"""

from __future__ import annotations

from registry.manifest.descriptor import Descriptor, Manifest
from registry.manifest.mediatypes import MANIFEST_MEDIA_TYPES
from registry.manifest.parse import MAX_MANIFEST_SIZE, detect_media_type, parse_manifest

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "MAX_MANIFEST_SIZE",
    "Descriptor",
    "Manifest",
    "detect_media_type",
    "parse_manifest",
]
