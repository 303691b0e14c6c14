"""Whose rows a query may read. Every repository of a tenant-owned table is built with
a Scope its caller states: a tenant's (the API, acting on one request) or the system's
(the workers, the watchdog and the metrics, acting on ids that a tenant's own request
put in a message, and reading that tenant off the row they load). There is no default:
a forgotten tenant is a type error, not a silent read across tenants."""

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select

Row = TypeVar("Row", bound=tuple[Any, ...])


@dataclass(frozen=True)
class Scope:
    tenant_id: str | None

    @classmethod
    def tenant(cls, tenant_id: str) -> "Scope":
        if not tenant_id:
            raise ValueError("a tenant scope needs a tenant id; use SYSTEM for every tenant")
        return cls(tenant_id)

    def where(self, statement: Select[Row], table: Any) -> Select[Row]:
        """`statement` narrowed to the scope's rows of `table`."""
        if self.tenant_id is None:
            return statement
        return statement.where(table.tenant_id == self.tenant_id)

    def admits(self, tenant_id: str) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id


SYSTEM = Scope(None)
