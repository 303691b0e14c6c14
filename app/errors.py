"""The one error object, `{"error": {type, code, message, param}}`, for every failure."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
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
    return ".".join(parts) or None


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
        code = {404: "not_found", 400: "invalid_body", 405: "method_not_allowed"}.get(
            exc.status_code, f"http_{exc.status_code}"
        )
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(StaleDataError)
    async def _stale(_request: Request, exc: StaleDataError) -> JSONResponse:
        # A worker changed the same job between our read and our write.
        return error_response(409, "conflict", "The object changed meanwhile; retry.")

    @app.exception_handler(IntegrityError)
    async def _conflict(_request: Request, exc: IntegrityError) -> JSONResponse:
        # Two requests raced for the same unique row (an Idempotency-Key sent twice at
        # once, say): the loser retries and finds the winner's object.
        logger.info("integrity conflict: %s", exc.orig)
        return error_response(409, "conflict", "A concurrent request won; retry this one.")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return error_response(500, "server_error", "The server failed to handle the request.")
