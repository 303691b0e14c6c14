"""SQLAlchemy tables, one per file. Importing this package registers all of them."""

from app.models.api_key import ApiKey
from app.models.base import Base
from app.models.batch_prediction import BatchPrediction
from app.models.dataset import Dataset
from app.models.idempotency_key import IdempotencyKey
from app.models.job import Job
from app.models.job_event import JobEvent
from app.models.job_round import JobRound
from app.models.outbox_message import OutboxMessage
from app.models.registered_model import RegisteredModel
from app.models.tenant import Tenant

__all__ = [
    "ApiKey",
    "Base",
    "BatchPrediction",
    "Dataset",
    "IdempotencyKey",
    "Job",
    "JobEvent",
    "JobRound",
    "OutboxMessage",
    "RegisteredModel",
    "Tenant",
]
