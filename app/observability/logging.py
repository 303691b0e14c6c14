"""One log configuration for the API, Celery workers and beat: plain text or JSON lines,
each line carrying the ids of the task or request being handled."""

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["plain", "json"]

# Immutable pairs, replaced on each bind: a task or request nested in another sees its
# parent's ids plus its own, and leaving it restores the parent's exactly.
_ids: ContextVar[tuple[tuple[str, object], ...]] = ContextVar("shardtrain_log_ids", default=())

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s%(ids)s %(message)s"
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
_HANDLER_NAME = "shardtrain"


@contextmanager
def log_ids(**ids: object) -> Iterator[None]:
    """Put these ids (job_id, round, shard, request_id, ...) on every line logged inside."""
    merged = {**dict(_ids.get()), **{k: v for k, v in ids.items() if v is not None}}
    token = _ids.set(tuple(merged.items()))
    try:
        yield
    finally:
        _ids.reset(token)


class IdsFilter(logging.Filter):
    """Copies the current ids onto the record: as attributes, which the JSON formatter
    writes as fields, and as one ` key=value` string for the plain format."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _ids.get()
        for key, value in ids:
            setattr(record, key, value)
        record.ids = "".join(f" {key}={value}" for key, value in ids)
        return True


def _formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            _JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            # `ids` is the plain format's rendering of the same fields.
            reserved_attrs=[*RESERVED_ATTRS, "ids"],
        )
    return logging.Formatter(PLAIN_FORMAT)


def configure_logging(
    log_format: LogFormat,
    level: int | str = logging.INFO,
    *,
    stream: IO[str] | None = None,
    filename: str | None = None,
) -> logging.Handler:
    """Install the one root handler; calling again replaces it, so every app a process
    creates (the tests make many) leaves exactly one."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    handler: logging.Handler = (
        logging.FileHandler(filename, encoding="utf-8")
        if filename
        else logging.StreamHandler(stream or sys.stderr)
    )
    handler.set_name(_HANDLER_NAME)
    # On the handler, not a logger: a logger's filters skip records that propagate to it.
    handler.addFilter(IdsFilter())
    handler.setFormatter(_formatter(log_format))
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn installs its own handlers before it builds the app; routing its lines
    # through the root handler gives access and error lines the same format and ids.
    for name in ("uvicorn", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    return handler
