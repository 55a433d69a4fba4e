"""A driver wrapper that times every storage operation into Prometheus metrics.

One histogram, `cargobay_storage_operation_duration_seconds`, labelled by
driver, operation (the public method's name) and outcome: `ok`, `not_found`
(`PathNotFound`, an expected answer such as a HEAD of a missing blob) or
`error` (any other exception, cancellation included). Its `_count` series are
the operation counters. Durations are tallied in memory and written with the
other request figures (`registry.metrics.flush_metrics`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from registry.drivers.base import StorageDriver
from registry.drivers.wrapper import DriverWrapper
from registry.errors import PathNotFound
from registry.metrics import STORAGE_BUCKETS, LatencyTally, metrics

T = TypeVar("T")


class DriverMetrics(DriverWrapper):
    """`inner`, with the duration and outcome of each operation recorded."""

    def __init__(self, inner: StorageDriver) -> None:
        super().__init__(inner)
        self._histogram = metrics().storage_duration
        self._tallies: dict[tuple[str, str], LatencyTally] = {}

    async def observe(self, operation: str, path: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await call
            outcome = "ok"
            return result
        except PathNotFound:
            outcome = "not_found"
            raise
        finally:
            self._tally(operation, outcome).observe(time.perf_counter() - started)

    def _tally(self, operation: str, outcome: str) -> LatencyTally:
        key = (operation, outcome)
        tally = self._tallies.get(key)
        if tally is None:
            child = self._histogram.labels(self.name, operation, outcome)
            tally = self._tallies[key] = LatencyTally(child, STORAGE_BUCKETS)
        return tally
