"""The route table: what each route needs, and no route left unclassified."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.auth.access import CATALOG, repository_access
from registry.auth.requirements import Body, Need, RouteRule, needed_accesses, route_rule
from registry.config import Config
from registry.drivers.inmemory import InMemoryDriver


class TestRouteRule:
    @pytest.mark.parametrize(
        ("method", "path", "rule"),
        [
            ("GET", "/v2/", RouteRule(Need.LOGIN)),
            ("GET", "/v2/_catalog", RouteRule(Need.CATALOG)),
            ("HEAD", "/v2/{name}/blobs/{digest}", RouteRule(Need.PULL)),
            ("PUT", "/v2/{name}/manifests/{reference}", RouteRule(Need.PUSH, Body.MANIFEST)),
            ("DELETE", "/v2/{name}/manifests/{reference}", RouteRule(Need.DELETE)),
            ("PATCH", "/v2/{name}/blobs/uploads/{upload_id}", RouteRule(Need.PUSH, Body.BLOB)),
            ("DELETE", "/v2/{name}/blobs/uploads/{upload_id}", RouteRule(Need.PUSH)),
            ("GET", "/token", RouteRule(Need.PUBLIC)),
        ],
    )
    def test_routes_need_what_distribution_asks(
        self, method: str, path: str, rule: RouteRule
    ) -> None:
        assert route_rule(method, path) == rule

    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", "/v2/_admin"), ("POST", "/v2/{name}/tags/list"), ("GET", "/metrics")],
    )
    def test_unknown_route_is_an_error(self, method: str, path: str) -> None:
        with pytest.raises(ValueError, match="no access rule"):
            route_rule(method, path)

    async def test_app_with_an_unclassified_route_does_not_start(self) -> None:
        async def debug(request: web.Request) -> web.Response:
            return web.Response()

        app = create_app(Config(), InMemoryDriver())
        app.router.add_get("/debug", debug)
        client = TestClient(TestServer(app))
        try:
            with pytest.raises(ValueError, match="/debug"):
                await client.start_server()
        finally:
            await client.close()

    def test_accesses_of_each_need(self) -> None:
        assert needed_accesses(Need.PUSH, "a") == repository_access("a", "pull", "push")
        assert needed_accesses(Need.DELETE, "a") == repository_access("a", "delete")
        assert needed_accesses(Need.CATALOG, None) == (CATALOG,)
        assert needed_accesses(Need.LOGIN, None) == ()
