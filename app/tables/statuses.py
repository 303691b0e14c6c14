"""The states a row's `status` column takes, and the named groups of them that the
stages, the watchdog and the API compare against. The columns stay plain strings (no
database enum: a new state is a code change, not a migration); the API schemas spell
the same values as Literals, and a test keeps the two equal."""

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    PREPARING = "preparing"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A job in one of these may still write shards, rounds or a model.
JOB_ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.PREPARING, JobStatus.RUNNING})
JOB_TERMINAL = frozenset(JobStatus) - JOB_ACTIVE


class DatasetStatus(StrEnum):
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class ModelStatus(StrEnum):
    DEPLOYED = "deployed"
    # Its job's `deploy_if` gate turned it down; a promote deploys it anyway.
    REJECTED = "rejected"
    UNDEPLOYED = "undeployed"


class SweepStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


SWEEP_TERMINAL = frozenset({SweepStatus.SUCCEEDED, SweepStatus.FAILED, SweepStatus.CANCELLED})


class TrialState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    PRUNED = "pruned"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BatchStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# A batch prediction in one of these reads its model's artifact on a worker.
BATCH_ACTIVE = frozenset({BatchStatus.QUEUED, BatchStatus.RUNNING})
BATCH_FINISHED = frozenset(BatchStatus) - BATCH_ACTIVE
