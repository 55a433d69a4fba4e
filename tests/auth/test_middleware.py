"""Every route under every auth mode and kind of credential answers as the token spec says.

Each test walks the whole route table (`ROUTES` must list exactly the routes
the app serves) and collects the routes that answered wrongly, so one failure
shows every route that is off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from registry.app import create_app
from registry.config import Config
from registry.drivers.inmemory import InMemoryDriver
from tests.api.oci import digest_of, push_blob, push_image
from tests.auth.conftest import (
    REALM,
    SERVICE,
    KeyPair,
    Modes,
    Serve,
    basic,
    bearer,
    repo_access,
    token_claims,
    with_storage,
)

NAME = "team/app"
DIGEST = digest_of(b"some blob")
UPLOAD_ID = "0b0c1e4e-6f6a-4c1e-9d0e-2f7c3b1a9d00"
PULL = f"repository:{NAME}:pull"
PUSH = f"repository:{NAME}:pull,push"
DELETE = f"repository:{NAME}:delete"
CATALOG = "registry:catalog:*"

#: (method, route as registered) -> the scope it needs ("" for an authenticated client).
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/v2/"): "",
    ("HEAD", "/v2/"): "",
    ("GET", "/v2"): "",
    ("HEAD", "/v2"): "",
    ("GET", "/v2/_catalog"): CATALOG,
    ("HEAD", "/v2/_catalog"): CATALOG,
    ("GET", "/v2/{name}/tags/list"): PULL,
    ("HEAD", "/v2/{name}/tags/list"): PULL,
    ("GET", "/v2/{name}/manifests/{reference}"): PULL,
    ("HEAD", "/v2/{name}/manifests/{reference}"): PULL,
    ("PUT", "/v2/{name}/manifests/{reference}"): PUSH,
    ("DELETE", "/v2/{name}/manifests/{reference}"): DELETE,
    ("POST", "/v2/{name}/blobs/uploads/"): PUSH,
    ("POST", "/v2/{name}/blobs/uploads"): PUSH,
    ("PATCH", "/v2/{name}/blobs/uploads/{upload_id}"): PUSH,
    ("PUT", "/v2/{name}/blobs/uploads/{upload_id}"): PUSH,
    ("GET", "/v2/{name}/blobs/uploads/{upload_id}"): PUSH,
    ("DELETE", "/v2/{name}/blobs/uploads/{upload_id}"): PUSH,
    ("GET", "/v2/{name}/blobs/{digest}"): PULL,
    ("HEAD", "/v2/{name}/blobs/{digest}"): PULL,
    ("DELETE", "/v2/{name}/blobs/{digest}"): DELETE,
    ("GET", "/v2/{name}/referrers/{digest}"): PULL,
    ("HEAD", "/v2/{name}/referrers/{digest}"): PULL,
}
#: Routes that need nothing: the health checks (tests/api/test_health.py checks them).
PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("HEAD", "/healthz"),
    ("GET", "/readyz"),
    ("HEAD", "/readyz"),
}


def concrete(path: str) -> str:
    return (
        path.replace("{name}", NAME)
        .replace("{reference}", "latest")
        .replace("{digest}", DIGEST)
        .replace("{upload_id}", UPLOAD_ID)
    )


Check = Callable[[str, ClientResponse, dict[str, Any] | None], str | None]


async def sweep(client: TestClient, headers: dict[str, str], check: Check) -> None:
    """Request every route with `headers`; fail listing the routes `check` objects to."""
    failures: list[str] = []
    for (method, path), scope in ROUTES.items():
        async with client.request(method, concrete(path), headers=headers, data=b"") as response:
            body = None if method == "HEAD" else json.loads(await response.read() or b"null")
            problem = check(scope, response, body)
        if problem:
            failures.append(f"{method} {path}: {problem}")
    assert not failures, "\n".join(failures)


def error_code(body: dict[str, Any] | None) -> str | None:
    return body["errors"][0]["code"] if body and "errors" in body else None


def passes(scope: str, response: ClientResponse, body: dict[str, Any] | None) -> str | None:
    """The request reached its handler and the handler answered: no auth refusal, and no
    server fault (these requests are empty or name nothing, so a client error at most)."""
    if response.status in (401, 403) or "WWW-Authenticate" in response.headers:
        return f"refused with {response.status} {body}"
    if response.status >= 500:
        return f"server fault {response.status} {body}"
    if response.status >= 400 and error_code(body) in ("UNAUTHORIZED", "DENIED"):
        return f"refused with {response.status} {body}"
    return None


def expect_basic_challenge(
    scope: str, response: ClientResponse, body: dict[str, Any] | None
) -> str | None:
    if response.status != 401:
        return f"status {response.status}, expected 401"
    if response.headers.get("WWW-Authenticate") != 'Basic realm="Cargobay"':
        return f"challenge {response.headers.get('WWW-Authenticate')!r}"
    if body is not None and error_code(body) != "UNAUTHORIZED":
        return f"body {body}"
    return None


def bearer_challenge(scope: str, error: str = "") -> str:
    challenge = f'Bearer realm="{REALM}",service="{SERVICE}"'
    if scope:
        challenge += f',scope="{scope}"'
    if error:
        challenge += f',error="{error}"'
    return challenge


def expect_bearer_challenge(error: str = "") -> Check:
    def check(scope: str, response: ClientResponse, body: dict[str, Any] | None) -> str | None:
        if response.status != 401:
            return f"status {response.status}, expected 401"
        challenge = response.headers.get("WWW-Authenticate")
        if challenge != bearer_challenge(scope, error):
            return f"challenge {challenge!r}, expected {bearer_challenge(scope, error)!r}"
        if body is not None and error_code(body) != "UNAUTHORIZED":
            return f"body {body}"
        return None

    return check


def full_access() -> list[dict[str, Any]]:
    return [
        repo_access(NAME, "pull", "push", "delete"),
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]


class TestChecks:
    """The sweep's own checks: a crashed handler must fail them."""

    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_passes_refuses_a_server_fault(self, status: int) -> None:
        response = cast(ClientResponse, SimpleNamespace(status=status, headers={}))
        body = {"errors": [{"code": "UNKNOWN", "message": "internal error"}]}
        assert passes(PULL, response, body) is not None

    @pytest.mark.parametrize("status", [200, 201, 202, 400, 404])
    def test_passes_takes_a_handler_answer(self, status: int) -> None:
        response = cast(ClientResponse, SimpleNamespace(status=status, headers={}))
        body = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "m"}]} if status >= 400 else {}
        assert passes(PULL, response, body) is None


