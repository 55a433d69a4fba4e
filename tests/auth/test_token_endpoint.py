"""The built-in `GET /token`: credentials in, a token for what the rules allow out."""

from __future__ import annotations

from typing import Any

import jwt
from aiohttp.test_utils import TestClient

from registry.app import create_app
from registry.drivers.inmemory import InMemoryDriver
from tests.api.oci import push_image
from tests.auth.conftest import ISSUER, SERVICE, KeyPair, Modes, Serve, basic, bearer


def decode(token: str, keys: KeyPair) -> dict[str, Any]:
    return jwt.decode(
        token, keys.private.public_key(), algorithms=["RS256"], audience=SERVICE, issuer=ISSUER
    )


async def fetch_token(
    client: TestClient, *scopes: str, headers: dict[str, str] | None = None
) -> str:
    params = [("service", SERVICE), *(("scope", scope) for scope in scopes)]
    response = await client.get("/token", params=params, headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["token"] == body["access_token"]
    return str(body["token"])


class TestTokenEndpoint:
    async def test_user_gets_a_token_for_what_was_asked_and_allowed(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair
    ) -> None:
        client = await serve(modes.issuing)
        response = await client.get(
            "/token",
            params={"service": SERVICE, "scope": "repository:team/app:pull,push"},
            headers=basic("carol"),
        )
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        body = await response.json()
        assert body["expires_in"] == 300
        assert body["issued_at"].endswith("Z")
        claims = decode(body["token"], rsa_keys)
        assert claims["sub"] == "carol"
        assert claims["access"] == [
            {"type": "repository", "name": "team/app", "actions": ["pull", "push"]}
        ]
        assert claims["exp"] - claims["iat"] == 300

    async def test_user_asking_for_more_than_allowed_gets_less(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair
    ) -> None:
        client = await serve(modes.issuing)
        token = await fetch_token(
            client, "repository:team/app:pull,push,delete", headers=basic("bob")
        )
        assert decode(token, rsa_keys)["access"] == [
            {"type": "repository", "name": "team/app", "actions": ["pull"]}
        ]

    async def test_scopes_may_repeat_or_be_space_separated(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair
    ) -> None:
        client = await serve(modes.issuing)
        token = await fetch_token(
            client,
            "repository:a:pull repository:b:push",
            "registry:catalog:*",
            "nonsense",
            "repository(plugin):c:pull",
            headers=basic("alice"),
        )
        assert decode(token, rsa_keys)["access"] == [
            {"type": "repository", "name": "a", "actions": ["pull"]},
            {"type": "repository", "name": "b", "actions": ["push"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
            {"type": "repository", "name": "c", "actions": ["pull"]},
        ]

    async def test_anonymous_client_gets_a_token_for_public_pulls_only(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair
    ) -> None:
        client = await serve(modes.issuing)
        token = await fetch_token(
            client, "repository:public/base:pull,push", "repository:team/app:pull"
        )
        claims = decode(token, rsa_keys)
        assert claims["sub"] == ""
        assert claims["access"] == [
            {"type": "repository", "name": "public/base", "actions": ["pull"]}
        ]

    async def test_wrong_password_is_401_with_the_basic_challenge(
        self, serve: Serve, modes: Modes
    ) -> None:
        client = await serve(modes.issuing)
        response = await client.get("/token", headers=basic("alice", "wrong"))
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="Cargobay"'
        assert (await response.json())["errors"][0]["code"] == "UNAUTHORIZED"

    async def test_challenge_points_at_the_endpoint_on_the_host_the_client_used(
        self, serve: Serve, modes: Modes
    ) -> None:
        client = await serve(modes.issuing)
        response = await client.get("/v2/team/app/tags/list")
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer realm="http://{client.host}:{client.port}/token",service="{SERVICE}",'
            'scope="repository:team/app:pull"'
        )

    async def test_tokens_it_issues_open_the_registry_as_far_as_they_go(
        self, serve: Serve, modes: Modes
    ) -> None:
        tokens = await serve(modes.issuing)
        carol = await fetch_token(tokens, "repository:team/app:pull,push", headers=basic("carol"))
        bob = await fetch_token(tokens, "repository:team/app:pull,push", headers=basic("bob"))
        # Tokens are signed, not stored: another process with the same key accepts them.
        client = await serve(modes.issuing, headers=bearer(carol))
        image = await push_image(client, "team/app")

        pulled = await client.get(f"/v2/team/app/manifests/{image.digest}", headers=bearer(bob))
        assert pulled.status == 200
        pushed = await client.post("/v2/team/app/blobs/uploads/", headers=bearer(bob))
        assert pushed.status == 401
        assert 'error="insufficient_scope"' in pushed.headers["WWW-Authenticate"]
        deleted = await client.delete(
            f"/v2/team/app/manifests/{image.digest}", headers=bearer(carol)
        )
        assert deleted.status == 401

    async def test_registry_trusting_another_token_server_serves_no_token_endpoint(
        self, serve: Serve, modes: Modes
    ) -> None:
        client = await serve(modes.token)
        assert (await client.get("/token")).status == 404
        routes = create_app(modes.token, InMemoryDriver()).router.routes()
        assert all(r.resource is None or r.resource.canonical != "/token" for r in routes)
