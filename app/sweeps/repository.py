"""All SQL of sweeps: the sweep rows in the caller's scope, their trials and events."""

from sqlalchemy import func, select

from app.repository import ScopedRepository
from app.tables import Sweep, SweepEvent, SweepTrial
from app.tables.statuses import SWEEP_TERMINAL


class SweepRepository(ScopedRepository[Sweep]):
    table = Sweep

    # A sweep's trials and events are read only after its row was read in scope.
    def trials(self, sweep_id: str) -> list[SweepTrial]:
        statement = (
            select(SweepTrial).where(SweepTrial.sweep_id == sweep_id).order_by(SweepTrial.number)
        )
        return list(self.session.scalars(statement))

    def add_trial(self, trial: SweepTrial) -> None:
        # The unique (sweep_id, number) constraint fails a second step that asked for
        # the same trial at once; it rolls back whole.
        self.session.add(trial)
        self.session.flush()

    def events(
        self, sweep_id: str, *, limit: int, after: str | None
    ) -> tuple[list[SweepEvent], bool]:
        """Oldest first, as a job's: `after` resumes a stream."""
        statement = (
            select(SweepEvent)
            .where(SweepEvent.sweep_id == sweep_id)
            .order_by(SweepEvent.seq)
            .limit(limit + 1)
        )
        if after is not None:
            cursor = select(SweepEvent.seq).where(SweepEvent.id == after).scalar_subquery()
            statement = statement.where(SweepEvent.seq > cursor)
        rows = list(self.session.scalars(statement))
        return rows[:limit], len(rows) > limit

    def active_ids(self) -> list[str]:
        statement = self.scope.where(
            select(Sweep.id).where(Sweep.status.not_in(SWEEP_TERMINAL)), Sweep
        )
        return list(self.session.scalars(statement.order_by(Sweep.seq)))

    def reserved_jobs(self) -> int:
        """The running-job quota the unfinished sweeps hold: their parallelism."""
        statement = self.scope.where(
            select(func.coalesce(func.sum(Sweep.parallelism), 0)).where(
                Sweep.status.not_in(SWEEP_TERMINAL)
            ),
            Sweep,
        )
        return int(self.session.scalar(statement) or 0)

    def on_dataset(self, dataset_id: str) -> list[str]:
        """Unfinished sweeps on the dataset."""
        statement = self.scope.where(
            select(Sweep.id).where(
                Sweep.dataset_id == dataset_id, Sweep.status.not_in(SWEEP_TERMINAL)
            ),
            Sweep,
        )
        return list(self.session.scalars(statement))
