from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from app.repository import OutOfScope, ScopedRepository
from app.tables import ModelAlias, ModelAliasChange, ModelName, RegisteredModel
from app.tables.base import new_id, now_s


class ModelNameRepository(ScopedRepository[ModelName]):
    table = ModelName

    def by_name(self, name: str) -> ModelName | None:
        return self.session.scalars(self.scoped().where(ModelName.name == name)).one_or_none()

    def locked(self, name: str) -> ModelName | None:
        """The name's row, locked until the transaction ends: every alias move and
        every new version of one name happen one at a time."""
        statement = self.scoped().where(ModelName.name == name).with_for_update()
        return self.session.scalars(
            statement.execution_options(populate_existing=True)
        ).one_or_none()

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

    def version(self, name: str, version: int) -> RegisteredModel | None:
        statement = self.scope.where(
            select(RegisteredModel).where(
                RegisteredModel.model_name == name, RegisteredModel.version == version
            ),
            RegisteredModel,
        )
        return self.session.scalars(statement).one_or_none()

    def version_id(self, name: str, version: int) -> str | None:
        statement = self.scope.where(
            select(RegisteredModel.id).where(
                RegisteredModel.model_name == name, RegisteredModel.version == version
            ),
            RegisteredModel,
        )
        return self.session.scalars(statement).one_or_none()


class ModelAliasRepository(ScopedRepository[ModelAlias]):
    table = ModelAlias

    def of_name(self, name: str) -> list[ModelAlias]:
        statement = self.scoped().where(ModelAlias.model_name == name)
        return list(self.session.scalars(statement.order_by(ModelAlias.alias)))

    def find(self, name: str, alias: str) -> ModelAlias | None:
        statement = self.scoped().where(ModelAlias.model_name == name, ModelAlias.alias == alias)
        return self.session.scalars(statement).one_or_none()

    def pointing_to(self, model_id: str) -> list[ModelAlias]:
        statement = self.scoped().where(ModelAlias.model_id == model_id)
        return list(self.session.scalars(statement.order_by(ModelAlias.alias)))

    def model_id(self, name: str, alias: str) -> str | None:
        statement = self.scope.where(
            select(ModelAlias.model_id).where(
                ModelAlias.model_name == name, ModelAlias.alias == alias
            ),
            ModelAlias,
        )
        return self.session.scalars(statement).one_or_none()


class ModelAliasChangeRepository(ScopedRepository[ModelAliasChange]):
    table = ModelAliasChange

    def page_of_name(
        self, name: str, *, limit: int, after: str | None
    ) -> tuple[list[ModelAliasChange], bool]:
        return self.page(ModelAliasChange.model_name == name, limit=limit, after=after)
