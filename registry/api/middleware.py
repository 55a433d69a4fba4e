"""The one place where errors become HTTP responses, and headers every response carries."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from registry.errors import BodyTimeout, ClientGone, RegistryError, StorageError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_VERSION_HEADER = "Docker-Distribution-API-Version"
API_VERSION = "registry/2.0"
_JSON = "application/json"

# aiohttp's own refusals (unknown route, wrong method, oversized body) mapped to
# the spec's codes, so every client sees the same error shape.
_HTTP_CODES = {404: "NOT_FOUND", 405: "UNSUPPORTED", 413: "SIZE_INVALID"}


def error_response(error: RegistryError) -> web.Response:
    """The OCI error body for `error`, with the status its class maps to."""
    body = orjson.dumps({"errors": [error.to_dict()]})
    response = web.Response(status=error.status, body=body, content_type=_JSON)
    response.headers.update(error.response_headers())
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn `RegistryError` and aiohttp's HTTP errors into OCI error JSON; log the rest.

    An error after the handler's response has begun cannot be answered: the
    connection is closed instead, so the client sees a short body rather than
    the error's bytes passing as the rest of it. A stalled body (`BodyTimeout`)
    is answered, then its connection closed rather than drained.
    """
    answer: web.StreamResponse
    try:
        return await handler(request)
    except RegistryError as e:
        if isinstance(e, StorageError):
            log.error("%s %s: %s", request.method, request.path, e)
        answer = error_response(e)
        if isinstance(e, BodyTimeout) and not request.writer.output_size:
            return await _answer_and_close(request, answer)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status, "UNKNOWN")
        body = orjson.dumps({"errors": [{"code": code, "message": e.reason}]})
        headers = {
            k: v for k, v in e.headers.items() if k not in ("Content-Type", "Content-Length")
        }
        answer = web.Response(status=e.status, body=body, content_type=_JSON, headers=headers)
    except ConnectionResetError as e:
        # The client went away mid-body. The answer will reach nobody; it exists
        # so that aiohttp logs a client error instead of a server fault.
        log.info("%s %s: client connection lost: %s", request.method, request.path, e)
        answer = error_response(ClientGone())
    except Exception:
        log.exception("%s %s: unexpected error", request.method, request.path)
        body = orjson.dumps({"errors": [{"code": "UNKNOWN", "message": "internal error"}]})
        answer = web.Response(status=500, body=body, content_type=_JSON)
    # aiohttp's own test for a begun response (it resets the count after "100 Continue").
    if request.writer.output_size and request.transport is not None:
        request.transport.close()
    return answer


async def _answer_and_close(request: web.Request, answer: web.Response) -> web.Response:
    """Send `answer`, then close the connection at once.

    aiohttp would otherwise read what is left of the body for up to ten more
    seconds before closing, which a stalled client never sends.
    """
    answer.force_close()
    await answer.prepare(request)
    await answer.write_eof()
    request.protocol.force_close()  # the transport sends what it holds, then closes
    return answer


async def add_api_version(request: web.Request, response: web.StreamResponse) -> None:
    """Every response says which API it speaks (clients probe for it on /v2/)."""
    response.headers[API_VERSION_HEADER] = API_VERSION
