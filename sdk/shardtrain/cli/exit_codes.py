"""Exit codes scripts can rely on: one per kind of failure, the same for every command.

| code | meaning |
|---|---|
| 0 | success |
| 1 | an unexpected error (a bug, or an API error of no other kind) |
| 2 | usage: a bad option or argument, an unreadable spec or input file |
| 3 | authentication: no API key, or an unknown or revoked one (401, 403) |
| 4 | not found (404): no such dataset, job, model or sweep for this key |
| 5 | conflict (409): the object's state forbids it (in use, not ready, not deployed) |
| 6 | invalid request (400, 413, 415, 422): the spec, a field or an input record |
| 7 | rate limited (429), after the retries |
| 8 | server error (5xx), after the retries |
| 9 | no connection to the server, after the retries |
| 10 | `--wait`: a job or sweep failed or was cancelled, a dataset or batch prediction failed |
| 11 | `--wait --timeout`: still not finished when the timeout passed |
| 130 | interrupted (Ctrl-C) |
"""

from __future__ import annotations

import pydantic

from shardtrain import errors

OK = 0
ERROR = 1
USAGE = 2
AUTH = 3
NOT_FOUND = 4
CONFLICT = 5
INVALID = 6
RATE_LIMITED = 7
SERVER = 8
CONNECTION = 9
UNSUCCESSFUL = 10
TIMEOUT = 11
INTERRUPTED = 130

_BY_ERROR: list[tuple[type[BaseException], int]] = [
    (errors.AuthenticationError, AUTH),
    (errors.PermissionDeniedError, AUTH),
    (errors.NotFoundError, NOT_FOUND),
    (errors.ConflictError, CONFLICT),
    (errors.BadRequestError, INVALID),
    (errors.PayloadTooLargeError, INVALID),
    (errors.UnsupportedMediaTypeError, INVALID),
    (pydantic.ValidationError, INVALID),
    (errors.RateLimitError, RATE_LIMITED),
    (errors.ServerError, SERVER),
    (errors.APIConnectionError, CONNECTION),
    (errors.WaitTimeoutError, TIMEOUT),
]


def exit_code_for(exc: BaseException) -> int:
    for kind, code in _BY_ERROR:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, errors.ShardtrainError) and exc.status is None:
        # Raised before any request: no API key configured.
        return AUTH if "API key" in exc.message else ERROR
    return ERROR
