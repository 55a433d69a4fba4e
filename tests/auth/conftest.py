"""Fixtures of the auth tests: users, keys, tokens signed at will, and registries in each mode.

The users, groups and rules are the same everywhere:

- alice may do everything, everywhere, and list the catalog;
- bob (group `readers`) may pull `team/**`;
- carol may pull and push `team/**` but not delete;
- anyone, logged in or not, may pull `public/*`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import pytest
from aiohttp import encode_basic_auth
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry.app import create_app
from registry.config import (
    AccessRule,
    AuthConfig,
    Config,
    GroupConfig,
    HtpasswdConfig,
    TokenConfig,
)
from registry.drivers.inmemory import InMemoryDriver

PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
GROUPS = (GroupConfig(name="readers", members=("bob",)),)
RULES = (
    AccessRule(
        repositories=("**",), users=("alice",), actions=("pull", "push", "delete", "catalog")
    ),
    AccessRule(repositories=("team/**",), groups=("readers",), actions=("pull",)),
    AccessRule(repositories=("team/**",), users=("carol",), actions=("pull", "push")),
    AccessRule(repositories=("public/*",), anonymous=True, actions=("pull",)),
)
ISSUER = "test-issuer"
SERVICE = "registry.test"
REALM = "https://auth.test/token"


def basic(user: str, password: str | None = None) -> dict[str, str]:
    """The Authorization header of `user` (with their right password unless one is given)."""
    secret = PASSWORDS[user] if password is None else password
    return {"Authorization": encode_basic_auth(user, secret)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class KeyPair:
    """A signing key and the PEM files of both halves."""

    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    private_pem: Path
    public_pem: Path
    algorithm: str

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)


def token_claims(access: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    """Claims of a token for our service, valid for five minutes, with `access`."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "access": access if access is not None else [],
    }
    claims.update(overrides)
    return claims


def repo_access(name: str, *actions: str) -> dict[str, Any]:
    return {"type": "repository", "name": name, "actions": list(actions)}


def _write_keys(
    directory: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, algorithm: str
) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    private_pem = directory / "key.pem"
    public_pem = directory / "public.pem"
    private_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(key, private_pem, public_pem, algorithm)


@pytest.fixture(scope="session")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """The RSA key trusted by token-mode registries."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _write_keys(tmp_path_factory.mktemp("rsa"), key, "RS256")


@pytest.fixture(scope="session")
def ec_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """An EC P-256 key, trusted alongside the RSA one."""
    return _write_keys(
        tmp_path_factory.mktemp("ec"), ec.generate_private_key(ec.SECP256R1()), "ES256"
    )


@pytest.fixture(scope="session")
def stranger_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """A key nobody trusts."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _write_keys(tmp_path_factory.mktemp("stranger"), key, "RS256")


@pytest.fixture(scope="session")
def htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An htpasswd file of the three users, bcrypt at the lowest cost to keep tests fast."""
    path = tmp_path_factory.mktemp("htpasswd") / "htpasswd"
    write_htpasswd(path, PASSWORDS)
    return path


def write_htpasswd(path: Path, passwords: dict[str, str]) -> None:
    lines = [
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}"
        for user, password in passwords.items()
    ]
    path.write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class Modes:
    """The configuration of each auth mode the tests run registries in."""

    htpasswd: Config
    token: Config
    issuing: Config
    none: Config = field(default_factory=Config)


@pytest.fixture(scope="session")
def modes(htpasswd: Path, rsa_keys: KeyPair, ec_keys: KeyPair) -> Modes:
    rules = {"access": RULES, "groups": GROUPS}
    return Modes(
        htpasswd=Config(
            auth=AuthConfig(mode="htpasswd", htpasswd=HtpasswdConfig(str(htpasswd)), **rules)
        ),
        token=Config(
            auth=AuthConfig(
                mode="token",
                token=TokenConfig(
                    realm=REALM,
                    service=SERVICE,
                    issuer=ISSUER,
                    public_keys=(str(rsa_keys.public_pem), str(ec_keys.public_pem)),
                ),
            )
        ),
        issuing=Config(
            auth=AuthConfig(
                mode="token",
                htpasswd=HtpasswdConfig(str(htpasswd)),
                token=TokenConfig(
                    service=SERVICE, issuer=ISSUER, signing_key=str(rsa_keys.private_pem)
                ),
                **rules,
            )
        ),
    )


Serve = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a registry on a fresh in-memory storage for a config; clients closed after the test.

    Keyword arguments other than `driver` go to the `TestClient` (e.g. `auth=`).
    """
    clients: list[TestClient] = []

    async def start(
        config: Config, driver: InMemoryDriver | None = None, **kwargs: Any
    ) -> TestClient:
        client = TestClient(TestServer(create_app(config, driver or InMemoryDriver())), **kwargs)
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def with_storage(config: Config, **changes: Any) -> Config:
    """`config` with `[storage]` keys changed."""
    return replace(config, storage=replace(config.storage, **changes))
