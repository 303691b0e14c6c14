from collections.abc import Collection

from sqlalchemy import func, select

from app.repository import ScopedRepository
from app.tables import Job, JobEvent, JobRound
from app.tables.statuses import JOB_ACTIVE


class JobRepository(ScopedRepository[Job]):
    table = Job

    def dataset_ids(self, job_ids: Collection[str]) -> dict[str, str]:
        """Each job's dataset, for the jobs in scope, in one query."""
        if not job_ids:
            return {}
        statement = self.scope.where(select(Job.id, Job.dataset_id).where(Job.id.in_(job_ids)), Job)
        return dict(self.session.execute(statement).tuples().all())

    def sharing_shards_of(self, job_id: str) -> list[str]:
        """The jobs that train on `job_id`'s prepared shards."""
        statement = self.scope.where(select(Job.id).where(Job.shards_from == job_id), Job)
        return list(self.session.scalars(statement.order_by(Job.seq)))

    def count_active(self) -> int:
        """Jobs that may still write shards, rounds or a model, outside sweeps: what
        `max_running_jobs` counts (a sweep holds its parallelism instead)."""
        statement = self.scope.where(
            select(func.count())
            .select_from(Job)
            .where(Job.status.in_(JOB_ACTIVE), Job.sweep_id.is_(None)),
            Job,
        )
        return int(self.session.scalar(statement) or 0)

    def count_by_status(self) -> dict[str, int]:
        """Jobs per status in one GROUP BY query: `/metrics` runs it on every scrape."""
        statement = self.scope.where(select(Job.status, func.count()).group_by(Job.status), Job)
        return {status: count for status, count in self.session.execute(statement).tuples()}

    # A job's rounds and events are read only after its row was read in scope.
    def rounds(self, job_id: str) -> list[JobRound]:
        statement = select(JobRound).where(JobRound.job_id == job_id).order_by(JobRound.round)
        return list(self.session.scalars(statement))

    def round(self, job_id: str, round_: int) -> JobRound | None:
        statement = select(JobRound).where(JobRound.job_id == job_id, JobRound.round == round_)
        return self.session.scalars(statement).one_or_none()

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

    def sweep_of(self, job_id: str) -> str | None:
        """The sweep whose trial the job trains, if any."""
        statement = self.scope.where(select(Job.sweep_id).where(Job.id == job_id), Job)
        return self.session.scalars(statement).one_or_none()

    def of_sweep(self, sweep_id: str) -> list[Job]:
        statement = self.scoped().where(Job.sweep_id == sweep_id).order_by(Job.seq)
        return list(self.session.scalars(statement))

    def stalled(self, *, before: float) -> list[Job]:
        """Unfinished jobs whose awaited stage was sent before `before`."""
        statement = self.scoped().where(
            Job.status.in_(JOB_ACTIVE),
            Job.stage_started_at.is_not(None),
            Job.stage_started_at < before,
        )
        return list(self.session.scalars(statement))
