"""Garbage collection inside `cargobay serve`: pull times recorded, and collections on a timer.

Every serving process records the manifests it serves (`PullRecorder`) for
retention rules and flushes them now and then; the recorder wraps the
pull-through cache's store too, so proxied pulls are recorded the same way.
With `[gc] interval_seconds` set, every process also tries a collection that
often; the lease lets one of them run it and the others log that it is held.
Read-only servers do neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from registry.api.context import REGISTRY
from registry.config import Config
from registry.drivers.base import StorageDriver
from registry.errors import StorageError
from registry.gc.collector import GcOptions, LeaseLost, collect
from registry.gc.lease import LeaseHeld
from registry.gc.pulls import PullLog, PullRecorder
from registry.gc.retention import mirror_rules
from registry.metrics import count_collection
from registry.services.feed import ChangeFeed

log = logging.getLogger(__name__)


def options_of(config: Config) -> GcOptions:
    """The collection `[gc]` and `[limits]` describe, with the upstreams' default retention."""
    return GcOptions(
        grace=config.gc.grace_seconds,
        delete_untagged=config.gc.delete_untagged,
        upload_expiry=float(config.limits.upload_expiry_seconds),
        retention=config.gc.retention + mirror_rules(config.proxy.upstreams),
    )


async def collect_periodically(driver: StorageDriver, options: GcOptions, interval: float) -> None:
    """Try a collection every `interval` seconds until cancelled; each outcome is logged."""
    # A feed of its own: this process follows the feed like any other and
    # learns of the deletions too, which it would not from its own records.
    feed = ChangeFeed(driver)
    try:
        await _collect_every(driver, options, interval, feed)
    finally:
        await feed.close()


async def _collect_every(
    driver: StorageDriver, options: GcOptions, interval: float, feed: ChangeFeed
) -> None:
    while True:
        await asyncio.sleep(interval)
        # What was pushed before this run is in storage, for the mark to find.
        feed.restart_from_now()
        try:
            report = await collect(driver, options, feed.publish, follow=feed.poll)
        except LeaseHeld as e:
            log.info("gc: skipped, %s", e)
            continue
        except (LeaseLost, StorageError) as e:
            log.warning("gc: stopped: %s", e)
            continue
        finally:
            await feed.flush()  # logs a storage error itself, and keeps the changes
        freed = report.freed
        count_collection(sum(tally.bytes for tally in freed.values()))
        log.info(
            "gc: freed %d blobs (%d bytes), %d manifests, %d tags, %d uploads in %.1f s, "
            "%d storage requests",
            freed["blobs"].count,
            freed["blobs"].bytes,
            freed["manifests"].count,
            freed["tags"].count,
            freed["uploads"].count,
            report.seconds,
            sum(report.requests.values()),
        )


def gc_context(config: Config) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context, after the registry's, running what `serve` does for gc."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        if config.storage.read_only:
            yield
            return
        registry = app[REGISTRY]
        pulls = PullLog(registry.driver)
        registry.manifests = PullRecorder(registry.manifests, pulls)
        tasks = [asyncio.create_task(pulls.run())]
        if config.gc.interval_seconds:
            tasks.append(
                asyncio.create_task(
                    collect_periodically(
                        registry.driver, options_of(config), config.gc.interval_seconds
                    )
                )
            )
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return context
