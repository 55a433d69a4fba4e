"""Authentication, access control and request limits: what makes the registry safe to expose.

`install_security` is the one entry the application calls; `server_options`
gives the HTTP server its header limits. The modules, each one concern:

- `access`: accesses, scopes, repository patterns and the configured rules;
- `htpasswd`: users and bcrypt passwords from an htpasswd file;
- `tokens`: verifying and issuing the JWTs of the Docker token specification;
- `schemes`: Basic and Bearer authentication and their challenges;
- `requirements`: what each route needs, derived from the route table;
- `token_endpoint`: the built-in `GET /token`;
- `limits`, `ratelimit`, `forwarded`: body and header sizes, per-client rates,
  the client behind a reverse proxy;
- `middleware`: the middleware that puts these together.
"""

from __future__ import annotations

from registry.auth.limits import server_options
from registry.auth.middleware import install_security

__all__ = ["install_security", "server_options"]
