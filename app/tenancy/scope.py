"""The one rule every repository applies: a tenant sees only its own rows."""

from typing import Any, TypeVar

from sqlalchemy import Select

Row = TypeVar("Row", bound=tuple[Any, ...])


def owned_by(statement: Select[Row], table: Any, tenant_id: str | None) -> Select[Row]:
    """Scope a query to a tenant. `None` is the workers' system scope: they act on ids
    that came from a tenant's own request, and check each row against the job's tenant."""
    return statement if tenant_id is None else statement.where(table.tenant_id == tenant_id)
