"""What one stored manifest keeps alive, whatever its format: the mark phase's reading of it.

The registry's own parsers (`registry.manifest`) give the structure: index
children, the subject of a referrer, configs and layers. On top of that every
string under a `digest` or `blobSum` key anywhere in the document is kept,
so that content a parser leaves out on purpose (foreign layers, fetched from
their URLs) or a manifest our parsers refuse (written by another tool into a
shared bucket) is never collected from under a client that still uses it.
Collection errs on the side of keeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from registry.digest import Digest
from registry.errors import DigestInvalid, ManifestInvalid, Unsupported
from registry.manifest import detect_media_type, parse_manifest

_DIGEST_KEYS = frozenset({"digest", "blobSum"})


@dataclass(frozen=True, slots=True)
class References:
    """The digests a manifest names.

    - `content`: everything the manifest names, child manifests and subject
      included: all of it must stay in `blobs/` while the manifest does.
    - `children`: the manifests it reaches as an index or list (an untagged
      child of a tagged index is still in use).
    - `subject`: the manifest it refers to, if it is a referrer.
    """

    content: frozenset[str]
    children: frozenset[str]
    subject: str | None


def references(data: bytes) -> References:
    """The references of the manifest `data`, as stored (never raises).

    Bytes that are not a manifest we can parse keep every digest they name,
    each of them counted as a possible child too.
    """
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return References(frozenset(), frozenset(), None)
    named = frozenset(_named_digests(document))
    try:
        manifest = parse_manifest(data, detect_media_type(data))
    except ManifestInvalid:
        return References(named, named, None)
    children = frozenset(str(d.digest) for d in manifest.manifests)
    subject = str(manifest.subject.digest) if manifest.subject is not None else None
    blobs = frozenset(str(d.digest) for d in manifest.blobs)
    return References(named | blobs | children, children, subject)


def _named_digests(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _DIGEST_KEYS and isinstance(value, str):
                yield from _valid_digest(value)
            else:
                yield from _named_digests(value)
    elif isinstance(node, list):
        for item in node:
            yield from _named_digests(item)


def _valid_digest(text: str) -> Iterator[str]:
    try:
        yield str(Digest.parse(text))
    except (DigestInvalid, Unsupported):
        return
