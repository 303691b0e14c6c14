"""Python client for the Shardtrain training API.

from shardtrain import Client, JobSpec
with Client() as client:  # SHARDTRAIN_API_KEY, SHARDTRAIN_BASE_URL
    dataset = client.datasets.wait(client.datasets.upload("iris.csv", progress=True).id)
    job = client.jobs.create(dataset_id=dataset.id, target="species")
    job = client.jobs.wait(job.id)
    print(client.models.predict(job.model_id, [{"sepal_length": 5.1, ...}]))
"""

from shardtrain._http import RetryPolicy
from shardtrain._version import __version__
from shardtrain.client import AsyncClient, Client
from shardtrain.errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ShardtrainError,
    UnsupportedMediaTypeError,
    ValidationError,
    WaitTimeoutError,
)
from shardtrain.models import (
    BatchPrediction,
    Column,
    Dataset,
    DatasetDeleted,
    DatasetPreview,
    Event,
    Feature,
    FeatureImportance,
    Gate,
    Job,
    JobDeleted,
    JobError,
    Model,
    ModelDeleted,
    Page,
    Prediction,
    Progress,
    RoundMetrics,
)
from shardtrain.spec import (
    DeployGate,
    DistributionSpec,
    EarlyStoppingSpec,
    GradientBoostedTreesSpec,
    JobSpec,
    ModelSpec,
    PreprocessingSpec,
    TrainingSpec,
    ValidationSpec,
)

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchPrediction",
    "Client",
    "Column",
    "ConflictError",
    "ConnectionError",
    "Dataset",
    "DatasetDeleted",
    "DatasetPreview",
    "DeployGate",
    "DistributionSpec",
    "EarlyStoppingSpec",
    "Event",
    "Feature",
    "FeatureImportance",
    "Gate",
    "GradientBoostedTreesSpec",
    "Job",
    "JobDeleted",
    "JobError",
    "JobSpec",
    "Model",
    "ModelDeleted",
    "ModelSpec",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Prediction",
    "PreprocessingSpec",
    "Progress",
    "RateLimitError",
    "RetryPolicy",
    "RoundMetrics",
    "ServerError",
    "ShardtrainError",
    "TrainingSpec",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "ValidationSpec",
    "WaitTimeoutError",
    "__version__",
]
