"""The pages of the web UI: which handler answers which path, and what each one does.

    GET  /                                      a browser is sent to /ui/
    GET  /ui                                    sent to /ui/
    GET  /ui/?q=TEXT&after=NAME                 repositories, filtered, 50 a page
    GET  /ui/r/NAME?after=TAG                   a repository's tags, 50 a page
    GET  /ui/r/NAME/-/m/REFERENCE?page=N        a manifest by tag or digest
    GET  /ui/r/NAME/-/raw/DIGEST                its bytes, as text
    GET  /ui/r/NAME/-/delete?reference=REF      what a delete would remove, and its form
    POST /ui/r/NAME/-/delete                    the delete
    GET, POST /ui/login; POST /ui/logout        the session (`sessions`)

Repository names contain slashes; `/-/` cannot occur in one, so it separates
the name from the rest. Every page checks the visitor's rights itself: a
repository the visitor may not pull is "not found", as one that does not exist.
Errors are HTML pages with the status the API would answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from registry.api.context import REGISTRY
from registry.digest import Digest
from registry.errors import (
    Denied,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    RegistryError,
    StorageError,
)
from registry.reference import is_tag, validate_name
from registry.ui import views
from registry.ui.reader import Reader
from registry.ui.sessions import COOKIE, Gate, Session

log = logging.getLogger(__name__)

PREFIX = "/ui/"
#: Rows of the repository and tag listings.
LISTING_ROWS = 50
_NAME = "{name:.+}"

# Defence in depth behind autoescaping: no inline script or style, no framing,
# forms only to this origin.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class Visit:
    """One request to a page: the request, the visitor's session, and what it may do."""

    request: web.Request
    session: Session
    gate: Gate

    def may_pull(self, name: str) -> bool:
        return self.gate.may_pull(self.session, name)

    def may_delete(self, name: str) -> bool:
        return self.gate.may_delete(self.session, name)


PageHandler = Callable[["Pages", Visit], Awaitable[web.Response]]


def _page(handler: PageHandler) -> Callable[[Pages, web.Request], Awaitable[web.Response]]:
    """Run `handler` with the visit's session (issued on first sight) and HTML errors."""

    async def run(self: Pages, request: web.Request) -> web.Response:
        session = await self.gate.session_of(request)
        fresh = session is None
        if session is None:
            session = self.gate.new_session()
        visit = Visit(request, session, self.gate)
        try:
            response = await handler(self, visit)
        except RegistryError as e:
            if isinstance(e, StorageError):
                log.error("%s %s: %s", request.method, request.path, e)
            response = self.render(visit, "error.html", {"message": e.message}, e.status)
        if fresh and COOKIE not in response.cookies:  # a login or logout sets its own
            self.gate.set_cookie(request, response, session)
        for header, value in _HEADERS.items():
            response.headers.setdefault(header, value)  # the raw view's own CSP stays
        return response

    return run


