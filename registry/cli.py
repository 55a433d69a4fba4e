"""The `cargobay` command: `cargobay serve [--config FILE]`."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys

from aiohttp import web

from registry import __version__
from registry.app import create_app
from registry.auth import server_options
from registry.config import Config, ConfigError, load_config
from registry.tls import reloader, server_context

log = logging.getLogger("registry")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cargobay` console script; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="cargobay", description="An OCI container registry.")
    parser.add_argument("--version", action="version", version=f"cargobay {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the registry API")
    serve.add_argument("--config", help="TOML configuration file (default: built-in defaults)")
    check = commands.add_parser("check-config", help="validate the configuration and print it")
    check.add_argument("--config", help="TOML configuration file")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"cargobay: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(config)
        return 0
    return serve_forever(config)


def serve_forever(config: Config) -> int:
    """Run the registry until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=config.log.level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    tls = config.http.tls
    try:  # files the configuration names (htpasswd, keys, certificate) are read here
        app = create_app(config)
        ssl_context = server_context(tls) if tls.enabled else None
    except ConfigError as e:
        print(f"cargobay: {e}", file=sys.stderr)
        return 2
    _install_uvloop()
    if ssl_context is not None:
        app.cleanup_ctx.append(reloader(ssl_context, tls))
    if config.auth.mode == "none" and not _is_loopback(config.http.host):
        log.warning(
            "auth.mode is 'none' on %s: anyone who can reach it can push and delete",
            config.http.addr,
        )
    log.info(
        "cargobay %s listening on %s://%s (storage: %s, auth: %s)",
        __version__,
        "https" if ssl_context is not None else "http",
        config.http.addr,
        config.storage.driver,
        config.auth.mode,
    )
    web.run_app(
        app,
        host=config.http.host,
        port=config.http.port,
        ssl_context=ssl_context,
        print=None,
        access_log=logging.getLogger("registry.access") if config.log.access_log else None,
        handle_signals=True,
        **server_options(config.limits),
    )
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _install_uvloop() -> None:
    try:
        from registry.loop import EventLoopPolicy
    except ImportError:  # uvloop does not build everywhere (Windows); asyncio's loop works
        return
    asyncio.set_event_loop_policy(EventLoopPolicy())


if __name__ == "__main__":
    sys.exit(main())
