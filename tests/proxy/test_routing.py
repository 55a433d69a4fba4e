"""Which upstream a repository name or containerd namespace goes to, and what is refused."""

from __future__ import annotations

import aiohttp
import pytest

from registry.config import ConfigError, ProxyConfig, UpstreamConfig, load_config
from registry.proxy.blobs import ProxyBlobStore
from registry.proxy.client import Upstream
from registry.proxy.manifests import ProxyManifestStore
from registry.proxy.routing import Router
from registry.services.blobs import BlobStore
from registry.services.manifests import ManifestStore
from tests.proxy.conftest import FakeUpstream, MirrorFactory


def router(session: aiohttp.ClientSession) -> Router:
    hub = UpstreamConfig(
        name="hub",
        url="https://registry-1.docker.io",
        prefix="docker.io",
        dockerhub_library=True,
        default=True,
    )
    ghcr = UpstreamConfig(name="ghcr", url="https://ghcr.io", prefix="ghcr")
    return Router([Upstream(hub, session), Upstream(ghcr, session)])


def never_local(name: str) -> bool:
    return False


class TestRouter:
    async def test_a_name_under_a_prefix_goes_to_that_upstream(self) -> None:
        async with aiohttp.ClientSession() as session:
            route = router(session).route("ghcr/org/tool", None, True, never_local)
        assert route is not None
        assert (route.upstream.name, route.remote, route.local) == (
            "ghcr",
            "org/tool",
            "ghcr/org/tool",
        )

    async def test_docker_hub_one_component_names_are_library_images(self) -> None:
        async with aiohttp.ClientSession() as session:
            route = router(session).route("docker.io/alpine", None, True, never_local)
        assert route is not None
        assert (route.remote, route.local) == ("library/alpine", "docker.io/library/alpine")

    async def test_containerd_namespace_matches_a_prefix_or_the_upstream_host(self) -> None:
        async with aiohttp.ClientSession() as session:
            routes = router(session)
            by_prefix = routes.route("library/alpine", "docker.io", True, never_local)
            by_host = routes.route("org/tool", "ghcr.io", True, never_local)
        assert by_prefix is not None and by_prefix.local == "docker.io/library/alpine"
        assert by_host is not None and by_host.local == "ghcr/org/tool"

    async def test_reads_with_no_namespace_go_to_the_default_unless_local(self) -> None:
        async with aiohttp.ClientSession() as session:
            routes = router(session)
            mirrored = routes.route("library/alpine", None, True, never_local)
            local = routes.route("team/app", None, True, lambda name: name == "team/app")
            pushed = routes.route("team/new", None, False, never_local)
        assert mirrored is not None and mirrored.local == "docker.io/library/alpine"
        assert local is None
        assert pushed is None

    async def test_an_unknown_namespace_falls_back_to_the_name(self) -> None:
        async with aiohttp.ClientSession() as session:
            route = router(session).route("ghcr/org/tool", "quay.io", True, never_local)
        assert route is not None and route.upstream.name == "ghcr"


class TestConfig:
    def test_upstreams_are_read_from_toml_with_defaults(self, tmp_path: object) -> None:
        path = tmp_path / "c.toml"  # type: ignore[operator]
        path.write_text(
            '[[proxy.upstreams]]\nname = "hub"\nurl = "https://registry-1.docker.io"\n'
            'prefix = "docker.io"\ndockerhub_library = true\ndefault = true\n'
        )
        upstream = load_config(path, environ={}).proxy.upstreams[0]
        assert upstream.tag_ttl_seconds == 300
        assert upstream.dockerhub_library and upstream.default

    @pytest.mark.parametrize(
        "upstreams",
        [
            (("a", "x"), ("b", "x/y")),
            (("a", "x"), ("b", "x")),
        ],
    )
    def test_overlapping_prefixes_are_refused(self, upstreams: tuple[tuple[str, str], ...]) -> None:
        with pytest.raises(ConfigError, match="overlap"):
            ProxyConfig(
                upstreams=tuple(
                    UpstreamConfig(name=n, url="http://u", prefix=p) for n, p in upstreams
                )
            )

    def test_two_defaults_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="default"):
            ProxyConfig(
                upstreams=(
                    UpstreamConfig(name="a", url="http://a", prefix="a", default=True),
                    UpstreamConfig(name="b", url="http://b", prefix="b", default=True),
                )
            )

    def test_an_upstream_needs_an_http_url(self) -> None:
        with pytest.raises(ConfigError, match="url"):
            UpstreamConfig(name="a", url="ftp://a", prefix="a")


class TestWrites:
    async def test_a_push_to_a_proxied_repository_is_refused_as_unsupported(
        self, make_mirror: MirrorFactory
    ) -> None:
        mirror = await make_mirror()
        response = await mirror.post("/v2/up/team/app/blobs/uploads/")
        assert response.status == 405
        error = (await response.json())["errors"][0]
        assert error["code"] == "UNSUPPORTED"
        assert "read-only mirror" in error["message"]
        put = await mirror.put("/v2/up/team/app/manifests/v1", data=b"{}")
        assert put.status == 405

    async def test_a_push_outside_every_prefix_is_local(self, make_mirror: MirrorFactory) -> None:
        mirror = await make_mirror()
        response = await mirror.post("/v2/team/app/blobs/uploads/")
        assert response.status == 202


class TestDecorators:
    @pytest.mark.parametrize(
        ("decorator", "service"),
        [(ProxyBlobStore, BlobStore), (ProxyManifestStore, ManifestStore)],
    )
    def test_every_public_method_of_the_service_is_decorated(
        self, decorator: type, service: type
    ) -> None:
        """The decorators hold no state of the service: a method they do not override
        would run the service's code on an empty object."""
        public = {n for n in vars(service) if not n.startswith("_") and callable(vars(service)[n])}
        assert public <= set(vars(decorator))


class TestPages:
    async def test_pages_outside_the_api_are_not_routed(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        """The web page names repositories as they are cached; it never reaches upstreams."""
        upstream.add_image("library/alpine", "3", b"layer")
        mirror = await make_mirror(default=True)
        await mirror.get("/v2/library/alpine/manifests/3")
        assert (await mirror.get("/ui/r/up/library/alpine")).status == 200
        assert (await mirror.get("/ui/r/library/alpine")).status == 404
        assert upstream.count("GET", "/manifests/") == 1
