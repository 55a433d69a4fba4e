"""The URL table of the distribution API: which handler answers which method and path.

Repository names contain slashes, so `{name}` matches greedily up to the last
`/manifests/`, `/blobs/`, `/tags/` or `/referrers/`; handlers check the name
against the spec's grammar before using it.
"""

from __future__ import annotations

from aiohttp import web

from registry.api import base, blobs, catalog, manifests, referrers, tags, uploads

_NAME = "{name:.+}"


def add_routes(app: web.Application) -> None:
    """Register every route of the OCI distribution-spec v1.1 on `app`."""
    app.router.add_get("/v2/", base.version_check)
    app.router.add_get("/v2", base.version_check)
    app.router.add_get("/v2/_catalog", catalog.list_repositories)
    app.router.add_get(f"/v2/{_NAME}/tags/list", tags.list_tags)
    manifest = f"/v2/{_NAME}/manifests/{{reference}}"
    app.router.add_get(manifest, manifests.get_manifest)
    app.router.add_put(manifest, manifests.put_manifest)
    app.router.add_delete(manifest, manifests.delete_manifest)
    app.router.add_post(f"/v2/{_NAME}/blobs/uploads/", uploads.start_upload)
    app.router.add_post(f"/v2/{_NAME}/blobs/uploads", uploads.start_upload)
    upload = f"/v2/{_NAME}/blobs/uploads/{{upload_id}}"
    app.router.add_patch(upload, uploads.patch_upload)
    app.router.add_put(upload, uploads.finish_upload)
    app.router.add_get(upload, uploads.upload_status, allow_head=False)
    app.router.add_delete(upload, uploads.cancel_upload)
    blob = f"/v2/{_NAME}/blobs/{{digest}}"
    app.router.add_get(blob, blobs.get_blob)
    app.router.add_delete(blob, blobs.delete_blob)
    app.router.add_get(f"/v2/{_NAME}/referrers/{{digest}}", referrers.list_referrers)
