"""Typed exceptions, one per kind of failure, mapped from the API's error object
`{"error": {"type", "code", "message", "param"}}` and its HTTP status."""

from __future__ import annotations

from typing import Any

import httpx


class ShardtrainError(Exception):
    """Every error the SDK raises. `status` is the HTTP status (None when no response
    came back); `type`, `code` and `param` are the API error object's fields."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers if headers is not None else httpx.Headers()

    def __str__(self) -> str:
        where = f" (param: {self.param})" if self.param else ""
        prefix = f"{self.status} {self.code}: " if self.status is not None else ""
        return f"{prefix}{self.message}{where}"


class APIStatusError(ShardtrainError):
    """The server answered with an error status."""


class BadRequestError(APIStatusError):
    """400: the request could not be parsed (also the base of the 422 validation error)."""


class ValidationError(BadRequestError):
    """422: a field, the spec or an input record is invalid; `param` names it."""


class AuthenticationError(APIStatusError):
    """401: no API key, or an unknown or revoked one."""


class PermissionDeniedError(APIStatusError):
    """403."""


class NotFoundError(APIStatusError):
    """404: no such object for this API key's tenant."""


class ConflictError(APIStatusError):
    """409: the object's state forbids the action (in use, not ready, not deployed...)."""


class PayloadTooLargeError(APIStatusError):
    """413: the upload, the body or the prediction request is too large."""


class UnsupportedMediaTypeError(APIStatusError):
    """415: the upload is not CSV, Parquet or JSON Lines."""


class RateLimitError(APIStatusError):
    """429: over a rate limit or the unfinished-jobs quota, after every retry."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


class ServerError(APIStatusError):
    """5xx, after every retry."""


class APIConnectionError(ShardtrainError):
    """No response: the server could not be reached, or the connection broke."""


# The name the issue uses; `APIConnectionError` avoids shadowing the builtin.
ConnectionError = APIConnectionError


class WaitTimeoutError(ShardtrainError):
    """A `wait` did not see the object finish within its timeout."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: ValidationError,
    429: RateLimitError,
}


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the API sends delta-seconds; an HTTP date is not used)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(seconds, 0.0)


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The exception for an error response, reading the API's error object when there is
    one and falling back to the status line when there is not (a proxy's HTML page)."""
    status = response.status_code
    fields: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        fields = body["error"]
    message = str(fields.get("message") or response.reason_phrase or f"HTTP {status}")
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIStatusError)
    if cls is APIStatusError and status in (405,):
        cls = BadRequestError
    return cls(
        message,
        status=status,
        type=fields.get("type"),
        code=fields.get("code") or f"http_{status}",
        param=fields.get("param"),
        headers=response.headers,
    )
