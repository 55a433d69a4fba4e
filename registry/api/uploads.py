"""`/v2/<name>/blobs/uploads/`: pushing blobs, monolithic, chunked or by mount.

POST   /v2/<name>/blobs/uploads/?digest=D      whole blob in one request -> 201
POST   /v2/<name>/blobs/uploads/?mount=D&from=R  link from another repository -> 201,
                                              or a new session if R lacks it -> 202
POST   /v2/<name>/blobs/uploads/?mount=D       link from any repository the client
                                              may pull -> 201, or a new session -> 202
POST   /v2/<name>/blobs/uploads/               open a session -> 202 + Location
PATCH  /v2/<name>/blobs/uploads/<id>           append a chunk (Content-Range checked) -> 202
PUT    /v2/<name>/blobs/uploads/<id>?digest=D  last chunk (optional) and verify -> 201
GET    /v2/<name>/blobs/uploads/<id>           progress -> 204 + Range
DELETE /v2/<name>/blobs/uploads/<id>           cancel -> 204

The Location of a session that has received no byte yet is `<id>.new` (see
`registry.services.uploads`, "fresh"): a PUT there carrying the whole blob
is stored with no question to storage about the session. `Docker-Upload-UUID`
is the bare `<id>`, which names the session once it holds bytes.

A chunk (PATCH, or a final PUT with a body) whose `Content-Range` does not
start where the session ends is 416 with the session's `Range` and
`Location`; one whose `Content-Length` disagrees with its `Content-Range` is
400 `SIZE_INVALID` with the `Range`. Neither appends a byte. So is a PUT with
a body to `<id>.new` that does not match its digest, when the session holds
bytes already (the client PATCHed, then sent its PUT to the POST's Location).
"""

from __future__ import annotations

from aiohttp import web

from registry.api.context import body_pieces, may_pull, registry_of, repository_name
from registry.api.params import parse_content_range
from registry.digest import Digest
from registry.errors import ChunkSizeInvalid, DigestInvalid, NameInvalid, RangeNotSatisfiable
from registry.reference import validate_name
from registry.services.blobs import BlobInfo
from registry.services.mounts import mount_from_any

# What the Location of a session that holds no byte yet adds to its id.
_FRESH = ".new"


async def start_upload(request: web.Request) -> web.Response:
    """Open a session, or complete a monolithic upload or a cross-repository mount."""
    name = repository_name(request)
    registry = registry_of(request)
    mount = request.query.get("mount")
    if mount is not None:
        digest = Digest.parse(mount)
        source = request.query.get("from")
        blob = None
        if source:
            try:
                blob = await registry.blobs.mount(name, digest, validate_name(source))
            except NameInvalid:
                blob = None  # an unusable source is no mount: fall back to an upload
        else:
            readable = may_pull(request)
            blob = await mount_from_any(registry.index, registry.blobs, name, digest, readable)
        if blob is not None:
            return _created(name, blob)
    elif "digest" in request.query:
        digest = Digest.parse(request.query["digest"])
        return _created(name, await registry.uploads.put(name, digest, body_pieces(request)))
    return _in_progress(name, registry.uploads.start(name), 0, fresh=True)


async def patch_upload(request: web.Request) -> web.Response:
    """Append the body to the session; a `Content-Range` must start where the upload ends."""
    name = repository_name(request)
    upload_id, fresh = _session_of(request)
    uploads = registry_of(request).uploads
    start, length = await _check_chunk(request, name, upload_id, fresh)
    try:
        size = await uploads.append(
            name, upload_id, body_pieces(request), start, length, fresh=fresh
        )
    except RangeNotSatisfiable as e:
        e.location = _location(name, upload_id, fresh and e.size == 0)
        raise
    return _in_progress(name, upload_id, size, fresh=fresh and size == 0)


async def finish_upload(request: web.Request) -> web.Response:
    """Append the optional last chunk, verify `?digest=` and publish the blob: 201."""
    name = repository_name(request)
    upload_id, fresh = _session_of(request)
    raw = request.query.get("digest")
    if not raw:
        raise DigestInvalid("the digest query parameter is required to finish an upload")
    digest = Digest.parse(raw)
    start, _ = await _check_chunk(request, name, upload_id, fresh)
    # A last chunk past 0 was found to continue bytes the session holds.
    fresh = fresh and not start
    body = body_pieces(request) if request.body_exists else None
    try:
        blob = await registry_of(request).uploads.finish(name, upload_id, digest, body, fresh=fresh)
    except RangeNotSatisfiable as e:
        e.location = _location(name, upload_id, fresh and e.size == 0)
        raise
    return _created(name, blob)


def _session_of(request: web.Request) -> tuple[str, bool]:
    """The session id the request's path names, and whether its Location marks it fresh."""
    raw = request.match_info["upload_id"]
    upload_id = raw.removesuffix(_FRESH)
    return upload_id, upload_id != raw


async def _check_chunk(
    request: web.Request, name: str, upload_id: str, fresh: bool
) -> tuple[int | None, int | None]:
    """The (start, length) of the request's `Content-Range`, (None, None) without one.

    Refuses, before a byte is read, a chunk that starts elsewhere than where
    the session ends (`RangeNotSatisfiable`) or whose `Content-Length` is not
    the range's length (`ChunkSizeInvalid`). A PATCH's start is checked again
    under the session's lock; a final PUT's only here.
    """
    content_range = request.headers.get("Content-Range")
    if not content_range:
        return None, None
    start, length = parse_content_range(content_range)
    announced = request.content_length
    if request.method == "PATCH" and (announced is None or announced == length):
        return start, length  # the service checks the start where no byte is lost
    size = await registry_of(request).uploads.size(name, upload_id, fresh=fresh)
    if start != size:
        error = RangeNotSatisfiable(f"chunk starts at {start}, upload is at {size}", size=size)
        error.location = _location(name, upload_id, fresh and size == 0)
        raise error
    if announced is not None and announced != length:
        raise ChunkSizeInvalid(
            f"Content-Range announces {length} bytes, Content-Length {announced}", size=size
        )
    return start, length


async def upload_status(request: web.Request) -> web.Response:
    """Where the session stands: 204 with its `Range`."""
    name = repository_name(request)
    upload_id, fresh = _session_of(request)
    size = await registry_of(request).uploads.size(name, upload_id, fresh=fresh)
    response = _in_progress(name, upload_id, size, fresh=fresh and size == 0)
    response.set_status(204)
    return response


async def cancel_upload(request: web.Request) -> web.Response:
    """Abandon the session and its bytes: 204."""
    name = repository_name(request)
    upload_id, fresh = _session_of(request)
    await registry_of(request).uploads.cancel(name, upload_id, fresh=fresh)
    return web.Response(status=204)


def _created(name: str, blob: BlobInfo) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": f"/v2/{name}/blobs/{blob.digest}",
            "Docker-Content-Digest": str(blob.digest),
        },
    )


def _location(name: str, upload_id: str, fresh: bool) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}{_FRESH if fresh else ''}"


def _in_progress(name: str, upload_id: str, size: int, fresh: bool = False) -> web.Response:
    return web.Response(
        status=202,
        headers={
            "Location": _location(name, upload_id, fresh),
            "Docker-Upload-UUID": upload_id,
            # The spec's inclusive range of bytes received; "0-0" when none yet.
            "Range": f"0-{max(size - 1, 0)}",
        },
    )
