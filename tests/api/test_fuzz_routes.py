"""Fuzzing the route parameters: whatever names, references, digests and upload IDs a client
puts in a URL, the answer is a client error or a success, never a server fault, and nothing
lands outside the registry's tree."""

from __future__ import annotations

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
