"""The `cargobay` command: `cargobay serve [--config FILE] [--workers N]`, `gc`, `check-config`."""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import logging
import os
import socket
import sys
from typing import Any

from aiohttp import web

from registry import __version__
from registry.app import create_app
from registry.auth import server_options
from registry.config import Config, ConfigError, load_config
from registry.gc import command as gc
from registry.tls import reloader, server_context
from registry.workers import run_master, worker_count

log = logging.getLogger("registry")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cargobay` console script; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="cargobay", description="An OCI container registry.")
    parser.add_argument("--version", action="version", version=f"cargobay {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the registry API")
    serve.add_argument("--config", help="TOML configuration file (default: built-in defaults)")
    serve.add_argument(
        "--workers",
        type=int,
        help="processes serving the socket (default: http.workers; 0 = one per CPU core)",
    )
    check = commands.add_parser("check-config", help="validate the configuration and print it")
    check.add_argument("--config", help="TOML configuration file")
    gc.add_arguments(commands.add_parser("gc", help="collect garbage once, online"))
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"cargobay: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(config)
        return 0
    if args.command == "gc":
        return asyncio.run(gc.run(config, args))
    if args.workers is not None and args.workers < 0:
        print("cargobay: --workers must be 0 (one per CPU core) or more", file=sys.stderr)
        return 2
    count = worker_count(config, args.workers)
    if count == 1:
        return serve_forever(config)
    _configure_logging(config)
    try:  # what the workers would each refuse (htpasswd, keys), refused once here
        create_app(config)
    except ConfigError as e:
        print(f"cargobay: {e}", file=sys.stderr)
        return 2
    try:
        return run_master(args.config, count, config)
    except OSError as e:
        print(f"cargobay: cannot listen on {config.http.addr}: {e.strerror}", file=sys.stderr)
        return 1


def _configure_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.log.level.upper(),
        format=f"%(asctime)s %(levelname)s [{os.getpid()}] %(name)s: %(message)s",
    )


def serve_forever(
    config: Config, sock: socket.socket | None = None, lifeline: int | None = None
) -> int:
    """Run the registry until SIGINT/SIGTERM, on `sock` if given (a worker), else on
    `config.http.addr`. A worker exits at once when `lifeline` (a pipe's read end)
    closes: its master is gone."""
    _configure_logging(config)
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
    if lifeline is not None:
        app.on_startup.append(functools.partial(_watch_lifeline, lifeline))
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
    address: dict[str, Any] = (
        {"sock": sock} if sock is not None else {"host": config.http.host, "port": config.http.port}
    )
    web.run_app(
        app,
        **address,
        ssl_context=ssl_context,
        print=None,
        access_log=logging.getLogger("registry.access") if config.log.access_log else None,
        handle_signals=True,
        **server_options(config.limits),
    )
    return 0


async def _watch_lifeline(fd: int, app: web.Application) -> None:
    def master_gone() -> None:
        log.error("the master process is gone; this worker stops")
        os._exit(1)

    asyncio.get_running_loop().add_reader(fd, master_gone)


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
