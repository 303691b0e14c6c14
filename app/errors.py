"""The one error object, `{"error": {type, code, message, param}}`, for every failure."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.database_health import RETRY_AFTER_S, DatabaseHealth, is_unavailable
from app.db import is_transient_database_error
from app.jobs.spec import MODEL_UNION_TAGS

logger = logging.getLogger(__name__)

# nginx's status for a client that hung up before the answer: it is not a server error,
# and the metrics and logs should not count it as one. No client ever reads it.
CLIENT_CLOSED_REQUEST = 499

# pydantic-core's JSON parser (used where a route parses its own body) names these
# limits in its message; the rest of its failures are malformed JSON.
_PARSER_LIMITS = {
    "recursion limit exceeded": "nesting too deep",
    "number out of range": "a number too long to read",
}

TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    CLIENT_CLOSED_REQUEST: "invalid_request_error",
}


class ErrorBody(BaseModel):
    type: str
    code: str
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# Every /v1 operation can answer these; declared once so the OpenAPI document (and the
# clients generated from it) know the error object behind each.
COMMON_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body could not be parsed."},
    401: {"model": ErrorResponse, "description": "Missing, invalid or revoked API key."},
    413: {"model": ErrorResponse, "description": "The request body is too large."},
    422: {"model": ErrorResponse, "description": "A field is invalid; `param` names it."},
    503: {
        "model": ErrorResponse,
        "description": "The database is unreachable (`database_unavailable`); retry after "
        "the `Retry-After` header's seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


class APIError(Exception):
    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers


class DatabaseUnavailable(APIError):
    """503 with Retry-After: the request may well succeed once the database is back."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "database_unavailable",
            "The database is unreachable; retry in a few seconds.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


class NotFound(APIError):
    def __init__(self, kind: str, object_id: str, param: str = "id"):
        super().__init__(404, "not_found", f"No {kind} with id {object_id!r}.", param)


def error_response(
    status_code: int, code: str, message: str, param: str | None = None
) -> JSONResponse:
    body = ErrorBody(
        type=TYPE_BY_STATUS.get(status_code, "api_error"), code=code, message=message, param=param
    )
    return JSONResponse(status_code=status_code, content=ErrorResponse(error=body).model_dump())


def _param_from_loc(loc: tuple[Any, ...]) -> str | None:
    # ("body", "training", "learning_rate") -> "training.learning_rate"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    if len(parts) > 1 and parts[0] == "model" and parts[1] in MODEL_UNION_TAGS:
        del parts[1]
    return ".".join(parts) or None


def _client_closed() -> JSONResponse:
    logger.info("client closed the connection before its request was read")
    return error_response(
        CLIENT_CLOSED_REQUEST, "client_closed_request", "The client closed the connection."
    )


def _unparseable_body(exc: StarletteHTTPException) -> str:
    # FastAPI reads JSON with the standard library and reports any failure but a syntax
    # error as "There was an error parsing the body"; the cause says which limit it was.
    cause = exc.__cause__
    if isinstance(cause, RecursionError):
        return "The body could not be parsed: nesting too deep."
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return "The body could not be parsed: an integer too long to read."
    return str(exc.detail)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        response = error_response(exc.status_code, exc.code, exc.message, exc.param)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            # FastAPI's decoder puts a character offset in loc; pydantic-core's (used
            # by predict) puts line and column in its message.
            position = (first.get("loc") or ("",))[-1]
            if isinstance(position, int):
                message = f"The body is not valid JSON (at character {position})."
            else:
                context = first.get("ctx")
                detail = context.get("error") if isinstance(context, dict) else None
                detail = str(detail or first.get("msg", ""))
                limit = next((v for k, v in _PARSER_LIMITS.items() if detail.startswith(k)), None)
                if limit is not None:
                    # The same answer as the routes FastAPI parses for: 400 invalid_body.
                    return error_response(
                        400, "invalid_body", f"The body could not be parsed: {limit} ({detail})."
                    )
                message = f"The body is not valid JSON ({detail})."
            return error_response(422, "invalid_json", message, None)
        param = _param_from_loc(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid request"))
        if param:
            message = f"{param}: {message}"
        extra = len(exc.errors()) - 1
        if extra > 0:
            message += f" (and {extra} more error{'s' if extra > 1 else ''})"
        return error_response(422, "invalid_request", message, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            if isinstance(exc.__cause__, ClientDisconnect):
                return _client_closed()
            return error_response(400, "invalid_body", _unparseable_body(exc))
        code = {404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, f"http_{exc.status_code}"
        )
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(ClientDisconnect)
    async def _disconnected(_request: Request, _exc: ClientDisconnect) -> JSONResponse:
        return _client_closed()

    @app.exception_handler(StaleDataError)
    async def _stale(_request: Request, exc: StaleDataError) -> JSONResponse:
        # A worker changed the same job between our read and our write.
        return error_response(409, "conflict", "The object changed meanwhile; retry.")

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeoutError)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Not a bug of ours and the same for every request during an outage: no
        # traceback, and one log line per outage (DatabaseHealth), not one per request.
        # A serialization failure, a deadlock or a pool with no free connection is no
        # outage, but the same advice holds. Anything else (a missing table) is a bug:
        # raised on, to the 500 with its traceback.
        if not is_transient_database_error(exc):
            raise exc
        health: DatabaseHealth | None = getattr(request.app.state, "database_health", None)
        if health is not None and is_unavailable(exc):
            health.failed(exc)
        return await _api_error(request, DatabaseUnavailable())

    @app.exception_handler(IntegrityError)
    async def _conflict(_request: Request, exc: IntegrityError) -> JSONResponse:
        # Two requests raced for the same unique row (an Idempotency-Key sent twice at
        # once, say): the loser retries and finds the winner's object.
        logger.info("integrity conflict: %s", exc.orig)
        return error_response(409, "conflict", "A concurrent request won; retry this one.")


class UnhandledErrorMiddleware:
    """A JSON 500 for an exception no handler claims, on a connection that stays open.

    A handler registered for `Exception` runs in Starlette's ServerErrorMiddleware, which
    re-raises after answering; uvicorn then logs the error a second time and closes the
    connection, so a keep-alive client's next request met a reset. Added as the
    innermost user middleware, this answers and returns normally instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                # Part of the answer is out: only closing the connection (the server
                # does that) tells the client it is incomplete.
                raise
            if is_unavailable(exc):
                # Raised where no exception handler sees it (a middleware, say): the
                # same quiet 503 as from a route.
                health = getattr(scope["app"].state, "database_health", None)
                if health is not None:
                    health.failed(exc)
                unavailable = DatabaseUnavailable()
                response = error_response(503, unavailable.code, unavailable.message)
                response.headers.update(unavailable.headers or {})
            else:
                logger.exception("unhandled error", exc_info=exc)
                response = error_response(
                    500, "server_error", "The server failed to handle the request."
                )
            await response(scope, receive, send)
