"""What `progress=True` shows, on stderr so that stdout stays clean for data: a transfer
bar for uploads and downloads, a round bar with the latest losses for a job, and a trial
bar with the best score so far for a sweep."""

from __future__ import annotations

import os
from types import TracebackType
from typing import IO, Any, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from shardtrain.models import Job, Sweep


def _console() -> Console:
    return Console(stderr=True)


class _Bar:
    """A `Progress` on stderr, or `None` when progress is off, so callers need no
    branches."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress

    def __enter__(self) -> Self:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


class TransferBar(_Bar):
    """A byte counter."""

    def __init__(self, description: str, total: int | None, enabled: bool) -> None:
        super().__init__(
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=_console(),
            )
            if enabled
            else None
        )
        self._task = TaskID(0)
        if self._progress is not None:
            self._task = self._progress.add_task(description, total=total)

    def advance(self, count: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, count)

    def reset(self) -> None:
        if self._progress is not None:
            self._progress.reset(self._task)


class CountingReader:
    """A file object that reports what is read from it. httpx streams a multipart part
    from it in 64 KiB reads (never all at once), takes its length from `fileno()`, and
    seeks it back to 0 on a retried request, which restarts the bar."""

    def __init__(self, file: IO[bytes], bar: TransferBar) -> None:
        self._file = file
        self._bar = bar

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._bar.advance(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._file.seek(offset, whence)
        if position == 0:
            self._bar.reset()
        return position

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()


def job_line(job: Job) -> str:
    metrics: dict[str, Any] = job.metrics or {}
    parts = [f"{job.id} {job.status}"]
    for key in ("train_loss", "val_loss"):
        value = metrics.get(key)
        if isinstance(value, int | float):
            parts.append(f"{key} {value:.4f}")
    return "  ".join(parts)


class _EndedOfTotalBar(_Bar):
    """Things ended out of things planned (`unit`: rounds, trials), with a line saying
    where the whole stands."""

    def __init__(self, enabled: bool, unit: str) -> None:
        super().__init__(
            Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit),
                TimeElapsedColumn(),
                console=_console(),
            )
            if enabled
            else None
        )
        self._task: TaskID | None = None

    def _show(self, line: str, completed: int, total: int) -> None:
        # Callers check first too, so that a bar that is off reads nothing of the object.
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task(line, total=total)
        self._progress.update(self._task, description=line, completed=completed, total=total)


class JobBar(_EndedOfTotalBar):
    """Rounds merged out of rounds planned, with the status and the latest losses."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled, "rounds")

    def update(self, job: Job) -> None:
        if self._progress is not None:
            self._show(job_line(job), job.progress.round, job.progress.rounds)


def sweep_line(sweep: Sweep) -> str:
    parts = [f"{sweep.id} {sweep.status}"]
    best = sweep.best_trial
    if best is not None:
        parts.append(f"best {sweep.metric} {best.score:.4f} (trial {best.number})")
    return "  ".join(parts)


class SweepBar(_EndedOfTotalBar):
    """Trials ended (done, pruned, failed or cancelled) out of `max_trials`, with the
    status and the best score so far."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled, "trials")

    def update(self, sweep: Sweep) -> None:
        if self._progress is not None:
            ended = sum(t.state != "running" for t in sweep.trials)
            total = max(sweep.spec.max_trials, len(sweep.trials))
            self._show(sweep_line(sweep), ended, total)
