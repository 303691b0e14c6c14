"""Sends pipeline messages by task name: ids only, never bytes (they live in storage)."""

from celery import Celery, chord


class Dispatcher:
    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def ingest(self, dataset_id: str) -> None:
        self._celery.send_task("shardtrain.ingest_dataset", args=[dataset_id])

    def prepare(self, job_id: str) -> None:
        self._celery.send_task("shardtrain.prepare_job", args=[job_id])

    def round(self, job_id: str, round_: int, shards: int, *, device: str = "auto") -> None:
        """One round as a chord: every shard trains, then one merge."""
        queue = "train_gpu" if device == "cuda" else "train"
        header = [
            self._celery.signature(
                "shardtrain.train_shard", args=[job_id, round_, shard], queue=queue
            )
            for shard in range(shards)
        ]
        body = self._celery.signature(
            "shardtrain.merge_round", args=[job_id, round_], immutable=True
        )
        chord(header)(body)

    def finalize(self, job_id: str) -> None:
        self._celery.send_task("shardtrain.finalize_job", args=[job_id])
