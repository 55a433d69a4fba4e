"""Logs: JSON lines with the request's fields, one id across a request's lines, one WARNING
line for a malformed request, and the request id in text lines too."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.api.observe import observer_options
from registry.app import create_app
from registry.config import Config, LogConfig
from registry.drivers.inmemory import InMemoryDriver
from registry.drivers.wrapper import DriverWrapper
from registry.errors import StorageError
from registry.logs import configure_logging

T = TypeVar("T")


class Failing(DriverWrapper):
    """Fails every write once `failing` is set."""

    def __init__(self) -> None:
        super().__init__(InMemoryDriver())
        self.failing = False

    async def observe(self, operation: str, path: str, call: Awaitable[T]) -> T:
        if self.failing and operation == "put_content":
            close = getattr(call, "close", None)
            if close is not None:
                close()
            raise StorageError(self.name, path, "disk full")
        return await call


@pytest.fixture
def logging_as() -> Iterator[Any]:
    """`configure_logging` for a test; the logging set-up is restored afterwards."""
    root = logging.getLogger()
    server = logging.getLogger("aiohttp.server")
    saved = (root.handlers[:], root.level, server.filters[:])

    yield configure_logging

    root.handlers[:], level, server.filters[:] = saved
    root.setLevel(level)


async def serve(config: Config, driver: Failing) -> TestClient:
    server = TestServer(create_app(config, driver))
    await server.start_server(**observer_options(config))
    client = TestClient(server)
    await client.start_server()
    return client


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class TestJsonLogs:
    async def test_every_line_parses_and_a_requests_lines_share_its_id(
        self, logging_as: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = Config(log=LogConfig(format="json"))
        logging_as(config.log)
        driver = Failing()
        client = await serve(config, driver)
        try:
            assert (await client.get("/v2/")).status == 200
            driver.failing = True
            # A monolithic push: its layer link is a put_content (opening an
            # upload session stores nothing).
            digest = "sha256:" + hashlib.sha256(b"layer").hexdigest()
            failed = await client.post(
                f"/v2/team/app/blobs/uploads/?digest={digest}",
                data=b"layer",
                headers={"X-Request-Id": "push-1"},
            )
            assert failed.status == 503
        finally:
            await client.close()

        lines = json_lines(capsys.readouterr().err)
        mine = [line for line in lines if line.get("request_id") == "push-1"]
        assert [line["level"] for line in mine] == ["error", "info"]
        assert "disk full" in mine[0]["message"]
        access = mine[1]
        assert access["logger"] == "registry.access"
        assert access["status"] == 503
        assert access["method"] == "POST"
        assert access["route"] == "/v2/{name}/blobs/uploads/"
        assert access["repository"] == "team/app"
        assert access["client"] == "127.0.0.1"
        assert access["bytes"] > 0
        assert access["duration"] >= 0
        assert set(access) >= {"time", "level", "user", "digest", "path"}
        others = {line["request_id"] for line in lines if "request_id" in line} - {"push-1"}
        assert len(others) == 1  # the GET /v2/, with an id of its own

    async def test_digest_of_the_request_is_a_field(
        self, logging_as: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = Config(log=LogConfig(format="json"))
        logging_as(config.log)
        client = await serve(config, Failing())
        digest = "sha256:" + "a" * 64
        try:
            assert (await client.get(f"/v2/team/app/blobs/{digest}")).status == 404
        finally:
            await client.close()

        (access,) = [x for x in json_lines(capsys.readouterr().err) if x.get("status") == 404]
        assert access["digest"] == digest


class TestTextLogs:
    async def test_text_lines_carry_the_request_id(
        self, logging_as: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = Config()
        logging_as(config.log)
        client = await serve(config, Failing())
        try:
            await client.get("/v2/", headers={"X-Request-Id": "text-1"})
        finally:
            await client.close()

        (line,) = [x for x in capsys.readouterr().err.splitlines() if "[text-1]" in x]
        assert f" INFO [{os.getpid()}] registry.access [text-1]: " in line
        assert '"GET /v2/ HTTP/1.1" 200' in line


async def send_raw(client: TestClient, request: bytes) -> list[str]:
    """The status line and headers of the answer to `request`, sent on a connection of its
    own, which the server closes."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request)
    answer = await reader.read()
    writer.close()
    return answer.partition(b"\r\n\r\n")[0].decode().split("\r\n")


class TestMalformedRequests:
    async def test_a_malformed_request_line_is_one_text_warning_line_and_a_plain_400(
        self, logging_as: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = Config(log=LogConfig(access_log=False))
        logging_as(config.log)
        client = await serve(config, Failing())
        try:
            head = await send_raw(client, b"GET /v2/ HTTP/9.9\r\nHost: x\r\n\r\n")
        finally:
            await client.close()

        # aiohttp's own 400 (no middleware sees it), naming no Python or aiohttp version.
        assert head[0] == "HTTP/1.0 400 Bad Request"
        assert "Server: cargobay" in head[1:]
        logged = capsys.readouterr().err.splitlines()
        assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:", line) for line in logged), logged
        (line,) = [x for x in logged if " aiohttp.server " in x]
        assert " WARNING " in line
        assert line.endswith(
            "Error handling request from 127.0.0.1: malformed request: "
            "Bad status line: Invalid HTTP version: b'GET /v2/ HTTP/9.9'"
        )

    async def test_a_malformed_request_is_one_warning_line_without_traceback(
        self, logging_as: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = Config(log=LogConfig(format="json", access_log=False))
        logging_as(config.log)
        client = await serve(config, Failing())
        try:
            head = await send_raw(client, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nNot A Header\r\n\r\n")
        finally:
            await client.close()

        assert head[0] == "HTTP/1.0 400 Bad Request"
        logged = json_lines(capsys.readouterr().err)
        lines = [x for x in logged if x["logger"].startswith("aiohttp")]
        assert [(x["level"], x["logger"]) for x in lines] == [("warning", "aiohttp.server")]
        message = lines[0]["message"]
        assert message.endswith("malformed request: Invalid header token: b'Not A Header'")
        assert "exception" not in lines[0]
