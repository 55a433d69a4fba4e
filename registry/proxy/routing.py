"""Which upstream, if any, a request's repository belongs to, and under what name it is cached.

Routes, first match wins:

1. containerd's `?ns=<host>` names an upstream (its prefix, or the host of its
   URL): the repository is the upstream's, as sent;
2. a repository named `<prefix>/<rest>` is `<rest>` at the upstream of that prefix;
3. a read of a repository that is not a local one goes to the default
   upstream, if there is one (docker's `registry-mirrors` send no namespace);
4. anything else is local.

Proxied content is cached under `<prefix>/<repository upstream>`, whichever route
brought it, so the three routes share one copy. With `dockerhub_library`, a
one-component name is Docker Hub's `library/<name>`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from registry.proxy.client import Upstream


@dataclass(frozen=True, slots=True)
class Route:
    """A proxied repository: its upstream, its name there, and its name in our storage."""

    upstream: Upstream
    remote: str

    @property
    def local(self) -> str:
        return f"{self.upstream.config.prefix}/{self.remote}"


class Router:
    """Maps repository names (and containerd namespaces) to upstreams."""

    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        self._upstreams = tuple(upstreams)
        self._default = next((u for u in upstreams if u.config.default), None)

    @property
    def upstreams(self) -> tuple[Upstream, ...]:
        return self._upstreams

    def route(
        self, name: str, namespace: str | None, reading: bool, is_local: Callable[[str], bool]
    ) -> Route | None:
        """The route of a request for repository `name`, or None if it is local.

        `namespace` is the `ns` query parameter, if sent; `reading` says the
        request is a GET or HEAD; `is_local(name)` whether a repository of
        that name was pushed here (consulted only for the default route).
        """
        if namespace:
            upstream = self.by_namespace(namespace)
            if upstream is not None:
                return self._route(upstream, name)
        stored = self.by_local_name(name)
        if stored is not None:
            return stored
        if self._default is not None and reading and not is_local(name):
            return self._route(self._default, name)
        return None

    def by_namespace(self, namespace: str) -> Upstream | None:
        """The upstream containerd means by `ns=namespace`, or None."""
        for upstream in self._upstreams:
            if namespace in (upstream.config.prefix, upstream.host):
                return upstream
        return None

    def by_local_name(self, name: str) -> Route | None:
        """The route of a repository named under an upstream's prefix, or None."""
        for upstream in self._upstreams:
            prefix = upstream.config.prefix + "/"
            if name.startswith(prefix):
                return self._route(upstream, name[len(prefix) :])
        return None

    @staticmethod
    def _route(upstream: Upstream, remote: str) -> Route:
        if upstream.config.dockerhub_library and "/" not in remote:
            remote = f"library/{remote}"
        return Route(upstream, remote)
