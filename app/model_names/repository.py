from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from app.repository import OutOfScope, ScopedRepository
from app.tables import ModelName, RegisteredModel
from app.tables.base import new_id, now_s


class ModelNameRepository(ScopedRepository[ModelName]):
    table = ModelName

    def by_name(self, name: str) -> ModelName | None:
        return self.session.scalars(self.scoped().where(ModelName.name == name)).one_or_none()

    def lock_or_create(self, tenant_id: str, name: str) -> ModelName:
        """The name's row, created if new, locked until the transaction ends. Two jobs
        naming a new model at once both insert; the loser's insert does nothing and it
        waits on the winner's lock instead of failing on the unique constraint."""
        if not self.scope.admits(tenant_id):
            raise OutOfScope(f"model name of tenant {tenant_id} in {self.scope}")
        values = {
            "id": new_id("mnm"),
            "tenant_id": tenant_id,
            "name": name,
            "latest_version": 0,
            "created_at": now_s(),
            "updated_at": now_s(),
        }
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(ModelName).values(**values)
        self.session.execute(statement.on_conflict_do_nothing(index_elements=["tenant_id", "name"]))
        locked = self.scoped().where(ModelName.name == name).with_for_update()
        # populate_existing: a row this session read before is read again under the lock.
        return self.session.scalars(locked.execution_options(populate_existing=True)).one()

    def versions(self, name: str) -> list[RegisteredModel]:
        statement = self.scope.where(
            select(RegisteredModel).where(RegisteredModel.model_name == name), RegisteredModel
        )
        return list(self.session.scalars(statement.order_by(RegisteredModel.version)))

    def version_id(self, name: str, version: int) -> str | None:
        statement = self.scope.where(
            select(RegisteredModel.id).where(
                RegisteredModel.model_name == name, RegisteredModel.version == version
            ),
            RegisteredModel,
        )
        return self.session.scalars(statement).one_or_none()
