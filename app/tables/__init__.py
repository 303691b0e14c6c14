"""SQLAlchemy tables, one per file. Importing this package registers all of them."""

from app.tables.api_key import ApiKey
from app.tables.base import Base
from app.tables.batch_prediction import BatchPrediction
from app.tables.dataset import Dataset
from app.tables.idempotency_key import IdempotencyKey
from app.tables.job import Job
from app.tables.job_event import JobEvent
from app.tables.job_round import JobRound
from app.tables.model_alias import ModelAlias, ModelAliasChange
from app.tables.model_name import ModelName
from app.tables.outbox_message import OutboxMessage
from app.tables.registered_model import RegisteredModel
from app.tables.sweep import Sweep, SweepEvent, SweepTrial
from app.tables.tenant import Tenant

__all__ = [
    "ApiKey",
    "Base",
    "BatchPrediction",
    "Dataset",
    "IdempotencyKey",
    "Job",
    "JobEvent",
    "JobRound",
    "ModelAlias",
    "ModelAliasChange",
    "ModelName",
    "OutboxMessage",
    "RegisteredModel",
    "Sweep",
    "SweepEvent",
    "SweepTrial",
    "Tenant",
]
