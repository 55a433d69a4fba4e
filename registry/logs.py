"""Log lines that say which request they belong to, as text for people or JSON for shippers.

The request being served is a `RequestContext` in a context variable, set by
the request middleware (`registry.api.observe`) before anything else runs, so
every line logged while serving it, from any module, carries its request id.
`configure_logging` installs one handler on the root logger:

- `text`: `time LEVEL [pid] logger [request-id]: message`;
- `json`: one object per line with `time`, `level`, `logger`, `pid`, `message`, the
  request's `request_id`, `client`, `user`, `method`, `route`, `repository`
  and `digest`; `exception` holds a traceback. Access lines carry `path`,
  `status`, `bytes` and `duration` (seconds) instead of a message.

Access lines (`AccessLog`) look the same but are written straight to the
stream, past the logging machinery, as Distribution writes its access log
apart from its other logs: a record through `logging` costs a manifest served
from memory half again its CPU (measured). `registry.api.observe` builds the
lines of one turn of the event loop at the end of that turn, and writes them
in one write.

A client sending a malformed request is not a server fault: aiohttp's ERROR
with a traceback for it becomes one WARNING line, quoting at most
`MALFORMED_QUOTE_CHARS` of what aiohttp says of it. A connection whose first
line does not start with a method at all (a TLS handshake on the plain port,
as docker tries first with an insecure registry, or a port scanner) aiohttp
itself logs at DEBUG, as noise; its 400 is in the access log all the same.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, StreamResponse

from registry.config import LogConfig

# The process id tells the workers of `cargobay serve --workers` apart.
_TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s [%(request_id)s]: %(message)s"
ACCESS_LOGGER = "registry.access"
#: How much of aiohttp's account of a malformed request a WARNING keeps: it quotes what
#: the client sent, up to a whole 8 KiB line.
MALFORMED_QUOTE_CHARS = 300


@dataclass(slots=True)
class RequestContext:
    """What log lines and events say of the request being served; `started` is its
    `time.perf_counter()` when the application began serving it."""

    request_id: str
    client: str
    method: str
    route: str
    host: str
    scheme: str
    useragent: str
    started: float
    repository: str | None = None
    digest: str | None = None
    user: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("cargobay_request", default=None)


def current_request() -> RequestContext | None:
    """The request the running task serves, or None outside a request."""
    return _current.get()


def enter_request(context: RequestContext) -> None:
    """Make `context` the current request of the running task (until the next one)."""
    _current.set(context)


def set_user(user: str | None) -> None:
    """Record who the current request was authenticated as (no-op outside a request)."""
    context = _current.get()
    if context is not None:
        context.user = user


class RequestIdFilter(logging.Filter):
    """Adds `request_id` ("-" outside a request) and the request's context to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        record.request_id = context.request_id if context is not None else "-"
        record.request = context
        return True


