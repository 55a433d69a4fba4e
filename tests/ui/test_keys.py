"""Shared keys: one per storage and use, shared by every process, kept across restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry import keys
from registry.app import create_app
from registry.config import Config
from registry.drivers.inmemory import InMemoryDriver
from registry.errors import PathNotFound
from registry.keys import SharedKeys
from registry.ui.sessions import KEYS
from tests.api.oci import push_image
from tests.ui.conftest import csrf_of, log_in


@pytest.fixture
async def storage() -> AsyncIterator[InMemoryDriver]:
    driver = InMemoryDriver()
    await driver.open()
    yield driver
    await driver.close()


class TestSharedKeys:
    async def test_the_first_process_stores_a_key_the_next_ones_use(
        self, storage: InMemoryDriver
    ) -> None:
        first = SharedKeys(storage, KEYS, may_write=True)
        await first.open()
        second = SharedKeys(storage, KEYS, may_write=True)
        await second.open()
        assert second.signing == first.signing
        assert len(await storage.list(KEYS)) == 1

    async def test_processes_starting_together_converge_on_one_signing_key(
        self, storage: InMemoryDriver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(keys, "RELIST_SECONDS", 0.0)
        started = [SharedKeys(storage, KEYS, may_write=True) for _ in range(4)]
        await asyncio.gather(*(k.open() for k in started))
        for k in started:
            await k.refresh()
        assert len({k.signing for k in started}) == 1
        assert all(set(k.trusted) == set(started[0].trusted) for k in started)

    async def test_keys_are_re_listed_at_most_every_few_seconds(
        self, storage: InMemoryDriver
    ) -> None:
        early = SharedKeys(storage, KEYS, may_write=True)
        await early.open()
        await storage.put_content(f"{KEYS}/0000", b"ab" * 32)
        assert not await early.refresh()  # just listed
        assert b"\xab" * 32 not in early.trusted

    async def test_read_only_storage_gets_no_key_written(self, storage: InMemoryDriver) -> None:
        local = SharedKeys(storage, KEYS, may_write=False)
        await local.open()
        assert len(local.signing) == 32
        with pytest.raises(PathNotFound):
            await storage.list(KEYS)

    async def test_files_that_are_not_keys_are_ignored(self, storage: InMemoryDriver) -> None:
        await storage.put_content(f"{KEYS}/junk", b"not hex")
        await storage.put_content(f"{KEYS}/short", b"abcd")
        loaded = SharedKeys(storage, KEYS, may_write=True)
        await loaded.open()
        assert len(loaded.trusted) == 1
        assert len(await storage.list(KEYS)) == 3


class TestSessionsAcrossProcesses:
    async def test_a_session_and_its_form_token_work_on_another_process_and_after_restart(
        self, storage: InMemoryDriver, htpasswd_config: Config
    ) -> None:
        """Two apps on one storage stand for two workers; a third for a restart."""
        seeder = TestClient(TestServer(create_app(Config(), storage)))
        await seeder.start_server()
        await push_image(seeder, "team/app", "v1")
        await seeder.close()
        one, two = (TestClient(TestServer(create_app(htpasswd_config, storage))) for _ in range(2))
        await one.start_server()
        await two.start_server()
        try:
            assert await log_in(one, "alice") == 303
            cookie = one.session.cookie_jar.filter_cookies(one.make_url("/ui/"))["cargobay_ui"]
            headers = {"Cookie": f"cargobay_ui={cookie.value}"}
            page = await (await one.get("/ui/r/team/app/-/delete?reference=v1")).text()
            response = await two.post(
                "/ui/r/team/app/-/delete",
                data={"reference": "v1", "csrf": csrf_of(page)},
                headers=headers,
                allow_redirects=False,
            )
            assert response.status == 303
            await one.close()
            three = TestClient(TestServer(create_app(htpasswd_config, storage)))
            await three.start_server()
            try:
                text = await (await three.get("/ui/", headers=headers)).text()
                assert 'id="user">alice<' in text
            finally:
                await three.close()
        finally:
            await one.close()
            await two.close()
