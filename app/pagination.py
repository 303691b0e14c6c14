"""Cursor pagination shared by the repositories: newest first, `after` an object id."""

from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

Row = TypeVar("Row")


def fetch_page(
    session: Session, statement: Select[tuple[Row]], table: Any, *, limit: int, after: str | None
) -> tuple[list[Row], bool]:
    """Return one page and whether more follow. One extra row tells `has_more`."""
    statement = statement.order_by(table.seq.desc()).limit(limit + 1)
    if after is not None:
        cursor = select(table.seq).where(table.id == after).scalar_subquery()
        statement = statement.where(table.seq < cursor)
    rows = list(session.scalars(statement))
    return rows[:limit], len(rows) > limit
