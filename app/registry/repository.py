from sqlalchemy import select
from sqlalchemy.orm import Session

from app.pagination import fetch_page
from app.tables import BatchPrediction, RegisteredModel
from app.tables.statuses import BATCH_ACTIVE
from app.tenancy.scope import owned_by


class ModelRepository:
    def __init__(self, session: Session, tenant_id: str | None = None) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def add(self, model: RegisteredModel) -> RegisteredModel:
        self.session.add(model)
        self.session.flush()
        return model

    def get(self, model_id: str, *, for_update: bool = False) -> RegisteredModel | None:
        statement = select(RegisteredModel).where(RegisteredModel.id == model_id)
        statement = owned_by(statement, RegisteredModel, self.tenant_id)
        if for_update:
            statement = statement.with_for_update()
        return self.session.scalars(statement).one_or_none()

    def page(
        self, *, limit: int, after: str | None, job_id: str | None, status: str | None
    ) -> tuple[list[RegisteredModel], bool]:
        statement = owned_by(select(RegisteredModel), RegisteredModel, self.tenant_id)
        if job_id is not None:
            statement = statement.where(RegisteredModel.job_id == job_id)
        if status is not None:
            statement = statement.where(RegisteredModel.status == status)
        return fetch_page(self.session, statement, RegisteredModel, limit=limit, after=after)


class BatchPredictionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def stalled(self, *, before: float) -> list[BatchPrediction]:
        """Unfinished runs sent before `before`; a run in progress holds its row locked,
        so it is skipped, not waited for."""
        statement = select(BatchPrediction).where(
            BatchPrediction.status.in_(BATCH_ACTIVE),
            BatchPrediction.stage_started_at < before,
        )
        return list(self.session.scalars(statement.with_for_update(skip_locked=True)))
