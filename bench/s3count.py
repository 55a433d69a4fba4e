"""A counting proxy in front of an S3 server: which requests a registry sends to storage.

    python -m bench.s3count --upstream http://127.0.0.1:8333 [--port N]

Point a registry's S3 endpoint at the proxy (Cargobay's `endpoint_url`,
Distribution's `regionendpoint`): every request is passed on unchanged, the
Host header included, so SigV4 signatures stay valid, and counted by S3
operation (`PutObject`, `ListObjectsV2`, ...) and by what its key is in
Distribution's layout (`blob data`, `layer link`, `upload startedat`, ...).

`GET /__s3count__` answers the counts so far as JSON, `{"total": N, "counts":
{"PutObject layer link": n, ...}}`; `DELETE /__s3count__` sets them to zero.
A benchmark phase reads them before and after (`fetch_counts`, `Counts.minus`)
and divides by what it pushed; the proxy's own CPU is in neither registry's nor
storage's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

#: The proxy's own resource; no S3 path-style request has a bucket of this name.
CONTROL = "/__s3count__"

# Headers that belong to one hop, or that the proxy's client sets itself.
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "expect", "te", "upgrade", "trailer"}
)
# The largest request body passed on (a part of a multipart upload is at most this).
_MAX_BODY = 5 * 1024 * 1024 * 1024

# What a key is, by where it lies in Distribution's layout (first match wins).
_KINDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), kind)
    for pattern, kind in (
        (r"/_uploads/[^/]+/startedat$", "upload startedat"),
        (r"/_uploads/[^/]+/data![a-z]+$", "upload writer state"),
        (r"/_uploads/[^/]+/data$", "upload data"),
        (r"/_uploads/[^/]+/hashstates/", "upload hashstate"),
        (r"/_uploads/", "upload dir"),
        (r"/_layers/", "layer link"),
        (r"/_manifests/revisions/", "revision link"),
        (r"/_manifests/tags/[^/]+/current/", "tag current link"),
        (r"/_manifests/tags/[^/]+/index/", "tag index link"),
        (r"/_manifests/tags", "tags"),
        (r"/blobs/[^/]+/[^/]+/[^/]+/data$", "blob data"),
        (r"/blobs/", "blobs"),
        (r"(^|/)cargobay/feed", "feed"),
        (r"/repositories", "repositories"),
    )
)


def s3_operation(
    method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
) -> str:
    """The name of the S3 API operation a request to a path-style endpoint is."""
    on_object = "/" in path.strip("/")
    copy = "x-amz-copy-source" in headers
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        if not on_object:
            return "CreateBucket"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "DeleteObjects" if "delete" in query else "Post"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "HEAD":
        return "HeadObject" if on_object else "HeadBucket"
    if "uploadId" in query:
        return "ListParts"
    if not on_object and "uploads" in query:
        return "ListMultipartUploads"
    return "GetObject" if on_object else "ListObjectsV2"


def key_kind(path: str, query: Mapping[str, str]) -> str:
    """What the request's key (or a listing's prefix) is in Distribution's layout."""
    _, _, key = path.strip("/").partition("/")
    if not key:
        key = query.get("prefix", "")
    for pattern, kind in _KINDS:
        if pattern.search("/" + key):
            return kind
    return "other"


@dataclass
class Counts:
    """Requests by "<operation> <kind>", and their total."""

    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def minus(self, earlier: Counts) -> Counts:
        """The requests counted since `earlier` was read."""
        diff = Counter(self.counts)
        diff.subtract(earlier.counts)
        return Counts(+diff)

    def per(self, items: int) -> dict[str, float]:
        """Each count divided by `items` (requests per blob, per manifest ...)."""
        n = max(items, 1)
        return {name: count / n for name, count in sorted(self.counts.items())}

    def to_json(self) -> dict[str, object]:
        return {"total": self.total, "counts": dict(sorted(self.counts.items()))}


def fetch_counts(proxy: str, reset: bool = False) -> Counts:
    """The counts of the proxy at `proxy` (http://host:port) now; zero them after if `reset`."""
    with urllib.request.urlopen(proxy + CONTROL, timeout=10) as response:
        counts = Counts(Counter(json.loads(response.read())["counts"]))
    if reset:
        request = urllib.request.Request(proxy + CONTROL, method="DELETE")
        urllib.request.urlopen(request, timeout=10).close()
    return counts


class CountingProxy:
    """The aiohttp application: passes requests to `upstream` and counts them."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.counts = Counts()
        self._http: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_get(CONTROL, self._report)
        app.router.add_delete(CONTROL, self._reset)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _: web.Application) -> None:
        self._http = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=300),
            connector=aiohttp.TCPConnector(limit=0),
        )

    async def _close(self, _: web.Application) -> None:
        if self._http is not None:
            await self._http.close()

    async def _report(self, _: web.Request) -> web.Response:
        return web.json_response(self.counts.to_json())

    async def _reset(self, _: web.Request) -> web.Response:
        self.counts = Counts()
        return web.Response(status=204)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        operation = s3_operation(request.method, request.path, request.query, request.headers)
        self.counts.counts[f"{operation} {key_kind(request.path, request.query)}"] += 1
        assert self._http is not None
        return await pass_on(self._http, self.upstream, request)


async def pass_on(
    http: aiohttp.ClientSession, upstream: str, request: web.Request
) -> web.Response:
    """Send `request` to `upstream` as it came, Host header included (S3 signatures
    cover it), and answer what upstream answered."""
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
    async with http.request(
        request.method,
        upstream + request.rel_url.raw_path_qs,
        headers=headers,
        data=body,
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        allow_redirects=False,
    ) as answer:
        content = await answer.read()
    response = web.Response(status=answer.status, body=content)
    for name, value in answer.headers.items():
        if name.lower() not in _HOP_HEADERS and name.lower() != "content-length":
            response.headers.add(name, value)
    if request.method == "HEAD":
        # The size of the object, not of this empty answer.
        response.headers["Content-Length"] = answer.headers.get("Content-Length", "0")
    return response


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="the S3 server, http://host:port")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1)")
    args = parser.parse_args(argv)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    web.run_app(
        CountingProxy(args.upstream).app(), host="127.0.0.1", port=args.port,
        access_log=None, print=None, loop=loop,
    )


if __name__ == "__main__":
    main()
