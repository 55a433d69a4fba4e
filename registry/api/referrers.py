"""`GET /v2/<name>/referrers/<digest>`: manifests whose `subject` is that digest."""

from __future__ import annotations

import orjson
from aiohttp import web

from registry.api.context import registry_of, repository_name
from registry.digest import Digest

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


async def list_referrers(request: web.Request) -> web.Response:
    """An OCI image index of the referrers, filtered by `artifactType` when asked.

    An unknown subject or repository is an empty index, not an error, as the
    distribution-spec requires.
    """
    name = repository_name(request)
    subject = Digest.parse(request.match_info["digest"])
    artifact_type = request.query.get("artifactType") or None
    found = await registry_of(request).manifests.referrers(name, subject, artifact_type)
    body = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": found}
    response = web.Response(body=orjson.dumps(body), content_type=INDEX_MEDIA_TYPE)
    if artifact_type is not None:
        response.headers["OCI-Filters-Applied"] = "artifactType"
    return response