class ClientErrorFilter(logging.Filter):
    """Turns aiohttp's ERROR-with-traceback for a malformed request into one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            # aiohttp's account spans lines: the fault, the bytes read, a caret under it.
            lines = (line.strip() for line in record.exc_info[1].message.splitlines())
            account = " ".join(line for line in lines if line.strip("^"))
            if len(account) > MALFORMED_QUOTE_CHARS:
                account = account[:MALFORMED_QUOTE_CHARS] + "..."
            record.msg = f"{record.getMessage()}: malformed request: {account}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = "WARNING"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        context: RequestContext | None = getattr(record, "request", None)
        if context is not None:
            _add_context(line, context)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def _add_context(line: dict[str, Any], context: RequestContext) -> None:
    line["request_id"] = context.request_id
    line["client"] = context.client
    line["user"] = context.user
    line["method"] = context.method
    line["route"] = context.route
    line["repository"] = context.repository
    line["digest"] = context.digest


#: A request answered: the request, its response, its context (None for aiohttp's own
#: answer to a request too malformed to reach the application), its duration in
#: seconds, and when it was answered (`time.time_ns()`).
Answered = tuple[BaseRequest, StreamResponse, RequestContext | None, float, int]


class AccessLog:
    """Writes the access lines of answered requests to `stream`, as `format` ("text",
    "json") lines of the `registry.access` logger at INFO look."""

    def __init__(self, format: str, stream: TextIO) -> None:
        self._json = format == "json"
        self._stream = stream
        self._pid = os.getpid()
        # The time up to the second, formatted once per second: formatting a time
        # costs as much as the rest of a line.
        self._second = -1
        self._stamp = ""

    def _new_second(self, second: int) -> None:
        self._second = second
        if self._json:
            moment = datetime.datetime.fromtimestamp(second, datetime.UTC)
            self._stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
        else:  # as logging.Formatter's default time format
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))

    def write(self, answered: Iterable[Answered]) -> None:
        """Write the lines of `answered`, in one write.

        JSON lines carry the fields and no message (`duration` to the microsecond);
        text lines say `client user "METHOD path HTTP/x.y" status bytes duration`, the
        request line quoted as in the common log format.
        """
        lines = self._json_lines(answered) if self._json else self._text_lines(answered)
        # Past the text layer, which the lines skip (orjson makes bytes): emptied first,
        # so that what other code wrote to the stream comes before them.
        self._stream.flush()
        self._stream.buffer.write(b"".join(lines))
        self._stream.buffer.flush()

    def _json_lines(self, answered: Iterable[Answered]) -> list[bytes]:
        # One loop, no call per line: these lines are most of what logging costs a request.
        lines = []
        pid = self._pid
        for request, response, c, duration, at in answered:
            if at // 1_000_000_000 != self._second:
                self._new_second(at // 1_000_000_000)
            stamp = f"{self._stamp}.{at // 1000 % 1_000_000:06d}+00:00"
            duration = round(duration * 1_000_000) / 1_000_000  # round(x, 6) costs 3x more
            fields: dict[str, Any]
            if c is not None:
                # `_add_context`'s fields, in one dict display: the cheapest way to build it.
                fields = {
                    "time": stamp,
                    "level": "info",
                    "logger": ACCESS_LOGGER,
                    "pid": pid,
                    "request_id": c.request_id,
                    "client": c.client,
                    "user": c.user,
                    "method": c.method,
                    "route": c.route,
                    "repository": c.repository,
                    "digest": c.digest,
                    "path": request.path,
                    "status": response.status,
                    "bytes": response.body_length,
                    "duration": duration,
                }
            else:
                fields = {
                    "time": stamp,
                    "level": "info",
                    "logger": ACCESS_LOGGER,
                    "pid": pid,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "bytes": response.body_length,
                    "duration": duration,
                }
            lines.append(orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE))
        return lines

    def _text_lines(self, answered: Iterable[Answered]) -> list[bytes]:
        lines = []
        for request, response, c, duration, at in answered:
            if at // 1_000_000_000 != self._second:
                self._new_second(at // 1_000_000_000)
            request_id = c.request_id if c is not None else "-"
            user = (c.user if c is not None else None) or "-"
            version = request.version
            lines.append(
                (
                    f"{self._stamp},{at // 1_000_000 % 1000:03d} INFO [{self._pid}] "
                    f"{ACCESS_LOGGER} [{request_id}]: {request.remote or '-'} {user} "
                    f'"{request.method} {request.path_qs} HTTP/{version.major}.{version.minor}" '
                    f"{response.status} {response.body_length} {duration:.3f}s\n"
                ).encode()
            )
        return lines


def configure_logging(config: LogConfig) -> None:
    """Send every logger's records to stderr at `config.level`, formatted as `config.format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if config.format == "json" else logging.Formatter(_TEXT_FORMAT)
    )
    # No format here shows the caller's file and line, thread or process name: spare
    # every record finding them (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    logging.getLogger("aiohttp.server").addFilter(ClientErrorFilter())
