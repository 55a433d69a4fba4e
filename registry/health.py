"""Whether this process should be sent traffic: the checks behind `/readyz`.

A process is ready when its index is loaded (the registry is open and has
finished loading every repository in the background) and storage answered its
last probe, within the last `STALE_AFTER` seconds. `Readiness.run` probes storage
every `PROBE_INTERVAL` seconds with a cheap `stat` of the repositories
directory: any answer, "not found" included, proves storage is reachable and
the credentials and bucket are good; an error or no answer within
`PROBE_TIMEOUT` fails the check. Each round also publishes the index sizes as
metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time

from registry import layout
from registry.errors import PathNotFound, StorageError
from registry.metrics import metrics
from registry.services.registry import Registry

log = logging.getLogger(__name__)

PROBE_INTERVAL = 5.0
PROBE_TIMEOUT = 5.0
STALE_AFTER = 3 * PROBE_INTERVAL


class Readiness:
    """The state of this process's readiness checks."""

    def __init__(self) -> None:
        self.registry: Registry | None = None
        self._answered_at: float | None = None
        self._storage_error = "storage has not been probed yet"

    def failing(self) -> dict[str, str]:
        """The failing checks (`index`, `storage`), each with why; empty when ready."""
        failed: dict[str, str] = {}
        registry = self.registry
        if registry is None:
            failed["index"] = "the registry is opening"
        elif not registry.warming.done():
            failed["index"] = "the index is still loading from storage"
        answered = self._answered_at
        if answered is None or time.monotonic() - answered > STALE_AFTER:
            failed["storage"] = self._storage_error
        return failed

    async def probe(self) -> None:
        """Probe storage once and record the outcome; never raises a storage error."""
        assert self.registry is not None, "probe after the registry is open"
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.registry.driver.stat(layout.REPOSITORIES)
        except PathNotFound:
            pass  # an empty registry: storage answered
        except (StorageError, TimeoutError, OSError) as e:
            message = str(e) or f"no answer within {PROBE_TIMEOUT:g}s"
            if self._answered_at is not None:  # once per outage
                log.warning("storage probe failed: %s", message)
            self._storage_error = f"storage probe failed: {message}"
            self._answered_at = None
            return
        self._answered_at = time.monotonic()
        self._storage_error = f"storage answered no probe in the last {STALE_AFTER:g}s"

    async def run(self, registry: Registry) -> None:
        """Probe `registry`'s storage and publish its index sizes until cancelled."""
        self.registry = registry
        gauge = metrics().index_entries
        while True:
            await self.probe()
            repositories, tags, manifests = registry.index.counts()
            gauge.labels("repositories").set(repositories)
            gauge.labels("tags").set(tags)
            gauge.labels("manifests").set(manifests)
            await asyncio.sleep(PROBE_INTERVAL)
