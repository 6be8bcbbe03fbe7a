"""One JSON error body for every failure, and the handlers that produce it.

``{"error": {"code": "invalid_parameter", "parameter": "k", "message": "..."}}``: ``parameter``
names the query, path or body field at fault (absent when none is); no response ever carries a
stack trace (unexpected exceptions are logged and answered with a bare 500).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as JSON with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.parameter, self.headers = parameter, headers


def error_body(code: str, message: str, parameter: str | None = None) -> dict:
    err: dict = {"code": code, "message": message}
    if parameter is not None:
        err["parameter"] = parameter
    return {"error": err}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message, exc.parameter), status_code=exc.status, headers=exc.headers
    )


def validation_error(errors: list[dict]) -> ApiError:
    """The first of pydantic's errors as an :class:`ApiError` naming its parameter."""
    if not errors:
        return ApiError(400, "invalid_parameter", "invalid request")
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if not isinstance(p, int)]
    where, names = (loc[0], loc[1:]) if loc else ("body", [])
    kind = first.get("type", "")
    if kind == "json_invalid":
        return ApiError(
            400, "malformed_json", f"the request body is not valid JSON: {first.get('msg')}", parameter="body"
        )
    parameter = ".".join(names) if names else where
    if kind == "extra_forbidden":
        return ApiError(400, "unknown_parameter", f"{parameter}: unknown field", parameter=parameter)
    message = str(first.get("msg", "invalid value"))
    return ApiError(400, "invalid_parameter", f"{parameter}: {message}", parameter=parameter)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        parameter = "body" if exc.status_code == 413 else None
        return error_response(
            ApiError(
                exc.status_code,
                codes.get(exc.status_code, "http_error"),
                message,
                parameter=parameter,
                headers=exc.headers,
            )
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(ApiError(500, "internal_error", "internal server error (logged)"))


class BodyLimitMiddleware:
    """Pure ASGI middleware: a request body over ``max_bytes`` gets a 413 before it is parsed.

    A declared ``Content-Length`` over the limit is answered at once (the body is read and
    dropped, so the client sees the answer rather than a reset); a chunked body is counted as
    it arrives.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        message = f"the request body is over {self.max_bytes} bytes"
        if declared.isdigit() and int(declared) > self.max_bytes:
            while (await receive()).get("more_body"):
                pass
            response = JSONResponse(error_body("body_too_large", message, "body"), status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted():
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.max_bytes:
                raise StarletteHTTPException(413, message)
            return msg

        await self.app(scope, counted, send)
