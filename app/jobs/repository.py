from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.pagination import fetch_page
from app.tables import Job, JobEvent, JobRound
from app.tables.statuses import JOB_ACTIVE
from app.tenancy.scope import owned_by


class JobRepository:
    def __init__(self, session: Session, tenant_id: str | None = None) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def add(self, job: Job) -> Job:
        self.session.add(job)
        self.session.flush()
        return job

    def get(self, job_id: str, *, for_update: bool = False) -> Job | None:
        statement = owned_by(select(Job).where(Job.id == job_id), Job, self.tenant_id)
        if for_update:
            statement = statement.with_for_update()
        return self.session.scalars(statement).one_or_none()

    def page(self, *, limit: int, after: str | None) -> tuple[list[Job], bool]:
        statement = owned_by(select(Job), Job, self.tenant_id)
        return fetch_page(self.session, statement, Job, limit=limit, after=after)

    def rounds(self, job_id: str) -> list[JobRound]:
        statement = select(JobRound).where(JobRound.job_id == job_id).order_by(JobRound.round)
        return list(self.session.scalars(statement))

    def round(self, job_id: str, round_: int) -> JobRound | None:
        statement = select(JobRound).where(JobRound.job_id == job_id, JobRound.round == round_)
        return self.session.scalars(statement).one_or_none()

    def count_by_status(self) -> dict[str, int]:
        """Jobs per status in one GROUP BY query: `/metrics` runs it on every scrape."""
        statement = owned_by(
            select(Job.status, func.count()).group_by(Job.status), Job, self.tenant_id
        )
        return {status: count for status, count in self.session.execute(statement).tuples()}

    def add_round(self, job_round: JobRound) -> None:
        # The unique (job_id, round) constraint makes a duplicate merge fail here
        # and roll back whole, even if two slipped past the job-row check at once.
        self.session.add(job_round)
        self.session.flush()

    def events(self, job_id: str, *, limit: int, after: str | None) -> tuple[list[JobEvent], bool]:
        """Oldest first: a log is read forwards, and `after` resumes a stream."""
        statement = (
            select(JobEvent)
            .where(JobEvent.job_id == job_id)
            .order_by(JobEvent.seq)
            .limit(limit + 1)
        )
        if after is not None:
            cursor = select(JobEvent.seq).where(JobEvent.id == after).scalar_subquery()
            statement = statement.where(JobEvent.seq > cursor)
        rows = list(self.session.scalars(statement))
        return rows[:limit], len(rows) > limit

    def stalled(self, *, before: float) -> list[Job]:
        """Unfinished jobs whose awaited stage was sent before `before`."""
        statement = select(Job).where(
            Job.status.in_(JOB_ACTIVE),
            Job.stage_started_at.is_not(None),
            Job.stage_started_at < before,
        )
        return list(self.session.scalars(statement))