class TestRouteTable:
    def test_every_route_the_app_serves_is_swept(self) -> None:
        """Every API route; the others are the web page's, which checks its users itself
        (tests/ui)."""
        app = create_app(Config(), InMemoryDriver())
        served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
        api = {(method, path) for method, path in served if path.startswith("/v2")}
        assert api == set(ROUTES)
        web_page = {(method, path) for method, path in served if path == "/" or path[:3] == "/ui"}
        assert served - api - web_page == PUBLIC_ROUTES


class TestNoAuth:
    async def test_every_route_is_open_to_anonymous_clients(
        self, serve: Serve, modes: Modes
    ) -> None:
        await sweep(await serve(modes.none), {}, passes)


class TestBasicMode:
    async def test_anonymous_client_gets_the_basic_challenge_on_every_route(
        self, serve: Serve, modes: Modes
    ) -> None:
        await sweep(await serve(modes.htpasswd), {}, expect_basic_challenge)

    async def test_wrong_password_gets_the_basic_challenge_on_every_route(
        self, serve: Serve, modes: Modes
    ) -> None:
        await sweep(await serve(modes.htpasswd), basic("alice", "wrong"), expect_basic_challenge)

    async def test_unknown_user_gets_the_basic_challenge(self, serve: Serve, modes: Modes) -> None:
        client = await serve(modes.htpasswd)
        response = await client.get("/v2/", headers={"Authorization": "Basic bWFsbG9yeTp4"})
        assert response.status == 401

    async def test_bearer_token_gets_the_basic_challenge_on_every_route(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair
    ) -> None:
        token = rsa_keys.sign(token_claims(full_access()))
        await sweep(await serve(modes.htpasswd), bearer(token), expect_basic_challenge)

    @pytest.mark.parametrize(
        "header",
        ["Basic", "Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"\xff:\xfe").decode()],
    )
    async def test_malformed_credentials_get_the_basic_challenge(
        self, serve: Serve, modes: Modes, header: str
    ) -> None:
        client = await serve(modes.htpasswd)
        response = await client.get("/v2/", headers={"Authorization": header})
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="Cargobay"'

    async def test_valid_user_with_every_right_reaches_every_handler(
        self, serve: Serve, modes: Modes
    ) -> None:
        await sweep(await serve(modes.htpasswd), basic("alice"), passes)

    async def test_user_allowed_to_pull_is_denied_everything_else(
        self, serve: Serve, modes: Modes
    ) -> None:
        def check(scope: str, response: ClientResponse, body: dict[str, Any] | None) -> str | None:
            if scope in ("", PULL):
                return passes(scope, response, body)
            if response.status != 403 or "WWW-Authenticate" in response.headers:
                return f"status {response.status}, expected 403 without challenge"
            if body is not None and error_code(body) != "DENIED":
                return f"body {body}"
            return None

        await sweep(await serve(modes.htpasswd), basic("bob"), check)

    async def test_anonymous_pull_is_allowed_where_a_rule_says_so_and_nothing_more(
        self, serve: Serve, modes: Modes
    ) -> None:
        driver = InMemoryDriver()
        alice = await serve(modes.htpasswd, driver, headers=basic("alice"))
        image = await push_image(alice, "public/base")
        client = await serve(modes.htpasswd, driver)

        pulled = await client.get(f"/v2/public/base/manifests/{image.digest}")
        assert pulled.status == 200
        assert await pulled.read() == image.manifest
        pushed = await client.post("/v2/public/base/blobs/uploads/")
        assert pushed.status == 401
        assert (await client.get("/v2/public/base/nested/tags/list")).status == 401
        assert (await client.get("/v2/team/app/tags/list")).status == 401

    async def test_deleting_needs_the_delete_action(self, serve: Serve, modes: Modes) -> None:
        driver = InMemoryDriver()
        alice = await serve(modes.htpasswd, driver, headers=basic("alice"))
        image = await push_image(alice, "team/app")
        carol = await serve(modes.htpasswd, driver, headers=basic("carol"))

        refused = await carol.delete(f"/v2/team/app/manifests/{image.digest}")
        assert refused.status == 403
        assert error_code(await refused.json()) == "DENIED"
        assert (await carol.get(f"/v2/team/app/manifests/{image.digest}")).status == 200

    async def test_empty_basic_credentials_count_as_anonymous(
        self, serve: Serve, modes: Modes
    ) -> None:
        client = await serve(modes.htpasswd)
        response = await client.get(
            "/v2/public/x/tags/list",
            headers={"Authorization": "Basic " + base64.b64encode(b":").decode()},
        )
        assert response.status == 404  # reached the handler: NAME_UNKNOWN

    async def test_refusals_say_which_access_was_missing(self, serve: Serve, modes: Modes) -> None:
        client = await serve(modes.htpasswd, headers=basic("bob"))
        response = await client.delete(f"/v2/{NAME}/manifests/latest")
        assert (await response.json())["errors"][0]["detail"] == [
            {"Type": "repository", "Name": NAME, "Action": "delete"}
        ]


class TestTokenMode:
    async def test_anonymous_client_gets_the_bearer_challenge_with_the_needed_scope(
        self, serve: Serve, modes: Modes
    ) -> None:
        await sweep(await serve(modes.token), {}, expect_bearer_challenge())

    async def test_basic_credentials_get_the_bearer_challenge(
        self, serve: Serve, modes: Modes
    ) -> None:
        await sweep(await serve(modes.token), basic("alice"), expect_bearer_challenge())

    async def test_valid_token_with_the_scope_reaches_every_handler(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair
    ) -> None:
        token = rsa_keys.sign(token_claims(full_access()))
        await sweep(await serve(modes.token), bearer(token), passes)

    async def test_es256_token_is_accepted(
        self, serve: Serve, modes: Modes, ec_keys: KeyPair
    ) -> None:
        token = ec_keys.sign(token_claims(full_access()))
        await sweep(await serve(modes.token), bearer(token), passes)

    async def test_token_with_too_narrow_a_scope_gets_insufficient_scope(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair
    ) -> None:
        """A pull-only token pulls, and is asked to come back with a wider one for the rest."""
        token = rsa_keys.sign(token_claims([repo_access(NAME, "pull")]))
        insufficient = expect_bearer_challenge("insufficient_scope")

        def check(scope: str, response: ClientResponse, body: dict[str, Any] | None) -> str | None:
            if scope in ("", PULL):
                return passes(scope, response, body)
            return insufficient(scope, response, body)

        await sweep(await serve(modes.token), bearer(token), check)

    async def test_token_for_another_repository_gets_insufficient_scope(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair
    ) -> None:
        token = rsa_keys.sign(token_claims([repo_access("team/other", "pull", "push", "delete")]))
        insufficient = expect_bearer_challenge("insufficient_scope")

        def check(scope: str, response: ClientResponse, body: dict[str, Any] | None) -> str | None:
            return (
                passes(scope, response, body)
                if scope == ""
                else insufficient(scope, response, body)
            )

        await sweep(await serve(modes.token), bearer(token), check)

    @pytest.mark.parametrize(
        "overrides",
        [
            pytest.param({"exp": int(time.time()) - 120}, id="expired"),
            pytest.param({"nbf": int(time.time()) + 600}, id="not-yet-valid"),
            pytest.param({"aud": "another-registry"}, id="another-audience"),
            pytest.param({"iss": "someone-else"}, id="untrusted-issuer"),
            pytest.param({"exp": None}, id="no-expiry"),
            pytest.param({"access": "everything"}, id="malformed-access"),
        ],
    )
    async def test_invalid_token_gets_invalid_token_on_every_route(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair, overrides: dict[str, Any]
    ) -> None:
        claims = {**token_claims(full_access()), **overrides}
        claims = {k: v for k, v in claims.items() if v is not None}
        token = rsa_keys.sign(claims)
        await sweep(
            await serve(modes.token), bearer(token), expect_bearer_challenge("invalid_token")
        )

    async def test_token_expired_within_the_leeway_is_accepted(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair
    ) -> None:
        token = rsa_keys.sign(token_claims(full_access(), exp=int(time.time()) - 20))
        client = await serve(modes.token)
        assert (await client.get("/v2/_catalog", headers=bearer(token))).status == 200

    async def test_token_signed_by_an_unknown_key_gets_invalid_token(
        self, serve: Serve, modes: Modes, stranger_keys: KeyPair
    ) -> None:
        token = stranger_keys.sign(token_claims(full_access()))
        await sweep(
            await serve(modes.token), bearer(token), expect_bearer_challenge("invalid_token")
        )

    async def test_unsigned_alg_none_token_gets_invalid_token(
        self, serve: Serve, modes: Modes
    ) -> None:
        token = _unsigned(token_claims(full_access()))
        await sweep(
            await serve(modes.token), bearer(token), expect_bearer_challenge("invalid_token")
        )

    async def test_hmac_token_keyed_with_the_public_key_gets_invalid_token(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair
    ) -> None:
        """The classic algorithm-confusion attack: HS256 with the RSA public key as the secret."""
        token = _hmac_signed(token_claims(full_access()), rsa_keys.public_pem.read_bytes())
        await sweep(
            await serve(modes.token), bearer(token), expect_bearer_challenge("invalid_token")
        )

    @pytest.mark.parametrize("raw", ["", "garbage", "a.b.c", "e30.e30.", "Bearer"])
    async def test_malformed_token_gets_a_challenge(
        self, serve: Serve, modes: Modes, raw: str
    ) -> None:
        client = await serve(modes.token)
        response = await client.get("/v2/", headers={"Authorization": f"Bearer {raw}"})
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith(f'Bearer realm="{REALM}"')

    async def test_token_with_a_wrong_kid_is_still_checked_against_keys_without_one(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair
    ) -> None:
        token = rsa_keys.sign(token_claims(full_access()), headers={"kid": "ABCD:EFGH"})
        client = await serve(modes.token)
        assert (await client.get("/v2/", headers=bearer(token))).status == 200


class TestMount:
    async def test_mount_from_a_readable_repository_links_the_blob(
        self, serve: Serve, modes: Modes
    ) -> None:
        alice = await serve(modes.htpasswd, headers=basic("alice"))
        digest = await push_blob(alice, "team/source", b"shared layer")

        response = await alice.post(
            f"/v2/team/target/blobs/uploads/?mount={digest}&from=team/source"
        )
        assert response.status == 201

    @pytest.mark.parametrize("source", ["&from=private/source", ""], ids=["from", "without-from"])
    async def test_mount_from_an_unreadable_repository_becomes_an_upload(
        self, serve: Serve, modes: Modes, source: str
    ) -> None:
        """carol may push team/** but not read private/*: the blob is not linked, she uploads,
        whether she names the repository or not."""
        driver = InMemoryDriver()
        alice = await serve(modes.htpasswd, driver, headers=basic("alice"))
        digest = await push_blob(alice, "private/source", b"secret layer")
        carol = await serve(modes.htpasswd, driver, headers=basic("carol"))

        response = await carol.post(f"/v2/team/target/blobs/uploads/?mount={digest}{source}")
        assert response.status == 202
        assert (await carol.head(f"/v2/team/target/blobs/{digest}")).status == 404

    @pytest.mark.parametrize("source", ["&from=team/source", ""], ids=["from", "without-from"])
    async def test_token_mount_needs_pull_on_the_source(
        self, serve: Serve, modes: Modes, rsa_keys: KeyPair, source: str
    ) -> None:
        """Named or not, a repository the token may not pull is not mounted from."""
        driver = InMemoryDriver()
        alice = await serve(modes.none, driver)
        digest = await push_blob(alice, "team/source", b"layer")
        client = await serve(modes.token, driver)
        narrow = rsa_keys.sign(token_claims([repo_access("team/target", "pull", "push")]))
        wide = rsa_keys.sign(
            token_claims(
                [repo_access("team/target", "pull", "push"), repo_access("team/source", "pull")]
            )
        )
        url = f"/v2/team/target/blobs/uploads/?mount={digest}{source}"

        assert (await client.post(url, headers=bearer(narrow))).status == 202
        assert (await client.post(url, headers=bearer(wide))).status == 201

    async def test_mount_without_from_links_a_blob_from_a_readable_repository(
        self, serve: Serve, modes: Modes
    ) -> None:
        """carol may read team/**: a blob there is mounted without her naming the source."""
        driver = InMemoryDriver()
        alice = await serve(modes.htpasswd, driver, headers=basic("alice"))
        digest = await push_blob(alice, "team/source", b"shared layer")
        carol = await serve(modes.htpasswd, driver, headers=basic("carol"))

        response = await carol.post(f"/v2/team/target/blobs/uploads/?mount={digest}")
        assert response.status == 201
        assert (await carol.head(f"/v2/team/target/blobs/{digest}")).status == 200


class TestReadOnly:
    @pytest.mark.parametrize("mode", ["none", "htpasswd"])
    async def test_writes_answer_unsupported_and_reads_still_work(
        self, serve: Serve, modes: Modes, mode: str
    ) -> None:
        driver = InMemoryDriver()
        config: Config = getattr(modes, mode)
        writer = await serve(config, driver, headers=basic("alice"))
        image = await push_image(writer, NAME)
        reader = await serve(with_storage(config, read_only=True), driver, headers=basic("alice"))

        for method, path in [
            ("POST", f"/v2/{NAME}/blobs/uploads/"),
            ("PUT", f"/v2/{NAME}/manifests/v2"),
            ("DELETE", f"/v2/{NAME}/manifests/{image.digest}"),
            ("DELETE", f"/v2/{NAME}/blobs/{DIGEST}"),
            ("PATCH", f"/v2/{NAME}/blobs/uploads/{UPLOAD_ID}"),
        ]:
            response = await reader.request(method, path, data=b"x")
            body = await response.json()
            assert response.status == 405, (method, path)
            assert error_code(body) == "UNSUPPORTED"
            assert "read-only" in body["errors"][0]["message"]
        assert (await reader.get(f"/v2/{NAME}/manifests/latest")).status == 200

    async def test_anonymous_write_to_a_read_only_registry_is_still_challenged(
        self, serve: Serve, modes: Modes
    ) -> None:
        client = await serve(with_storage(modes.htpasswd, read_only=True))
        assert (await client.post(f"/v2/{NAME}/blobs/uploads/")).status == 401


class TestHostileNames:
    @pytest.mark.parametrize(
        "path",
        [
            "/v2/team%0d%0aSet-Cookie:%20x/tags/list",
            "/v2/team%22,scope=%22x/tags/list",
            "/v2/../../etc/tags/list",
            "/v2/team/%2e%2e/%2e%2e/x/manifests/latest",
        ],
    )
    async def test_invalid_names_are_refused_before_any_challenge_is_built(
        self, serve: Serve, modes: Modes, path: str
    ) -> None:
        client = await serve(modes.token)
        response = await client.get(path)
        assert response.status in (400, 404)
        assert "WWW-Authenticate" not in response.headers


class TestLogs:
    async def test_failed_login_is_logged_with_the_user_and_never_the_password(
        self, serve: Serve, modes: Modes, caplog: pytest.LogCaptureFixture
    ) -> None:
        client = await serve(modes.htpasswd)
        with caplog.at_level(logging.DEBUG):
            await client.get("/v2/", headers=basic("alice", "hunter2-typo"))
            await client.get("/v2/", headers=basic("alice"))
        assert "failed login for user 'alice'" in caplog.text
        assert "hunter2-typo" not in caplog.text
        assert "alice-secret" not in caplog.text

    async def test_rejected_token_is_logged_without_the_token(
        self, serve: Serve, modes: Modes, stranger_keys: KeyPair, caplog: pytest.LogCaptureFixture
    ) -> None:
        token = stranger_keys.sign(token_claims(full_access()))
        client = await serve(modes.token)
        with caplog.at_level(logging.DEBUG):
            await client.get("/v2/", headers=bearer(token))
        assert "rejected token" in caplog.text
        assert token not in caplog.text
        assert token.split(".")[2] not in caplog.text


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hmac_signed(claims: dict[str, Any], secret: bytes) -> str:
    signing_input = (
        _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + _b64(json.dumps(claims).encode())
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"
