"""A driver wrapper that times every storage operation into Prometheus metrics.

One histogram, `cargobay_storage_operation_duration_seconds`, labelled by
driver, operation (the public method's name) and outcome: `ok`, `not_found`
(`PathNotFound`, an expected answer such as a HEAD of a missing blob) or
`error` (any other exception, cancellation included). Its `_count` series are
the operation counters.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from prometheus_client import Histogram

from registry.drivers.base import StorageDriver
from registry.drivers.wrapper import DriverWrapper
from registry.errors import PathNotFound
from registry.metrics import metrics

T = TypeVar("T")


class DriverMetrics(DriverWrapper):
    """`inner`, with the duration and outcome of each operation recorded."""

    def __init__(self, inner: StorageDriver) -> None:
        super().__init__(inner)
        self._histogram = metrics().storage_duration
        # Labelled children looked up once each: `labels()` is a locked dict look-up.
        self._children: dict[tuple[str, str], Histogram] = {}

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
            self._child(operation, outcome).observe(time.perf_counter() - started)

    def _child(self, operation: str, outcome: str) -> Histogram:
        key = (operation, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._histogram.labels(self.name, operation, outcome)
        return child
