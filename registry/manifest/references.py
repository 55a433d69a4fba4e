"""Which descriptors of an image manifest or an index must exist in the repository, and as what.

Shared by the Docker and OCI formats, whose image manifests (config + layers)
and indexes (a list of descriptors) follow the same rules.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from registry.errors import ManifestInvalid
from registry.manifest.descriptor import Descriptor, to_descriptor, unique
from registry.manifest.mediatypes import EXTERNAL_LAYER_MEDIA_TYPES, MANIFEST_MEDIA_TYPES


def image_blobs(config: dict[str, Any], layers: list[dict[str, Any]]) -> tuple[Descriptor, ...]:
    """The config and the layers, less foreign/non-distributable layers.

    Those layers are fetched by clients from their `urls`, so they need not be
    in the registry; as in Distribution, they must then have at least one
    http(s) URL without a fragment, or `ManifestInvalid` is raised.
    """
    blobs = [to_descriptor(config, "config")]
    for i, layer in enumerate(layers):
        where = f"layers[{i}]"
        descriptor = to_descriptor(layer, where)
        if descriptor.media_type in EXTERNAL_LAYER_MEDIA_TYPES:
            _check_urls(layer.get("urls") or [], where)
        else:
            blobs.append(descriptor)
    return unique(blobs)


def index_references(
    entries: list[dict[str, Any]],
) -> tuple[tuple[Descriptor, ...], tuple[Descriptor, ...]]:
    """`(blobs, manifests)` of an index: entries split by whether their media type is a manifest's.

    BuildKit's legacy registry cache is an index whose entries are layers and a
    cache config, so entries of any other media type are blobs, not an error.
    """
    blobs: list[Descriptor] = []
    manifests: list[Descriptor] = []
    for i, entry in enumerate(entries):
        descriptor = to_descriptor(entry, f"manifests[{i}]")
        if descriptor.media_type in MANIFEST_MEDIA_TYPES:
            manifests.append(descriptor)
        else:
            blobs.append(descriptor)
    return unique(blobs), unique(manifests)


def _check_urls(urls: list[str], where: str) -> None:
    if not urls:
        raise ManifestInvalid(f"{where}: a foreign layer must have urls", detail={"field": where})
    for url in urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or parts.fragment:
            raise ManifestInvalid(
                f"{where}.urls: {url[:200]!r} is not an http(s) URL without a fragment",
                detail={"field": f"{where}.urls"},
            )