class Pages:
    """The handlers of the web UI, sharing the templates, the gate and the reader."""

    def __init__(self, gate: Gate, templates: jinja2.Environment) -> None:
        self.gate = gate
        self.templates = templates
        self._reader: Reader | None = None

    def add_routes(self, app: web.Application, static: str) -> None:
        """Register the pages on `app`, with the files of directory `static`."""
        app.router.add_get("/", self.root)
        app.router.add_get(PREFIX.rstrip("/"), self.to_front_page)
        app.router.add_get(PREFIX, self.repositories)
        app.router.add_get(PREFIX + "login", self.login_form)
        app.router.add_post(PREFIX + "login", self.login)
        app.router.add_post(PREFIX + "logout", self.logout)
        app.router.add_static(PREFIX + "static/", static)
        repository = f"{PREFIX}r/{_NAME}"
        app.router.add_get(repository + "/-/m/{reference}", self.manifest)
        app.router.add_get(repository + "/-/raw/{reference}", self.raw)
        app.router.add_get(repository + "/-/delete", self.confirm_delete)
        app.router.add_post(repository + "/-/delete", self.delete)
        app.router.add_get(repository, self.repository)
        app.on_startup.append(self._open)

    async def _open(self, app: web.Application) -> None:
        # The registry exists once the app's cleanup context has opened it, before this runs.
        self._reader = Reader(app[REGISTRY])
        await self.gate.open(app[REGISTRY].driver)

    @property
    def reader(self) -> Reader:
        assert self._reader is not None, "the app has not started"
        return self._reader

    def render(
        self, visit: Visit, template: str, context: dict[str, Any], status: int = 200
    ) -> web.Response:
        """The page `template` filled with `context` and what every page shows."""
        body = self.templates.get_template(template).render(
            user=visit.session.user,
            logins=self.gate.has_logins,
            csrf=self.gate.csrf_token(visit.session),
            here=visit.request.path_qs,
            **context,
        )
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    # -- pages -------------------------------------------------------------------------

    async def root(self, request: web.Request) -> web.StreamResponse:
        """`/`: a browser (one that accepts HTML) goes to the UI; anything else gets a 404."""
        if "text/html" in request.headers.get("Accept", ""):
            return _see_other(PREFIX)
        raise web.HTTPNotFound()

    async def to_front_page(self, request: web.Request) -> web.StreamResponse:
        """`/ui`, as people type it: the front page is `/ui/`."""
        return _see_other(PREFIX)

    @_page
    async def repositories(self, visit: Visit) -> web.Response:
        query = visit.request.query.get("q", "").strip()[:255]
        after = visit.request.query.get("after") or None
        page = await self.reader.repositories(visit.may_pull, query, after, LISTING_ROWS)
        return self.render(visit, "repositories.html", {"page": page, "query": query})

    @_page
    async def repository(self, visit: Visit) -> web.Response:
        name = self._repository(visit)
        after = visit.request.query.get("after") or None
        page = await self.reader.tags(name, after, LISTING_ROWS)
        context = {
            "name": name,
            "page": page,
            "host": visit.request.host,
            "deleted": visit.request.query.get("deleted", "")[:200],
        }
        return self.render(visit, "repository.html", context)

    @_page
    async def manifest(self, visit: Visit) -> web.Response:
        name = self._repository(visit)
        reference = visit.request.match_info["reference"]
        page = _int(visit.request.query.get("page"))
        shown = await self.reader.manifest(name, reference, page)
        context = {
            "name": name,
            "reference": reference,
            "m": shown,
            "page_number": page,
            "page_rows": views.PAGE_ROWS,
            "host": visit.request.host,
            "may_delete": visit.may_delete(name),
        }
        return self.render(visit, "manifest.html", context)

    @_page
    async def raw(self, visit: Visit) -> web.Response:
        name = self._repository(visit)
        stored = await visit.request.app[REGISTRY].stored_manifests.get(
            name, visit.request.match_info["reference"]
        )
        return web.Response(
            body=stored.data,
            content_type="text/plain",
            charset="utf-8",
            headers={"Content-Security-Policy": "sandbox", "Docker-Content-Digest": stored.digest},
        )

    @_page
    async def confirm_delete(self, visit: Visit) -> web.Response:
        name, reference, digest = await self._deletable(visit, visit.request.query)
        return self.render(visit, "delete.html", self._delete_context(name, reference, digest))

    @_page
    async def delete(self, visit: Visit) -> web.Response:
        form = await visit.request.post()
        if not await self._form_ok(visit, form):
            return self.render(visit, "error.html", {"message": _STALE_FORM}, 403)
        name, reference, _ = await self._deletable(visit, form)
        await visit.request.app[REGISTRY].manifests.delete(name, reference)
        log.info("ui: %s deleted %s from %s", visit.session.user or "-", reference, name)
        return _see_other(f"{PREFIX}r/{name}?deleted={quote(reference)}")

    async def _deletable(self, visit: Visit, values: Any) -> tuple[str, str, str]:
        """The repository, reference and digest a delete names, if the visitor may delete it."""
        name = self._repository(visit)
        if not visit.may_delete(name):
            raise Denied("deleting is not allowed here")
        reference = str(values.get("reference", ""))
        index = self.reader.index
        if is_tag(reference):
            digest = await index.find_tag(name, reference)
        else:
            digest = str(Digest.parse(reference))
            if not await index.find_manifest(name, digest):
                digest = None
        if digest is None:
            raise ManifestUnknown("no such tag or manifest")
        return name, reference, digest

    def _delete_context(self, name: str, reference: str, digest: str) -> dict[str, Any]:
        tags = sorted(self.reader.index.tags_of(name, digest))
        return {
            "name": name,
            "reference": reference,
            "digest": digest,
            "by_tag": is_tag(reference),
            "other_tags": [tag for tag in tags if tag != reference],
        }

    # -- sessions ----------------------------------------------------------------------

    @_page
    async def login_form(self, visit: Visit) -> web.Response:
        if not self.gate.has_logins:
            return _see_other(PREFIX)
        return self.render(visit, "login.html", {"next": _local(visit.request.query.get("next"))})

    @_page
    async def login(self, visit: Visit) -> web.Response:
        form = await visit.request.post()
        target = _local(str(form.get("next", "")))
        if not self.gate.has_logins:
            return _see_other(PREFIX)
        if not await self._form_ok(visit, form):
            return self.render(visit, "error.html", {"message": _STALE_FORM}, 403)
        user = str(form.get("username", ""))[:256]
        if not user or not await self.gate.check_password(user, str(form.get("password", ""))):
            log.warning("ui: failed login for user %r from %s", user, visit.request.remote)
            context = {"next": target, "failed": True, "username": user}
            return self.render(visit, "login.html", context, 401)
        response = _see_other(target)
        self.gate.set_cookie(visit.request, response, self.gate.new_session(user))
        return response

    @_page
    async def logout(self, visit: Visit) -> web.Response:
        form = await visit.request.post()
        if not await self._form_ok(visit, form):
            return self.render(visit, "error.html", {"message": _STALE_FORM}, 403)
        response = _see_other(PREFIX)
        self.gate.set_cookie(visit.request, response, self.gate.new_session())
        return response

    # -- checks ------------------------------------------------------------------------

    def _repository(self, visit: Visit) -> str:
        """The repository of the URL, if it exists and the visitor may see it."""
        try:
            name = validate_name(visit.request.match_info["name"])
        except NameInvalid as e:
            raise NameUnknown("no such repository") from e
        if not (self.reader.index.has_repository(name) and visit.may_pull(name)):
            raise NameUnknown("no such repository")
        return name

    async def _form_ok(self, visit: Visit, form: Any) -> bool:
        """True if a posted form carries the session's token and no foreign Origin."""
        origin = visit.request.headers.get("Origin")
        # The host alone: behind a proxy that terminates TLS the scheme seen here may differ.
        # "null" (privacy-sensitive contexts) says nothing either way: the token decides.
        if origin and origin != "null" and urlsplit(origin).netloc != visit.request.host:
            return False
        return await self.gate.check_csrf(visit.session, str(form.get("csrf", "")))


_STALE_FORM = "This form has expired or did not come from this page. Go back, reload and try again."


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _local(target: str | None) -> str:
    """`target` if it is a path of the UI, else the UI's front page (no open redirects)."""
    if target and target.startswith(PREFIX) and "//" not in target and "\\" not in target:
        return target
    return PREFIX


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


def format_size(size: int | None) -> str:
    """A size as people read it: `532 B`, `2.4 MiB`; `unknown` for None."""
    if size is None:
        return "unknown"
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def format_time(when: float | None) -> str:
    """An epoch time as `2026-12-02 15:04 UTC`; `unknown` for None."""
    if when is None:
        return "unknown"
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC")


def short_digest(digest: str) -> str:
    """`sha256:0123456789ab`: a digest cut to what people compare by eye (and shown safely:
    a foreign manifest's digests are the pusher's text)."""
    algorithm, _, hexpart = digest.partition(":")
    return views.text(f"{algorithm[:20]}:{hexpart[:12]}" if hexpart else digest, 19)
