"""Fuzzing the route parameters: whatever names, references, digests and upload IDs a client
puts in a URL, the answer is a client error or a success, never a server fault, and nothing
lands outside the registry's tree."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote

from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.drivers.base import StorageDriver

# Characters that matter to paths, encodings and the name grammar, plus anything at all.
TRICKY = st.sampled_from([*"/._-:%@?#\\ \x00~+=", "..", "%2e", "%2f", "é", "\u202e"])
SEGMENT = st.one_of(
    st.lists(
        st.one_of(TRICKY, st.text(alphabet="abcz09AZ", min_size=1, max_size=3)), max_size=8
    ).map("".join),
    st.text(max_size=20),
)
DIGEST = st.one_of(
    SEGMENT,
    st.builds(
        lambda hexpart: f"sha256:{hexpart}",
        st.text(alphabet="0123456789abcdefABCDEF./", max_size=70),
    ),
    st.builds(lambda alg, rest: f"{alg}:{rest}", SEGMENT, SEGMENT),
)
ROUTES = [
    ("GET", "/v2/{name}/tags/list"),
    ("GET", "/v2/{name}/manifests/{ref}"),
    ("HEAD", "/v2/{name}/manifests/{ref}"),
    ("PUT", "/v2/{name}/manifests/{ref}"),
    ("DELETE", "/v2/{name}/manifests/{ref}"),
    ("GET", "/v2/{name}/blobs/{digest}"),
    ("DELETE", "/v2/{name}/blobs/{digest}"),
    ("POST", "/v2/{name}/blobs/uploads/?digest={digest}"),
    ("POST", "/v2/{name}/blobs/uploads/?mount={digest}&from={ref}"),
    ("PATCH", "/v2/{name}/blobs/uploads/{upload}"),
    ("PUT", "/v2/{name}/blobs/uploads/{upload}?digest={digest}"),
    ("GET", "/v2/{name}/blobs/uploads/{upload}"),
    ("DELETE", "/v2/{name}/blobs/uploads/{upload}"),
    ("GET", "/v2/{name}/referrers/{digest}?artifactType={ref}"),
    ("GET", "/v2/_catalog?n={ref}&last={name}"),
    ("GET", "/v2/{name}/tags/list?n={ref}&last={upload}"),
]


def entries(directory: Path) -> list[str]:
    return [path.name for path in directory.iterdir()]


def encode(value: str) -> str:
    """Percent-encoded so the server decodes exactly `value` (slashes kept as separators)."""
    return quote(value, safe="/")


class TestFuzzRoutes:
    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        route=st.sampled_from(ROUTES),
        name=SEGMENT,
        ref=SEGMENT,
        digest=DIGEST,
        upload=SEGMENT,
        body=st.binary(max_size=64),
    )
    async def test_any_parameters_get_a_client_error_or_success(
        self,
        client: TestClient,
        storage: StorageDriver,
        tmp_path: Path,
        route: tuple[str, str],
        name: str,
        ref: str,
        digest: str,
        upload: str,
        body: bytes,
    ) -> None:
        method, template = route
        path, _, query = template.partition("?")
        path = path.format(
            name=encode(name), ref=encode(ref), digest=encode(digest), upload=encode(upload)
        )
        query = query.format(
            name=quote(name, safe=""),
            ref=quote(ref, safe=""),
            digest=quote(digest, safe=""),
            upload=quote(upload, safe=""),
        )
        url = f"{path}?{query}" if query else path
        response = await client.request(method, url, data=body, allow_redirects=False)
        assert response.status < 500, (method, url, await response.text())
        if storage.name == "filesystem":
            assert entries(tmp_path) == ["root"]


def header_safe(value: str) -> bool:
    """What an HTTP client can put in a header value at all (no control characters)."""
    return not any(ord(c) < 32 or ord(c) == 127 for c in value)


# Numbers as clients get them wrong: other scripts' digits, signs, spaces, huge ones.
NUMBERISH = st.one_of(
    st.text(alphabet="0123456789-/ *+.,=bytes\u00b2\u0663\uff11", max_size=30),
    st.builds(lambda n, tail: "9" * n + tail, st.integers(4000, 6000), st.sampled_from(["", "-"])),
    st.builds(lambda a, b: f"{a}-{b}", st.integers(-5, 2**70), st.integers(-5, 2**70)),
    st.text(max_size=20),
)
HEADER_VALUE = NUMBERISH.filter(header_safe)
#: Every query parameter and header a handler or middleware reads, on a route that reads it.
#: `{upload}` is a fresh session and `{digest}` a stored blob of 300 bytes in repository `a/b`.
PARSED_INPUTS = [
    ("GET", "/v2/_catalog", "query", "n"),
    ("GET", "/v2/_catalog", "query", "last"),
    ("GET", "/v2/a/b/tags/list", "query", "n"),
    ("GET", "/v2/a/b/tags/list", "query", "last"),
    ("GET", "/v2/a/b/referrers/{digest}", "query", "artifactType"),
    ("POST", "/v2/a/b/blobs/uploads/", "query", "digest"),
    ("POST", "/v2/a/b/blobs/uploads/", "query", "mount"),
    ("POST", "/v2/a/c/blobs/uploads/?mount={digest}", "query", "from"),
    ("PUT", "/v2/a/b/blobs/uploads/{upload}", "query", "digest"),
    ("PUT", "/v2/a/b/manifests/{manifest}", "query", "tag"),
    ("PATCH", "/v2/a/b/blobs/uploads/{upload}", "header", "Content-Range"),
    ("PUT", "/v2/a/b/blobs/uploads/{upload}?digest={digest}", "header", "Content-Range"),
    ("POST", "/v2/a/b/blobs/uploads/?digest={digest}", "header", "Content-Range"),
    ("GET", "/v2/a/b/blobs/{digest}", "header", "Range"),
    ("PUT", "/v2/a/b/manifests/latest", "header", "Content-Type"),
]
BLOB = bytes(range(256)) + b"x" * 44
MANIFEST = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
)


class TestFuzzParsedInputs:
    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(target=st.sampled_from(PARSED_INPUTS), value=HEADER_VALUE, body=st.binary(max_size=8))
    async def test_any_value_of_a_parsed_parameter_gets_a_client_error_or_success(
        self,
        client: TestClient,
        target: tuple[str, str, str, str],
        value: str,
        body: bytes,
    ) -> None:
        method, template, where, field = target
        digest = "sha256:" + hashlib.sha256(BLOB).hexdigest()
        stored = await client.post(f"/v2/a/b/blobs/uploads/?digest={digest}", data=BLOB)
        assert stored.status == 201
        session = await client.post("/v2/a/b/blobs/uploads/")
        upload = session.headers["Location"].rsplit("/", 1)[1]
        manifest = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
        url = template.format(digest=digest, upload=upload, manifest=manifest)
        headers = {"Content-Type": "application/octet-stream"}
        data = MANIFEST if "/manifests/" in url else body
        if "/manifests/" in url:
            headers["Content-Type"] = "application/vnd.oci.image.index.v1+json"
        if where == "header":
            headers[field] = value
        else:
            separator = "&" if "?" in url else "?"
            url = f"{url}{separator}{quote(field)}={quote(value, safe='')}"
        response = await client.request(method, url, data=data, headers=headers)
        assert response.status < 500, (method, url, field, value[:80], await response.text())
