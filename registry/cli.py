"""The `cargobay` command: `cargobay serve [--config FILE] [--workers N]`, `gc`,
`cargobay check-config [--config FILE] [--connect]`."""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import logging
import os
import shutil
import socket
import sys
from typing import Any

from aiohttp import web

from registry import __version__
from registry.api.observe import observer_options
from registry.app import create_app
from registry.auth import server_options
from registry.config import Config, ConfigError, load_config
from registry.drivers import create_driver
from registry.errors import StorageError
from registry.gc import command as gc
from registry.logs import configure_logging
from registry.metrics import (
    MULTIPROC_ENV,
    MetricsListenerError,
    metrics_listener,
    prepare_multiprocess_dir,
)
from registry.storagecheck import check_storage, explain
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
    check.add_argument(
        "--connect", action="store_true", help="also open the storage and try reading and writing"
    )
    gc.add_arguments(commands.add_parser("gc", help="collect garbage once, online"))
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"cargobay: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(config)
        return check_connection(config) if args.connect else 0
    if args.command == "gc":
        return asyncio.run(gc.run(config, args))
    if args.workers is not None and args.workers < 0:
        print("cargobay: --workers must be 0 (one per CPU core) or more", file=sys.stderr)
        return 2
    count = worker_count(config, args.workers)
    if count == 1:
        return serve_forever(config)
    configure_logging(config.log)
    # Before any metric is built, here or in a worker (they inherit the directory).
    metrics_dir = prepare_multiprocess_dir() if config.metrics.addr else None
    try:
        return _serve_workers(args.config, count, config)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve_workers(config_path: str | None, count: int, config: Config) -> int:
    try:  # what the workers would each refuse (htpasswd, keys), refused once here
        create_app(config)
    except ConfigError as e:
        print(f"cargobay: {e}", file=sys.stderr)
        return 2
    # Workers that cannot open the storage would be restarted forever: say why once.
    problem = storage_problem(config, write=False)
    if problem is not None:
        print(f"cargobay: cannot use storage: {problem}", file=sys.stderr)
        return 1
    try:
        return run_master(config_path, count, config)
    except OSError as e:
        print(f"cargobay: cannot listen on {config.http.addr}: {e.strerror}", file=sys.stderr)
        return 1
    except MetricsListenerError as e:
        print(f"cargobay: {e}", file=sys.stderr)
        return 1


def check_connection(config: Config) -> int:
    """Try the configured storage; print what is wrong in one sentence (status 1) or "ok"."""
    problem = storage_problem(config, write=True)
    if problem is not None:
        print(f"cargobay: cannot use storage: {problem}", file=sys.stderr)
        return 1
    print(f"storage ok: {config.storage.driver}")
    return 0


def storage_problem(config: Config, write: bool) -> str | None:
    """Why the configured storage cannot be used, in one sentence; None if it can.

    With `write`, writing is tried too (unless storage is read-only).
    """
    try:
        asyncio.run(check_storage(config.storage, create_driver(config.storage), write))
    except (StorageError, OSError) as e:
        return explain(config.storage, e)
    return None


def serve_forever(
    config: Config, sock: socket.socket | None = None, lifeline: int | None = None
) -> int:
    """Run the registry until SIGINT/SIGTERM, on `sock` if given (a worker), else on
    `config.http.addr`. A worker exits at once when `lifeline` (a pipe's read end)
    closes: its master is gone.

    With `[metrics] addr`, a single process serves its metrics there itself, in
    prometheus-client's multiprocess mode like workers; a worker leaves the
    listener and the metrics directory to its master, whose `prepare_multiprocess_dir`
    it inherits.
    """
    configure_logging(config.log)
    single = sock is None
    metrics_dir = None
    if config.metrics.addr and single and not os.environ.get(MULTIPROC_ENV):
        metrics_dir = prepare_multiprocess_dir()
    try:
        return _serve(config, sock, lifeline, serve_metrics=single and bool(config.metrics.addr))
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(
    config: Config, sock: socket.socket | None, lifeline: int | None, serve_metrics: bool
) -> int:
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
    if serve_metrics:
        app.cleanup_ctx.append(lambda _: metrics_listener(config.metrics))
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
    try:
        web.run_app(
            app,
            **address,
            ssl_context=ssl_context,
            print=None,
            handle_signals=True,
            **server_options(config.limits),
            **observer_options(config),
        )
    except StorageError as e:  # opening the registry at start-up
        print(f"cargobay: cannot use storage: {explain(config.storage, e)}", file=sys.stderr)
        return 1
    except MetricsListenerError as e:
        print(f"cargobay: {e}", file=sys.stderr)
        return 1
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
