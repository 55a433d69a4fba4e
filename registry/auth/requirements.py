"""What each route of the API needs from its client, derived from the route table.

`route_rule` classifies a route by its method and path pattern, as
Distribution does: reads need `pull`, writes `pull` and `push`, deletes
`delete`; every step of a blob upload (cancelling included) is part of a push;
`/v2/` needs only an authenticated client and `/v2/_catalog` the catalog. The
web page (`/`, `/ui` and `/ui/...`) is public here because it checks its users itself,
with the same users and rules (`registry.ui.sessions`); the token endpoint and the
health checks need nothing. A
route it cannot classify is an error at start-up, so a new route is never
served unprotected by accident.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from registry.api.health import HEALTH_PATH, READY_PATH
from registry.auth.access import CATALOG, DELETE, PULL, PUSH, Access, repository_access
from registry.auth.schemes import TOKEN_PATH


class Need(enum.Enum):
    """What a route asks of its client."""

    PUBLIC = "public"  # nothing: the token endpoint authenticates by itself
    LOGIN = "login"  # an authenticated client
    CATALOG = "catalog"
    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"


class Body(enum.Enum):
    """Which size limit a route's request body is held to."""

    NONE = "none"
    MANIFEST = "manifest"
    BLOB = "blob"


@dataclass(frozen=True, slots=True)
class RouteRule:
    need: Need
    body: Body = Body.NONE


def route_rule(method: str, path: str) -> RouteRule:
    """The rule of the route `method path` (`path` as registered, e.g. `/v2/{name}/tags/list`).

    Raises `ValueError` for a route this table does not know.
    """
    if path in (TOKEN_PATH, HEALTH_PATH, READY_PATH, "/", "/ui") or path.startswith("/ui/"):
        return RouteRule(Need.PUBLIC)
    if path in ("/v2/", "/v2"):
        return RouteRule(Need.LOGIN)
    if path == "/v2/_catalog":
        return RouteRule(Need.CATALOG)
    if path.startswith("/v2/{name}/"):
        writes = method in ("POST", "PUT", "PATCH")
        if "/blobs/uploads" in path:
            return RouteRule(Need.PUSH, Body.BLOB if writes else Body.NONE)
        if method in ("GET", "HEAD"):
            return RouteRule(Need.PULL)
        if method == "DELETE":
            return RouteRule(Need.DELETE)
        if writes and path.endswith("/manifests/{reference}"):
            return RouteRule(Need.PUSH, Body.MANIFEST)
    raise ValueError(f"no access rule for {method} {path}: add one to {__name__}")


def needed_accesses(need: Need, name: str | None) -> tuple[Access, ...]:
    """The accesses a request with `need` on repository `name` must be granted."""
    if need is Need.CATALOG:
        return (CATALOG,)
    if name is None:
        return ()
    if need is Need.PULL:
        return repository_access(name, PULL)
    if need is Need.PUSH:
        return repository_access(name, PULL, PUSH)
    if need is Need.DELETE:
        return repository_access(name, DELETE)
    return ()
