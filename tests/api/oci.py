"""Small OCI client helpers for the API tests: push blobs, images and artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from tests.manifest.samples import (
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    digest_of,
)

__all__ = ["OCI_CONFIG", "OCI_EMPTY", "OCI_INDEX", "OCI_LAYER", "OCI_MANIFEST", "digest_of"]


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


async def push_blob(client: TestClient, name: str, data: bytes) -> str:
    """Push `data` monolithically; return its digest."""
    digest = digest_of(data)
    response = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=data)
    assert response.status == 201, await response.text()
    return digest


async def put_manifest(
    client: TestClient, name: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST
) -> str:
    """PUT a manifest; return the digest the registry answered with."""
    response = await client.put(
        f"/v2/{name}/manifests/{reference}", data=body, headers={"Content-Type": media_type}
    )
    assert response.status == 201, await response.text()
    return response.headers["Docker-Content-Digest"]


@dataclass
class Image:
    """An image pushed by `push_image`."""

    manifest: bytes
    digest: str
    config: bytes
    layers: list[bytes]


async def push_image(
    client: TestClient,
    name: str,
    tag: str | None = "latest",
    layers: list[bytes] | None = None,
    *,
    subject: dict[str, Any] | None = None,
    artifact_type: str | None = None,
    config_media_type: str = OCI_CONFIG,
    annotations: dict[str, str] | None = None,
    config_json: dict[str, Any] | None = None,
) -> Image:
    """Push the blobs and manifest of a small OCI image (or artifact) and return it.

    `config_json` is the image config (default: amd64 linux and the layer count).
    """
    layers = layers if layers is not None else [b"layer one " + name.encode(), b"layer two"]
    default = {"architecture": "amd64", "os": "linux", "n": len(layers)}
    config = orjson.dumps(config_json if config_json is not None else default)
    if config_media_type == OCI_EMPTY:
        config = b"{}"
    for blob in [config, *layers]:
        await push_blob(client, name, blob)
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config_media_type, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
    }
    if subject is not None:
        body["subject"] = subject
    if artifact_type is not None:
        body["artifactType"] = artifact_type
    if annotations is not None:
        body["annotations"] = annotations
    manifest = orjson.dumps(body)
    digest = await put_manifest(client, name, tag or digest_of(manifest), manifest)
    return Image(manifest, digest, config, layers)


async def error_codes(response: Any) -> list[str]:
    """The OCI error codes of an error response (asserting it is one)."""
    assert response.headers["Content-Type"].startswith("application/json")
    body = orjson.loads(await response.read())
    return [e["code"] for e in body["errors"]]
