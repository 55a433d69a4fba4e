"""Fuzzing what clients control in authentication: headers, tokens and scopes."""

from __future__ import annotations

import base64

import jwt
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.auth.access import compile_pattern, format_scopes, parse_scope
from tests.auth.conftest import Modes, Serve

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
AUTHORIZATION = st.one_of(
    HEADER_TEXT,
    st.builds(lambda s: f"Basic {s}", HEADER_TEXT),
    st.builds(lambda b: "Basic " + base64.b64encode(b).decode(), st.binary(max_size=80)),
    st.builds(lambda s: f"Bearer {s}", HEADER_TEXT),
    st.builds(
        lambda parts: "Bearer " + ".".join(base64.urlsafe_b64encode(p).decode() for p in parts),
        st.lists(st.binary(max_size=60), min_size=3, max_size=3),
    ),
)


@pytest.fixture
async def guarded(serve: Serve, modes: Modes) -> list[TestClient]:
    """A registry in each mode that checks credentials, shared by a test's examples."""
    return [await serve(modes.htpasswd), await serve(modes.token)]


@pytest.fixture
async def issuing(serve: Serve, modes: Modes) -> TestClient:
    return await serve(modes.issuing)


class TestFuzzAuthentication:
    @FUZZ
    @given(header=AUTHORIZATION)
    async def test_forged_credentials_never_get_in_nor_fail_the_server(
        self, guarded: list[TestClient], header: str
    ) -> None:
        for client in guarded:
            response = await client.get("/v2/team/app/tags/list", headers={"Authorization": header})
            assert response.status == 401, (header, await response.text())
            assert response.headers["WWW-Authenticate"]

    @FUZZ
    @given(scopes=st.lists(st.text(max_size=60), max_size=4))
    async def test_any_scopes_get_an_anonymous_token_for_public_pulls_at_most(
        self, issuing: TestClient, scopes: list[str]
    ) -> None:
        response = await issuing.get("/token", params=[("scope", s) for s in scopes])
        assert response.status == 200
        claims = jwt.decode((await response.json())["token"], options={"verify_signature": False})
        for entry in claims["access"]:
            assert entry["type"] == "repository"
            assert compile_pattern("public/*").fullmatch(entry["name"])
            assert entry["actions"] == ["pull"]

    @given(text=st.text(max_size=80))
    def test_scope_parsing_never_raises_and_round_trips(self, text: str) -> None:
        accesses = parse_scope(text)
        if accesses and " " not in text and all(a.action for a in accesses):
            assert parse_scope(format_scopes(accesses)) == accesses
