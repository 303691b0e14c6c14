"""The base of the repositories of tenant-owned tables (jobs, datasets, models, batch
predictions): add, get and page, each under the Scope the repository was built with.
Subclasses add their own queries and start them from `self.scoped()`, so none of them
can forget the tenant."""

from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from app.pagination import fetch_page
from app.tables.base import Base
from app.tenancy.scope import Scope

Row = TypeVar("Row", bound=Base)


class OutOfScope(ValueError):
    """A row of one tenant was handed to a repository scoped to another."""


class ScopedRepository(Generic[Row]):
    table: type[Row]

    def __init__(self, session: Session, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    def scoped(self) -> Select[tuple[Row]]:
        """Every row the scope may read; a subclass narrows it further (live rows only)."""
        return self.scope.where(select(self.table), self.table)

    def add(self, row: Row) -> Row:
        owned: Any = row  # every table with a repository here has a tenant_id column
        tenant_id: str = owned.tenant_id
        if not self.scope.admits(tenant_id):
            raise OutOfScope(f"a row of tenant {tenant_id} added in {self.scope}")
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, row_id: str, *, for_update: bool = False, nowait: bool = False) -> Row | None:
        """With `nowait`, a row another transaction holds locked raises at once
        (PostgreSQL's LockNotAvailable) instead of waiting for it."""
        table: Any = self.table
        statement = self.scoped().where(table.id == row_id)
        if for_update:
            statement = statement.with_for_update(nowait=nowait)
        return self.session.scalars(statement).one_or_none()

    def page(
        self, *criteria: ColumnElement[bool], limit: int, after: str | None
    ) -> tuple[list[Row], bool]:
        """Newest first, `after` an id of the previous page's last row."""
        statement = self.scoped().where(*criteria)
        return fetch_page(self.session, statement, self.table, limit=limit, after=after)
