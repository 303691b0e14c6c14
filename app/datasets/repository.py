from collections.abc import Collection

from sqlalchemy import Select, func, select

from app.repository import ScopedRepository
from app.tables import Dataset, Job
from app.tables.statuses import DatasetStatus


class DatasetRepository(ScopedRepository[Dataset]):
    table = Dataset

    def scoped(self) -> Select[tuple[Dataset]]:
        # A deleted dataset keeps its row (for `states`) but is gone to every reader.
        return super().scoped().where(Dataset.deleted_at.is_(None))

    def stalled(self, *, before: float) -> list[Dataset]:
        """Datasets still `processing` whose ingest was sent before `before`. Rows an
        ingest holds locked are being worked on, so they are skipped, not waited for."""
        statement = self.scoped().where(
            Dataset.status == DatasetStatus.PROCESSING, Dataset.stage_started_at < before
        )
        return list(self.session.scalars(statement.with_for_update(skip_locked=True)))

    def stored_bytes(self) -> int:
        """Bytes the live datasets in scope hold."""
        statement = self.scope.where(
            select(func.coalesce(func.sum(Dataset.bytes), 0)).where(Dataset.deleted_at.is_(None)),
            Dataset,
        )
        return int(self.session.scalar(statement) or 0)

    def job_ids(self, dataset_id: str, *, statuses: Collection[str] | None = None) -> list[str]:
        statement = self.scope.where(select(Job.id).where(Job.dataset_id == dataset_id), Job)
        if statuses is not None:
            statement = statement.where(Job.status.in_(statuses))
        return list(self.session.scalars(statement))

    def states(self, dataset_ids: list[str]) -> dict[str, tuple[str, int | None]]:
        """`(status, deleted_at)` by id, deleted rows included, for the ids that have a row."""
        statement = self.scope.where(
            select(Dataset.id, Dataset.status, Dataset.deleted_at).where(
                Dataset.id.in_(dataset_ids)
            ),
            Dataset,
        )
        return {row.id: (row.status, row.deleted_at) for row in self.session.execute(statement)}
