"""Log lines that say which request they belong to, as text for people or JSON for shippers.

The request being served is a `RequestContext` in a context variable, set by
the request middleware (`registry.api.observe`) before anything else runs, so
every line logged while serving it, from any module, carries its request id.
`configure_logging` installs one handler on the root logger:

- `text`: `time LEVEL logger [request-id]: message`;
- `json`: one object per line with `time`, `level`, `logger`, `message`, the
  request's `request_id`, `client`, `user`, `method`, `route`, `repository`
  and `digest`, and on access lines `path`, `status`, `bytes` and `duration`
  (seconds); `exception` holds a traceback.

A client sending a malformed request is not a server fault: aiohttp's ERROR
with a traceback for it becomes one WARNING line.
"""

from __future__ import annotations

import datetime
import logging
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp.http_exceptions import HttpProcessingError

from registry.config import LogConfig

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
#: Fields of access lines, passed as `extra` by the access logger.
ACCESS_FIELDS = ("path", "status", "bytes", "duration")


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
    """Adds `request_id` ("-" outside a request) and the request's context to every record.

    A record that names its request (`extra={"request": ...}`, the access log's) keeps it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context: RequestContext | None = getattr(record, "request", None) or _current.get()
        record.request_id = context.request_id if context is not None else "-"
        record.request = context
        return True


class ClientErrorFilter(logging.Filter):
    """Turns aiohttp's ERROR-with-traceback for a malformed request into one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()}: malformed request: {error.message}"
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
            "message": record.getMessage(),
        }
        context: RequestContext | None = getattr(record, "request", None)
        if context is not None:
            line["request_id"] = context.request_id
            line["client"] = context.client
            line["user"] = context.user
            line["method"] = context.method
            line["route"] = context.route
            line["repository"] = context.repository
            line["digest"] = context.digest
        for name in ACCESS_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure_logging(config: LogConfig) -> None:
    """Send every logger's records to stderr at `config.level`, formatted as `config.format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if config.format == "json" else logging.Formatter(_TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    logging.getLogger("aiohttp.server").addFilter(ClientErrorFilter())
