"""Refuse the NUL character (U+0000) wherever a client's text could reach SQL.

PostgreSQL's text types cannot hold it, so an id, a name or a spec field carrying one
fails inside the driver, a 500 to the client. It is never meaningful in anything this
API stores, so it is a 422 naming where it was, on every database alike.
"""

from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticCustomError

NUL = "\x00"
MESSAGE = "may not contain the NUL character (\\u0000)"


def holds_nul(value: Any) -> bool:
    """A string, or a list or dict of them at any depth; a nested model checks itself."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, list | tuple):
        return any(holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    return False


def refuse_nul_field(value: Any) -> Any:
    """A pydantic `field_validator("*")` body: the error's loc is the field's."""
    if not isinstance(value, BaseModel) and holds_nul(value):
        raise PydanticCustomError("string_nul_character", MESSAGE)
    return value
