"""`cargobay gc`: one collection, from a cron job or a Kubernetes CronJob.

Exit status: 0 when the collection ran (or the dry run listed), 3 when another
collection holds the lease, 1 on a storage fault or a lost lease.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TextIO

from registry.config import Config
from registry.drivers import create_driver
from registry.errors import StorageError
from registry.gc.collector import LeaseLost, collect
from registry.gc.lease import LeaseHeld
from registry.gc.schedule import options_of
from registry.services.feed import ChangeFeed

LEASE_HELD = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `cargobay gc`."""
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    parser.add_argument(
        "--delete-untagged", action="store_true", help="also delete manifests no tag reaches"
    )
    parser.add_argument(
        "--grace",
        type=float,
        metavar="SECONDS",
        help="never collect what is younger (default: [gc] grace_seconds)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


async def run(config: Config, args: argparse.Namespace) -> int:
    """Run one collection as `args` says and print its report; the exit status."""
    options = options_of(config)
    options = dataclasses.replace(
        options,
        grace=options.grace if args.grace is None else args.grace,
        dry_run=args.dry_run,
        delete_untagged=options.delete_untagged or args.delete_untagged,
    )
    driver = create_driver(config.storage)
    await driver.open()
    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    feed = ChangeFeed(driver)
    try:
        report = await collect(driver, options, feed.publish, follow=feed.poll, progress=progress)
    except LeaseHeld as e:
        print(f"cargobay gc: {e}", file=sys.stderr)
        return LEASE_HELD
    except (LeaseLost, StorageError) as e:
        print(f"cargobay gc: {e}", file=sys.stderr)
        return 1
    finally:
        if progress is not None:
            progress.done()
        try:
            await feed.close()  # every process must learn of what was deleted
        finally:
            await driver.close()
    print(report.to_json() if args.json else report.to_text())
    return 0


class _Progress:
    """One line on a terminal, rewritten in place: the phase and how far it got."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, phase: str, count: int) -> None:
        self._stream.write(f"\r{phase}: {count} ")
        self._stream.flush()

    def done(self) -> None:
        self._stream.write("\r\033[K")
        self._stream.flush()
