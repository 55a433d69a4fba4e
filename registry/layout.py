"""Where things live in storage: CNCF Distribution's key layout, exactly.

Keeping Distribution's layout means a bucket or directory written by
Distribution 2.x/3.x is served as-is, and the other way round. Blob and
manifest content lives once, under `blobs/`, addressed by digest; repositories
hold only `link` files (whose content is the digest as text) that say which
content a repository may see:

    /docker/registry/v2/blobs/<alg>/<hex[:2]>/<hex>/data
    /docker/registry/v2/repositories/<name>/_layers/<alg>/<hex>/link
    /docker/registry/v2/repositories/<name>/_manifests/revisions/<alg>/<hex>/link
    /docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
    /docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/<alg>/<hex>/link
    /docker/registry/v2/repositories/<name>/_uploads/<id>/data
    /docker/registry/v2/repositories/<name>/_uploads/<id>/startedat

Repository-name components never start with `_`, so the `_layers`,
`_manifests` and `_uploads` markers cannot clash with a nested name.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.digest import Digest

ROOT = "/docker/registry/v2"
BLOBS = f"{ROOT}/blobs"
REPOSITORIES = f"{ROOT}/repositories"


def blob_dir(digest: Digest) -> str:
    """The directory of a blob's content (deleted whole with the blob)."""
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def blob_data(digest: Digest) -> str:
    """The content of a blob or manifest."""
    return f"{blob_dir(digest)}/data"


def repository(name: str) -> str:
    """The directory of repository `name`."""
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, digest: Digest) -> str:
    """The link that makes blob `digest` visible in repository `name`."""
    return f"{REPOSITORIES}/{name}/_layers/{digest.algorithm}/{digest.hex}/link"


def layers_dir(name: str) -> str:
    """The directory of all blob links of repository `name`."""
    return f"{REPOSITORIES}/{name}/_layers"


def manifest_revision_dir(name: str, digest: Digest) -> str:
    """The directory of a manifest revision's link."""
    return f"{REPOSITORIES}/{name}/_manifests/revisions/{digest.algorithm}/{digest.hex}"


def manifest_revision_link(name: str, digest: Digest) -> str:
    """The link that makes manifest `digest` part of repository `name`."""
    return f"{manifest_revision_dir(name, digest)}/link"


def tags_dir(name: str) -> str:
    """The directory holding one sub-directory per tag of repository `name`."""
    return f"{REPOSITORIES}/{name}/_manifests/tags"


def tag_dir(name: str, tag: str) -> str:
    """The directory of one tag, deleted whole when the tag is deleted."""
    return f"{tags_dir(name)}/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    """The link holding the digest a tag points at now."""
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_link(name: str, tag: str, digest: Digest) -> str:
    """The record that `tag` has pointed at `digest` (Distribution keeps the history)."""
    return f"{tag_dir(name, tag)}/index/{digest.algorithm}/{digest.hex}/link"


def upload_dir(name: str, upload_id: str) -> str:
    """The directory of one upload session."""
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    """The bytes received so far by an upload session."""
    return f"{upload_dir(name, upload_id)}/data"


def upload_started_at(name: str, upload_id: str) -> str:
    """When an upload session started (RFC 3339 text), as Distribution writes it."""
    return f"{upload_dir(name, upload_id)}/startedat"


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    """What a link file under `repositories/` records, found while walking storage.

    `kind` is "layer", "revision", "tag" (the current link of `tag`),
    "tag-history" (one entry of the tag's index) or "upload".
    """

    name: str
    kind: str
    tag: str = ""
    algorithm: str = ""
    hex: str = ""


def parse_repository_path(path: str) -> RepositoryEntry | None:
    """Classify a file path found below `REPOSITORIES`; None if it is none of ours."""
    if not path.startswith(REPOSITORIES + "/"):
        return None
    rest = path[len(REPOSITORIES) + 1 :]
    for marker in ("/_manifests/", "/_layers/", "/_uploads/"):
        name, sep, tail = rest.partition(marker)
        if sep:
            break
    else:
        return None
    parts = tail.split("/")
    if marker == "/_layers/" and len(parts) == 3 and parts[2] == "link":
        return RepositoryEntry(name, "layer", algorithm=parts[0], hex=parts[1])
    if marker == "/_uploads/":
        return RepositoryEntry(name, "upload", tag=parts[0])
    if len(parts) == 4 and parts[0] == "revisions" and parts[3] == "link":
        return RepositoryEntry(name, "revision", algorithm=parts[1], hex=parts[2])
    if len(parts) == 4 and parts[0] == "tags" and parts[2:] == ["current", "link"]:
        return RepositoryEntry(name, "tag", tag=parts[1])
    if len(parts) == 6 and parts[0] == "tags" and parts[2] == "index" and parts[5] == "link":
        return RepositoryEntry(name, "tag-history", tag=parts[1], algorithm=parts[3], hex=parts[4])
    return None
