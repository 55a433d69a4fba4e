"""The media types the manifest parsers know, named once so no module spells them twice."""

from __future__ import annotations

import re

DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

#: Every media type `parse_manifest` accepts; a descriptor of one of these in an
#: index names a manifest, any other media type names a blob.
MANIFEST_MEDIA_TYPES: frozenset[str] = frozenset(
    {
        DOCKER_SCHEMA1,
        DOCKER_SCHEMA1_SIGNED,
        DOCKER_SCHEMA2,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        OCI_INDEX,
    }
)

#: What schema1 layer references are, as Distribution reports them: the format has no field for it.
DOCKER_SCHEMA1_LAYER = "application/vnd.docker.container.image.rootfs.diff+x-gtar"

#: Layers clients fetch from their `urls`, so the registry need not hold them.
EXTERNAL_LAYER_MEDIA_TYPES: frozenset[str] = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

#: RFC 6838 `type/subtype` as the OCI image-spec's schemas write it; `$` is escaped inside the
#: classes because fastjsonschema rewrites every bare `$` into an end-of-string anchor.
_MEDIA_TYPE = r"[A-Za-z0-9][A-Za-z0-9!#\$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#\$&^_.+-]{0,126}"
MEDIA_TYPE_PATTERN = f"^{_MEDIA_TYPE}$"
MEDIA_TYPE_RE = re.compile(_MEDIA_TYPE)  # unanchored: use `fullmatch`
