"""`/v2/<name>/manifests/<reference>`: GET, HEAD, PUT and DELETE of manifests and tags.

A reference is a tag or a digest. One that is neither names no manifest:
reading or deleting it is 404 `MANIFEST_UNKNOWN`, pushing to it 400
`TAG_INVALID`. A digest with an algorithm we do not support is 400
`DIGEST_INVALID`. A push by digest may also tag the manifest:
`PUT .../manifests/<digest>?tag=a&tag=b` (distribution-spec main) applies every
valid tag and answers one `OCI-Tag` header per tag applied.
"""

from __future__ import annotations

from aiohttp import web

from registry.api.context import config_of, read_body, registry_of, repository_name
from registry.digest import is_digest_shaped
from registry.errors import ManifestUnknown, TagInvalid
from registry.reference import is_tag


def _reference(request: web.Request) -> str:
    """The URL's reference; `ManifestUnknown` if it is neither a tag nor a digest."""
    reference = request.match_info["reference"]
    if not (is_tag(reference) or is_digest_shaped(reference)):
        raise ManifestUnknown(detail={"reference": reference[:200]})
    return reference


async def get_manifest(request: web.Request) -> web.Response:
    """The manifest bytes as pushed, with their media type and digest (headers only on HEAD)."""
    name = repository_name(request)
    manifest = await registry_of(request).manifests.get(name, _reference(request))
    headers = {
        "Docker-Content-Digest": manifest.digest,
        "Etag": f'"{manifest.digest}"',
        "Content-Type": manifest.media_type,
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(manifest.data))
        return web.Response(headers=headers)
    return web.Response(body=manifest.data, headers=headers)


async def put_manifest(request: web.Request) -> web.Response:
    """Store a manifest under a tag or its digest: 201 with its `Location` and digest.

    With `?tag=` parameters the manifest is tagged with each valid one after it
    is stored (invalid ones are skipped, and get no `OCI-Tag` header). A
    storage fault part way leaves the manifest and the tags before it stored.
    """
    name = repository_name(request)
    reference = request.match_info["reference"]
    if not (is_tag(reference) or is_digest_shaped(reference)):
        raise TagInvalid(detail={"tag": reference[:200]})
    limit = config_of(request).limits.max_manifest_bytes
    data = await read_body(request, limit, "a manifest")
    manifests = registry_of(request).manifests
    content_type = request.headers.get("Content-Type")
    result = await manifests.put(name, reference, content_type, data)
    headers = {
        "Location": f"/v2/{name}/manifests/{result.digest}",
        "Docker-Content-Digest": result.digest,
    }
    if result.subject is not None:
        headers["OCI-Subject"] = result.subject
    response = web.Response(status=201, headers=headers)
    # A tag push names the sha256 digest of the bytes: a manifest pushed under
    # another algorithm would be tagged as a second revision, so it is not tagged.
    taggable = result.digest.startswith("sha256:")
    for tag in dict.fromkeys(request.query.getall("tag", [])):
        if taggable and is_tag(tag):
            await manifests.put(name, tag, content_type, data)
            response.headers.add("OCI-Tag", tag)
    return response


async def delete_manifest(request: web.Request) -> web.Response:
    """Delete a tag, or a manifest by digest with the tags pointing at it: 202."""
    name = repository_name(request)
    await registry_of(request).manifests.delete(name, _reference(request))
    return web.Response(status=202)
