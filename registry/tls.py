"""HTTPS served directly: the TLS context from `[http.tls]`, reloaded when its files change.

For deployments without a TLS-terminating proxy. The certificate file holds
the server certificate followed by any intermediates; the key must not be
encrypted. Renewed files (certbot, cert-manager) are picked up within
`RELOAD_INTERVAL` seconds for new connections, without a restart; a renewal
that fails to load is logged and the previous certificate kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from registry.config import ConfigError, TlsConfig

log = logging.getLogger(__name__)

RELOAD_INTERVAL = 60.0


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """A server context (TLS 1.2 or later) holding the configured certificate and key.

    Raises `ConfigError` if they cannot be loaded.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"http.tls: cannot load {tls.cert} and {tls.key}: {e}") from e
    return context


def reloader(
    context: ssl.SSLContext, tls: TlsConfig
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context that reloads `context` while the app runs."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_reload_forever(context, tls))
        yield
        task.cancel()

    return run


async def _reload_forever(context: ssl.SSLContext, tls: TlsConfig) -> None:
    seen = _signature(tls)
    while True:
        await asyncio.sleep(RELOAD_INTERVAL)
        current = _signature(tls)
        if current == seen:
            continue
        seen = current
        try:
            context.load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError) as e:
            log.error("new TLS certificate not loaded, keeping the previous one: %s", e)
        else:
            log.info("TLS certificate reloaded from %s", tls.cert)


def _signature(tls: TlsConfig) -> tuple[int, ...]:
    signature: list[int] = []
    for path in (tls.cert, tls.key):
        try:
            st = os.stat(path)
        except OSError:
            signature += [0, 0, 0]
        else:
            signature += [st.st_mtime_ns, st.st_size, st.st_ino]
    return tuple(signature)
