"""The `cargobay` command: `cargobay serve [--config FILE]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web

from registry import __version__
from registry.app import create_app
from registry.config import Config, ConfigError, load_config

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
    _install_uvloop()
    app = create_app(config)
    log.info(
        "cargobay %s listening on %s (storage: %s)",
        __version__,
        config.http.addr,
        config.storage.driver,
    )
    web.run_app(
        app,
        host=config.http.host,
        port=config.http.port,
        print=None,
        access_log=logging.getLogger("registry.access") if config.log.access_log else None,
        handle_signals=True,
    )
    return 0


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # uvloop does not build everywhere (Windows); asyncio's loop works
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    sys.exit(main())
