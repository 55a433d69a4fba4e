"""Fixtures of the notification tests: a real HTTP receiver on 127.0.0.1 that records what it
is sent, and can be told to fail or to hang."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

WAIT = 20.0


@dataclass
class Delivery:
    """One POST the receiver got."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: `fail` answers that many POSTs with 500, `hang` holds every POST."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: int = 0
    fail: int = 0
    hang: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.fail:
            self.fail -= 1
            return web.Response(status=500)
        self.deliveries.append(Delivery(dict(request.headers), await request.read()))
        self.arrived.set()
        return web.Response(status=200)

    async def wait_for(self, count: int) -> list[Delivery]:
        """The first `count` deliveries, once they have arrived (within `WAIT` seconds)."""
        async with asyncio.timeout(WAIT):
            while len(self.deliveries) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.deliveries[:count]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A running receiver at `receiver.url`."""
    found = Receiver()
    app = web.Application()
    app.router.add_post("/events", found.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    found.url = str(server.make_url("/events"))
    yield found
    await server.close()
