from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.pagination import fetch_page
from app.tables import Dataset, Job
from app.tables.statuses import DatasetStatus
from app.tenancy.scope import owned_by


class DatasetRepository:
    def __init__(self, session: Session, tenant_id: str | None = None) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def add(self, dataset: Dataset) -> Dataset:
        self.session.add(dataset)
        self.session.flush()
        return dataset

    def get(
        self, dataset_id: str, *, for_update: bool = False, nowait: bool = False
    ) -> Dataset | None:
        """With `nowait`, a row another transaction holds locked raises at once
        (PostgreSQL's LockNotAvailable) instead of waiting for it."""
        statement = select(Dataset).where(Dataset.id == dataset_id, Dataset.deleted_at.is_(None))
        statement = owned_by(statement, Dataset, self.tenant_id)
        if for_update:
            statement = statement.with_for_update(nowait=nowait)
        return self.session.scalars(statement).one_or_none()

    def page(self, *, limit: int, after: str | None) -> tuple[list[Dataset], bool]:
        live = owned_by(
            select(Dataset).where(Dataset.deleted_at.is_(None)), Dataset, self.tenant_id
        )
        return fetch_page(self.session, live, Dataset, limit=limit, after=after)

    def stalled(self, *, before: float) -> list[Dataset]:
        """Datasets still `processing` whose ingest was sent before `before`. Rows an
        ingest holds locked are being worked on, so they are skipped, not waited for."""
        statement = select(Dataset).where(
            Dataset.status == DatasetStatus.PROCESSING,
            Dataset.deleted_at.is_(None),
            Dataset.stage_started_at < before,
        )
        return list(self.session.scalars(statement.with_for_update(skip_locked=True)))

    def job_ids(self, dataset_id: str, *, statuses: Collection[str] | None = None) -> list[str]:
        statement = select(Job.id).where(Job.dataset_id == dataset_id)
        if statuses is not None:
            statement = statement.where(Job.status.in_(statuses))
        return list(self.session.scalars(statement))

    def states(self, dataset_ids: list[str]) -> dict[str, tuple[str, int | None]]:
        """`(status, deleted_at)` by id, deleted rows included, for the ids that have a row."""
        statement = select(Dataset.id, Dataset.status, Dataset.deleted_at).where(
            Dataset.id.in_(dataset_ids)
        )
        return {row.id: (row.status, row.deleted_at) for row in self.session.execute(statement)}
