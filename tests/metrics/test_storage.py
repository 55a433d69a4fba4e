"""Storage metrics: `DriverMetrics` times every operation by driver, operation and outcome.

(It also passes the shared driver suite, as `metrics-inmemory` in tests/conftest.py.)
"""

from __future__ import annotations

import pytest

from registry import layout
from registry.drivers.filesystem import FilesystemDriver
from registry.drivers.inmemory import InMemoryDriver
from registry.drivers.metrics import DriverMetrics
from registry.drivers.wrapper import DriverWrapper
from registry.errors import PathNotFound, StorageError
from tests.metrics.conftest import sample

HISTOGRAM = "cargobay_storage_operation_duration_seconds_count"
PATH = f"{layout.ROOT}/metrics-test/file"


class _Broken(DriverWrapper):
    async def observe(self, operation: str, path: str, call: object) -> object:
        close = getattr(call, "close", None)
        if close is not None:
            close()
        raise StorageError(self.name, path, "disk on fire")


def count(driver: str, operation: str, outcome: str) -> float:
    """Operations counted (the storage histogram's `_count`), tallies written first."""
    return sample(HISTOGRAM, driver=driver, operation=operation, outcome=outcome)


class TestDriverMetrics:
    async def test_operations_are_counted_by_driver_operation_and_outcome(self) -> None:
        driver = DriverMetrics(InMemoryDriver())
        await driver.open()
        ok_put = count("inmemory", "put_content", "ok")
        ok_get = count("inmemory", "get_content", "ok")
        missing = count("inmemory", "get_content", "not_found")

        await driver.put_content(PATH, b"x")
        await driver.get_content(PATH)
        await driver.get_content(PATH)
        with pytest.raises(PathNotFound):
            await driver.get_content(PATH + "-missing")

        assert count("inmemory", "put_content", "ok") - ok_put == 1
        assert count("inmemory", "get_content", "ok") - ok_get == 2
        assert count("inmemory", "get_content", "not_found") - missing == 1

    async def test_a_bulk_deletion_is_one_operation_whatever_its_size(self) -> None:
        driver = DriverMetrics(InMemoryDriver())
        before = count("inmemory", "delete_files", "ok")

        await driver.put_content(PATH, b"x")
        await driver.delete_files([PATH, PATH + "-missing", PATH + "-other"])

        assert count("inmemory", "delete_files", "ok") - before == 1

    async def test_failures_are_counted_as_errors_and_still_raised(self) -> None:
        driver = DriverMetrics(_Broken(InMemoryDriver()))
        before = count("inmemory", "stat", "error")

        with pytest.raises(StorageError, match="disk on fire"):
            await driver.stat(PATH)

        assert count("inmemory", "stat", "error") - before == 1

    async def test_each_driver_is_labelled_with_its_own_name(self, tmp_path: object) -> None:
        driver = DriverMetrics(FilesystemDriver(str(tmp_path)))
        await driver.open()
        before = count("filesystem", "put_content", "ok")

        await driver.put_content(PATH, b"x")

        assert count("filesystem", "put_content", "ok") - before == 1
