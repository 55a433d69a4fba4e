"""Fixtures of the web page's tests: a registry app with the page, on one in-memory storage."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import bcrypt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.config import AccessRule, AuthConfig, Config, HtpasswdConfig
from registry.drivers.inmemory import InMemoryDriver

UiFactory = Callable[..., Awaitable[TestClient]]

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
#: alice may do everything; bob may pull team/*; anyone may pull public/*.
RULES = (
    AccessRule(repositories=("**",), users=("alice",), actions=("pull", "push", "delete")),
    AccessRule(repositories=("team/*",), users=("bob",), actions=("pull",)),
    AccessRule(repositories=("public/*",), anonymous=True, actions=("pull",)),
)


@pytest.fixture
async def ui() -> AsyncIterator[UiFactory]:
    """Start the registry (again) on one in-memory storage with `config`; return a client.

    Each start closes the client before it, as a restart would; the client keeps cookies.
    """
    storage = InMemoryDriver()
    clients: list[TestClient] = []

    async def start(config: Config | None = None) -> TestClient:
        for running in clients:
            await running.close()
        client = TestClient(TestServer(create_app(config or Config(), storage)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
def htpasswd_config(tmp_path: Path) -> Config:
    """htpasswd authentication with alice and bob and `RULES`."""
    path = tmp_path / "htpasswd"
    path.write_text(
        "".join(
            f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()}\n"
            for user, pw in PASSWORDS.items()
        )
    )
    return Config(
        auth=AuthConfig(mode="htpasswd", htpasswd=HtpasswdConfig(str(path)), access=RULES)
    )


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, "the page has no form token"
    return found.group(1)


async def log_in(client: TestClient, user: str, password: str | None = None) -> int:
    """Log in through the form, as a browser does; the status of the form's answer."""
    page = await (await client.get("/ui/login")).text()
    response = await client.post(
        "/ui/login",
        data={
            "username": user,
            "password": PASSWORDS[user] if password is None else password,
            "csrf": csrf_of(page),
            "next": "/ui/",
        },
        allow_redirects=False,
    )
    return response.status


def without_tags(page: str) -> str:
    """A page's text with its markup removed, to check what a user reads."""
    return re.sub(r"<[^>]+>", "", page)
