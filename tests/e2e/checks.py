"""What "the registry serves this image intact" means, checked with real clients.

The source images live in one OCI layout written by `ocilayout` (`SourceImages`);
the checks pull from a live registry with skopeo into a fresh layout and compare
bytes and digests with the source, and fetch blobs over plain HTTP.
"""

from __future__ import annotations

import itertools
import random
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from tests.e2e.ocilayout import (
    Image,
    Index,
    OciLayout,
    read_layout_blob,
    read_layout_manifest,
    sha256_digest,
)
from tests.e2e.processes import ServerProcess, Skopeo


@dataclass(frozen=True)
class SourceImages:
    """The images every test pushes, written once as an OCI layout at `path`.

    `app` has three layers, one of them 1 MiB of incompressible bytes so uploads
    span many network reads; `tool` is a second, different image; `multi` is an
    amd64 + arm64 index.
    """

    path: Path
    app: Image
    tool: Image
    multi: Index

    def oci(self, tag: str) -> str:
        """The skopeo source reference of `tag`: `oci:PATH:TAG`."""
        return f"oci:{self.path}:{tag}"


def write_source_images(path: Path) -> SourceImages:
    layout = OciLayout(path)
    noise = random.Random(20240101).randbytes(1024 * 1024)
    app = layout.add_image(
        "app",
        [
            {"etc/os-release": b"ID=cargobay-e2e\n", "etc/motd": b"hello from the base layer\n"},
            {"opt/app/data.bin": noise},
            {"opt/app/VERSION": b"1.0.0\n", "usr/local/bin/app": b"#!/bin/sh\necho app\n"},
        ],
        labels={"org.opencontainers.image.title": "app"},
    )
    tool = layout.add_image(
        "tool",
        [{"etc/os-release": b"ID=cargobay-e2e\n"}, {"usr/bin/tool": b"#!/bin/sh\necho tool\n"}],
        labels={"org.opencontainers.image.title": "tool"},
    )
    multi = layout.add_index("multi")
    layout.write()
    return SourceImages(path=path, app=app, tool=tool, multi=multi)


def docker_ref(server: ServerProcess, repository: str, reference: str) -> str:
    """`docker://HOST/REPO:TAG` or `docker://HOST/REPO@DIGEST`."""
    separator = "@" if reference.startswith("sha256:") else ":"
    return f"docker://{server.host}/{repository}{separator}{reference}"


def fresh_dir(parent: Path, name: str) -> Path:
    """A path below `parent` (created) that does not exist yet, named after `name`."""
    parent.mkdir(parents=True, exist_ok=True)
    stem = name.replace("/", "_").replace(":", "_")
    for n in itertools.count():
        path = parent / (stem if n == 0 else f"{stem}-{n}")
        if not path.exists():
            return path
    raise AssertionError("unreachable")


def assert_serves_image(
    skopeo: Skopeo,
    server: ServerProcess,
    repository: str,
    tag: str,
    image: Image,
    workdir: Path,
) -> None:
    """`tag` and the manifest's digest both give the exact manifest bytes pushed, and a pull
    into a fresh OCI layout yields the same manifest and byte-identical config and layers."""
    assert skopeo.inspect_raw(docker_ref(server, repository, tag)) == image.manifest
    assert skopeo.inspect_raw(docker_ref(server, repository, image.digest)) == image.manifest
    out = fresh_dir(workdir, f"pulled-{repository}-{tag}")
    skopeo.copy(docker_ref(server, repository, tag), f"oci:{out}:{tag}")
    manifest, _ = read_layout_manifest(out, tag)
    assert sha256_digest(manifest) == image.digest
    assert read_layout_blob(out, image.blob_digests[0]) == image.config
    for layer in image.layers:
        assert read_layout_blob(out, layer.digest) == layer.compressed


def assert_serves_index(
    skopeo: Skopeo,
    server: ServerProcess,
    repository: str,
    tag: str,
    index: Index,
    workdir: Path,
) -> None:
    """The index and every platform manifest are served byte-identical (by tag and by digest),
    and `copy --all` pulls every platform's blobs back intact."""
    assert skopeo.inspect_raw(docker_ref(server, repository, tag)) == index.manifest
    for image in index.images:
        assert skopeo.inspect_raw(docker_ref(server, repository, image.digest)) == image.manifest
    out = fresh_dir(workdir, f"pulled-{repository}-{tag}")
    skopeo.copy(docker_ref(server, repository, tag), f"oci:{out}:{tag}", "--all")
    manifest, _ = read_layout_manifest(out, tag)
    assert manifest == index.manifest
    for image in index.images:
        assert read_layout_blob(out, image.digest) == image.manifest
        assert read_layout_blob(out, image.blob_digests[0]) == image.config
        for layer in image.layers:
            assert read_layout_blob(out, layer.digest) == layer.compressed


def http_get(
    server: ServerProcess, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a plain HTTP request to the server; errors are answers too."""
    request = urllib.request.Request(f"{server.url}{path}", headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


def fetch_blob(server: ServerProcess, repository: str, digest: str) -> bytes:
    """The blob's bytes over HTTP, checked against its digest."""
    status, _, body = http_get(server, f"/v2/{repository}/blobs/{digest}")
    assert status == 200, f"GET blob {digest} from {server.name}: {status} {body[:200]!r}"
    assert sha256_digest(body) == digest
    return body


class ChunkedUpload:
    """One blob upload session driven request by request, as the distribution-spec describes:
    POST opens it, each PATCH sends a chunk with its `Content-Range`, PUT closes it.

    It follows the `Location` of every answer, as the spec requires of clients, and
    returns the raw responses for the test to judge.
    """

    def __init__(self, http: aiohttp.ClientSession, server: ServerProcess, location: str):
        self.http = http
        self.base = URL(server.url)
        self.location = self.base.join(URL(location))
        self.offset = 0

    @classmethod
    async def start(
        cls, http: aiohttp.ClientSession, server: ServerProcess, repository: str
    ) -> ChunkedUpload:
        """POST /v2/<repository>/blobs/uploads/ and check the 202 that opens the session."""
        async with http.post(f"{server.url}/v2/{repository}/blobs/uploads/") as response:
            assert response.status == 202, await response.text()
            assert response.headers["Docker-Upload-UUID"]
            return cls(http, server, response.headers["Location"])

    async def patch(self, chunk: bytes, start: int | None = None) -> aiohttp.ClientResponse:
        """PATCH `chunk` announced at `start` (default: where the upload should end)."""
        start = self.offset if start is None else start
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(chunk)),
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
        }
        async with self.http.patch(self.location, data=chunk, headers=headers) as response:
            await response.read()
        if response.status == 202:
            self.offset = start + len(chunk)
            self.location = self.base.join(URL(response.headers["Location"]))
        return response

    async def status(self) -> aiohttp.ClientResponse:
        """GET the session's progress."""
        async with self.http.get(self.location) as response:
            await response.read()
        return response

    async def finish(self, digest: str, last: bytes = b"") -> aiohttp.ClientResponse:
        """PUT `?digest=` with the optional last chunk."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(last))}
        url = self.location.update_query(digest=digest)
        async with self.http.put(url, data=last, headers=headers) as response:
            await response.read()
        return response
