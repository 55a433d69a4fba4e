"""`cargobay gc` collects a directory, reports as text or JSON, and `--dry-run` deletes nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from registry import cli, layout
from registry.digest import Digest
from registry.drivers.filesystem import FilesystemDriver
from registry.drivers.inmemory import InMemoryDriver
from registry.gc.collector import GcOptions
from registry.gc.lease import Lease
from registry.gc.schedule import collect_periodically
from tests.gc.storage import blob_exists, put_blob


def seed(root: Path) -> str:
    async def write() -> str:
        driver = FilesystemDriver(root)
        await driver.open()
        digest = await put_blob(driver, "team/app", b"orphaned layer")
        await driver.close()
        return digest

    return asyncio.run(write())


def exists(root: Path, digest: str) -> bool:
    return (root / layout.blob_data(Digest.parse(digest))[1:]).exists()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\ndriver = "filesystem"\nfilesystem.root = "{tmp_path}/data"\n')
    return path


class TestCommand:
    def test_json_report_counts_what_was_freed(
        self, tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        orphan = seed(tmp_path / "data")
        assert cli.main(["gc", "--config", str(config), "--grace", "0", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["freed"]["blobs"] == {"count": 1, "bytes": len(b"orphaned layer")}
        assert report["dry_run"] is False
        assert sum(report["requests"].values()) > 0
        assert not exists(tmp_path / "data", orphan)

    def test_dry_run_lists_what_would_go_and_keeps_it(
        self, tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        orphan = seed(tmp_path / "data")
        assert cli.main(["gc", "--config", str(config), "--grace", "0", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert layout.blob_data(Digest.parse(orphan)) in out
        assert "nothing was deleted" in out
        assert exists(tmp_path / "data", orphan)

    def test_the_default_grace_keeps_what_was_just_written(
        self, tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        orphan = seed(tmp_path / "data")
        assert cli.main(["gc", "--config", str(config)]) == 0
        assert exists(tmp_path / "data", orphan)

    def test_a_held_lease_exits_3(
        self, tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        async def hold() -> None:
            driver = FilesystemDriver(tmp_path / "data")
            await driver.open()
            await Lease(driver, settle=0).acquire()

        asyncio.run(hold())
        assert cli.main(["gc", "--config", str(config)]) == 3
        assert "holds the lease" in capsys.readouterr().err


class TestSchedule:
    async def test_scheduled_collections_run_and_free_the_lease_between_runs(self) -> None:
        driver = InMemoryDriver()
        orphan = await put_blob(driver, "team/app", b"orphan")
        task = asyncio.create_task(collect_periodically(driver, GcOptions(grace=0.0), 0.05))
        try:
            for _ in range(100):
                await asyncio.sleep(0.1)
                if not await blob_exists(driver, orphan):
                    break
        finally:
            task.cancel()
        assert not await blob_exists(driver, orphan)
