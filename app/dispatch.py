"""Sends pipeline messages by task name: ids only, never bytes (they live in storage).

Services do not call these methods directly: `app.outbox.send_after_commit` records the
call in SQL first, so a broker outage delays a message instead of losing it.
"""

from typing import Any

from celery import Celery, chord

from app.messaging import Queue, TaskName

# Results of these are never read: not asking for them keeps a send from waiting on the
# result backend, which retries for ~19 s when Redis is down.
_FIRE_AND_FORGET = {"ignore_result": True}
KINDS = frozenset(
    {"ingest", "prepare", "round", "batch_predict", "finalize", "revoke_round", "sweep_step"}
)


class Dispatcher:
    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"no message kind {kind!r}")

    def send(self, kind: str, args: dict[str, Any]) -> None:
        """Send one recorded message: `kind` names the method, `args` its arguments."""
        self.check_kind(kind)
        getattr(self, kind)(**args)

    def ingest(self, dataset_id: str) -> None:
        self._celery.send_task(TaskName.INGEST_DATASET.value, args=[dataset_id], **_FIRE_AND_FORGET)

    def prepare(self, job_id: str) -> None:
        self._celery.send_task(TaskName.PREPARE_JOB.value, args=[job_id], **_FIRE_AND_FORGET)

    def round(
        self, job_id: str, round_: int, shards: int, device: str = "auto", attempt: int = 0
    ) -> None:
        """One round as a chord: every shard trains, then one merge."""
        self.round_chord(job_id, round_, shards, device, attempt)()

    def round_chord(
        self, job_id: str, round_: int, shards: int, device: str = "auto", attempt: int = 0
    ) -> Any:
        # Names go to Celery as plain strings: `signature` takes anything with a `.name`
        # for a task object, and a StrEnum member's `.name` is "MERGE_ROUND".
        queue = (Queue.TRAIN_GPU if device == "cuda" else Queue.TRAIN).value
        header = [
            self._celery.signature(
                TaskName.TRAIN_SHARD.value,
                args=[job_id, round_, shard],
                queue=queue,
                task_id=shard_task_id(job_id, round_, shard, attempt),
            )
            for shard in range(shards)
        ]
        body = self._celery.signature(
            TaskName.MERGE_ROUND.value, args=[job_id, round_], immutable=True
        )
        return chord(header, body)

    def batch_predict(self, batch_id: str) -> None:
        self._celery.send_task(TaskName.BATCH_PREDICT.value, args=[batch_id], **_FIRE_AND_FORGET)

    def finalize(self, job_id: str) -> None:
        self._celery.send_task(TaskName.FINALIZE_JOB.value, args=[job_id], **_FIRE_AND_FORGET)

    def sweep_step(self, sweep_id: str) -> None:
        self._celery.send_task(TaskName.STEP_SWEEP.value, args=[sweep_id], **_FIRE_AND_FORGET)

    def revoke_round(self, job_id: str, round_: int, shards: int, attempts: int) -> None:
        """Drop a cancelled job's queued shard tasks. Ones already running finish their
        step and find the job cancelled, so nothing they write is used."""
        ids = [
            shard_task_id(job_id, round_, shard, attempt)
            for shard in range(shards)
            for attempt in range(attempts + 1)
        ]
        self._celery.control.revoke(ids)


def shard_task_id(job_id: str, round_: int, shard: int, attempt: int) -> str:
    # Known ids let a cancel revoke the tasks without having stored them anywhere.
    return f"{job_id}-r{round_}-s{shard}-a{attempt}"
