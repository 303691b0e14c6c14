from sqlalchemy import ColumnElement, select

from app.repository import ScopedRepository
from app.tables import BatchPrediction, RegisteredModel
from app.tables.statuses import BATCH_ACTIVE


class ModelRepository(ScopedRepository[RegisteredModel]):
    table = RegisteredModel

    def page_filtered(
        self, *, limit: int, after: str | None, job_id: str | None, status: str | None
    ) -> tuple[list[RegisteredModel], bool]:
        criteria: list[ColumnElement[bool]] = []
        if job_id is not None:
            criteria.append(RegisteredModel.job_id == job_id)
        if status is not None:
            criteria.append(RegisteredModel.status == status)
        return self.page(*criteria, limit=limit, after=after)

    def ids_of_job(self, job_id: str) -> list[str]:
        statement = self.scope.where(
            select(RegisteredModel.id).where(RegisteredModel.job_id == job_id), RegisteredModel
        )
        return list(self.session.scalars(statement))


class BatchPredictionRepository(ScopedRepository[BatchPrediction]):
    table = BatchPrediction

    def of_model(self, model_id: str, batch_id: str) -> BatchPrediction | None:
        statement = self.scoped().where(
            BatchPrediction.id == batch_id, BatchPrediction.model_id == model_id
        )
        return self.session.scalars(statement).one_or_none()

    def of_model_all(self, model_id: str) -> list[BatchPrediction]:
        statement = self.scoped().where(BatchPrediction.model_id == model_id)
        return list(self.session.scalars(statement))

    def stalled(self, *, before: float) -> list[BatchPrediction]:
        """Unfinished runs sent before `before`; a run in progress holds its row locked,
        so it is skipped, not waited for."""
        statement = self.scoped().where(
            BatchPrediction.status.in_(BATCH_ACTIVE), BatchPrediction.stage_started_at < before
        )
        return list(self.session.scalars(statement.with_for_update(skip_locked=True)))
