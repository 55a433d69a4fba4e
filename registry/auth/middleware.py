"""Every request's checks before its handler: who the client is, whether it may, and how much.

`install_security` puts them on the application, in this order, each inside
the error middleware so that every refusal is an OCI error response:

1. `forwarded` (with `http.trusted_proxies`): the real client behind a proxy;
2. `ratelimit` (with `limits.rate_limit_per_second`): 429 for a client over its rate;
3. `concurrency` (with `limits.max_concurrent_uploads*`): 429 for an upload
   request over the bounds on uploads in flight;
4. `check_access`: the route's requirement (`requirements`), the repository
   name checked before it is used in a challenge, authentication and
   authorisation (`schemes`), read-only mode, and announced body sizes.

A cross-repository mount (`POST ...?mount=D&from=R`) needs pull on `R` besides
push on the target; without it the mount is dropped from the request, which
the spec answers with a plain upload session (202), so a client learns nothing
of a repository it may not read. A mount without `from` may link the blob from
any repository the client may pull: the handler is given that test
(`registry.api.context.MAY_PULL`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from registry.api.context import MAY_PULL
from registry.api.middleware import Handler
from registry.auth.access import PULL, REPOSITORY, Access, Policy
from registry.auth.concurrency import UploadSlots, upload_slots_middleware
from registry.auth.forwarded import forwarded_middleware
from registry.auth.limits import check_body_size
from registry.auth.ratelimit import TokenBuckets, rate_limit_middleware
from registry.auth.requirements import Need, RouteRule, needed_accesses, route_rule
from registry.auth.schemes import (
    TOKEN_PATH,
    Authenticator,
    BasicAuthenticator,
    BearerAuthenticator,
    Identity,
)
from registry.auth.token_endpoint import TokenEndpoint
from registry.config import AuthConfig, Config
from registry.errors import NameInvalid, Unsupported
from registry.logs import set_user
from registry.reference import validate_name

log = logging.getLogger(__name__)

_WRITES = (Need.PUSH, Need.DELETE)


def install_security(app: web.Application, config: Config) -> None:
    """Add the security middlewares (and `/token` if this registry issues tokens) to `app`.

    Call after every route is added. Keys and the htpasswd file are read
    now: a missing or malformed one raises `ConfigError`.
    """
    if config.http.trusted_proxies:
        app.middlewares.append(forwarded_middleware(config.http.trusted_proxies))
    limits = config.limits
    if limits.rate_limit_per_second:
        buckets = TokenBuckets(limits.rate_limit_per_second, limits.rate_limit_burst)
        app.middlewares.append(rate_limit_middleware(buckets))
    if limits.max_concurrent_uploads or limits.max_concurrent_uploads_per_client:
        slots = UploadSlots(limits.max_concurrent_uploads, limits.max_concurrent_uploads_per_client)
        app.middlewares.append(upload_slots_middleware(slots))
    authenticator = _authenticator(app, config.auth)
    rules: dict[web.AbstractRoute, RouteRule] = {}

    async def derive_rules(app: web.Application) -> None:
        # The router is frozen by now: no route can be added after this table is made.
        for route in app.router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            rules[route] = route_rule(route.method, path)

    app.on_startup.append(derive_rules)
    read_only = config.storage.read_only

    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        rule = rules.get(request.match_info.route)
        if rule is None or rule.need is Need.PUBLIC:
            return await handler(request)  # no route matched: aiohttp's own 404 or 405
        name = validate_name(request.match_info["name"]) if "name" in request.match_info else None
        identity = Identity(None)
        if authenticator is not None:
            identity = await authenticator.authorize(request, needed_accesses(rule.need, name))
            set_user(identity.user)
        if read_only and rule.need in _WRITES:
            raise Unsupported("this registry is read-only: pushes and deletes are refused")
        check_body_size(request, rule.body, limits)
        if rule.need is Need.PUSH and "mount" in request.query and authenticator is not None:
            if request.query.get("from"):
                request = _drop_unreadable_mount(request, authenticator, identity)
            else:
                request[MAY_PULL] = _pull_test(authenticator, identity)
        return await handler(request)

    app.middlewares.append(check_access)


def _authenticator(app: web.Application, auth: AuthConfig) -> Authenticator | None:
    if auth.mode == "none":
        return None
    # Imported only when used: bcrypt, PyJWT and cryptography add ~9 MiB to
    # the memory of every process.
    from registry.auth.htpasswd import Htpasswd

    policy = Policy(auth.access, auth.groups)
    if auth.mode == "htpasswd":
        return BasicAuthenticator(Htpasswd(auth.htpasswd.path), policy)
    from registry.auth.tokens import (
        TokenIssuer,
        TokenVerifier,
        TrustedKey,
        load_jwks,
        load_public_keys,
        load_signing_key,
    )

    token = auth.token
    keys: list[TrustedKey] = [key for path in token.public_keys for key in load_public_keys(path)]
    if token.jwks:
        keys.extend(load_jwks(token.jwks))
    if token.signing_key:
        issuer = TokenIssuer(
            load_signing_key(token.signing_key), token.issuer, token.service, token.expiry_seconds
        )
        keys.append(issuer.public_key)
        endpoint = TokenEndpoint(Htpasswd(auth.htpasswd.path), policy, issuer)
        app.router.add_get(TOKEN_PATH, endpoint.handle)
    verifier = TokenVerifier(keys, token.issuer, token.service)
    return BearerAuthenticator(verifier, token.realm, token.service)


def _pull_test(authenticator: Authenticator, identity: Identity) -> Callable[[str], bool]:
    def may_pull(name: str) -> bool:
        return authenticator.permits(identity, Access(REPOSITORY, name, PULL))

    return may_pull


def _drop_unreadable_mount(
    request: web.Request, authenticator: Authenticator, identity: Identity
) -> web.Request:
    source = request.query.get("from", "")
    try:
        readable = authenticator.permits(identity, Access(REPOSITORY, validate_name(source), PULL))
    except NameInvalid:
        readable = False
    if readable:
        return request
    log.info("mount from %r not done for %s: no pull access", source[:300], identity.user or "-")
    query = [(k, v) for k, v in request.query.items() if k not in ("mount", "from")]
    return request.clone(rel_url=request.rel_url.with_query(query))
