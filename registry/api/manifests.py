"""`/v2/<name>/manifests/<reference>`: GET, HEAD, PUT and DELETE of manifests and tags."""

from __future__ import annotations

from aiohttp import web

from registry.api.context import config_of, read_body, registry_of, repository_name


async def get_manifest(request: web.Request) -> web.Response:
    """The manifest bytes as pushed, with their media type and digest (headers only on HEAD)."""
    name = repository_name(request)
    manifest = await registry_of(request).manifests.get(name, request.match_info["reference"])
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
    """Store a manifest under a tag or its digest: 201 with its `Location` and digest."""
    name = repository_name(request)
    reference = request.match_info["reference"]
    limit = config_of(request).limits.max_manifest_bytes
    data = await read_body(request, limit, "a manifest")
    result = await registry_of(request).manifests.put(
        name, reference, request.headers.get("Content-Type"), data
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{result.digest}",
        "Docker-Content-Digest": result.digest,
    }
    if result.subject is not None:
        headers["OCI-Subject"] = result.subject
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.Response:
    """Delete a tag, or a manifest by digest with the tags pointing at it: 202."""
    name = repository_name(request)
    await registry_of(request).manifests.delete(name, request.match_info["reference"])
    return web.Response(status=202)
