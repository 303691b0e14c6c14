"""One module per API resource, each with its sync and async class."""

from shardtrain.resources.datasets import AsyncDatasets, Datasets
from shardtrain.resources.jobs import AsyncJobs, Jobs
from shardtrain.resources.model_names import AsyncModelNames, ModelNames
from shardtrain.resources.models import AsyncModels, Models
from shardtrain.resources.sweeps import AsyncSweeps, Sweeps

__all__ = [
    "AsyncDatasets",
    "AsyncJobs",
    "AsyncModelNames",
    "AsyncModels",
    "AsyncSweeps",
    "Datasets",
    "Jobs",
    "ModelNames",
    "Models",
    "Sweeps",
]
