"""The web page for managing manifests, served at `/ui/` by the registry process itself.

`setup_ui` is the one entry the application calls. Server-rendered HTML
(Jinja2, autoescaped) with a little script for copying and filtering; no
build chain. The modules, each one concern:

- `handlers`: the routes and what each page does;
- `sessions`: logins, session cookies, CSRF tokens and the access decisions;
- `reader`: what a page shows, read from the registry's services, with caches;
- `views`: the view model: manifest and config bytes turned into plain values.
"""

from __future__ import annotations

import logging
from importlib import resources

import jinja2
from aiohttp import web

from registry.config import Config
from registry.ui import views
from registry.ui.handlers import Pages, format_size, format_time, short_digest
from registry.ui.sessions import Gate

log = logging.getLogger(__name__)


def setup_ui(app: web.Application, config: Config) -> None:
    """Add the web page's routes to `app`, if `[ui] enabled` and its users can be known.

    Call before `install_security`, which classifies every route. Raises
    `ConfigError` if the htpasswd file cannot be read.
    """
    if not config.ui.enabled:
        return
    gate = Gate(config)
    if not gate.page_available:
        log.warning("the web page is off: users come from another token server (auth.token.realm)")
        return
    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("registry.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters.update(t=views.text, size=format_size, when=format_time, short=short_digest)
    static = resources.files("registry.ui") / "static"
    Pages(gate, templates).add_routes(app, str(static))
