"""Every blob key, built here and nowhere else, so a stored layout cannot drift and no
domain needs to know another's. A key is a relative path under the blob root (or an
object key under the S3 prefix); a prefix names everything one object owns, for
deletion and for sweeps of temporary files."""


def dataset_prefix(dataset_id: str) -> str:
    return f"datasets/{dataset_id}"


def dataset_upload(dataset_id: str) -> str:
    """The uploaded file, byte for byte."""
    return f"{dataset_prefix(dataset_id)}/raw"


def dataset_table(dataset_id: str) -> str:
    """The ingested table, as Parquet."""
    return f"{dataset_prefix(dataset_id)}/data.parquet"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}"


def job_shard(job_id: str, shard: int) -> str:
    return f"{job_prefix(job_id)}/shards/{shard}.npy"


def job_validation(job_id: str) -> str:
    return f"{job_prefix(job_id)}/validation.npy"


def job_holdout(job_id: str) -> str:
    return f"{job_prefix(job_id)}/holdout.npy"


BINNED = ".binned"


def job_binned_shard(job_id: str, shard: int) -> str:
    """A tree learner's shard: a folder of arrays (`part_array`)."""
    return f"{job_prefix(job_id)}/shards/{shard}{BINNED}"


def job_binned_validation(job_id: str) -> str:
    return f"{job_prefix(job_id)}/validation{BINNED}"


def job_binned_holdout(job_id: str) -> str:
    return f"{job_prefix(job_id)}/holdout{BINNED}"


def is_binned_part(key: str) -> bool:
    return key.endswith(BINNED)


def part_array(part_key: str, name: str) -> str:
    return f"{part_key}/{name}.npy"


def job_dataset_copies(job_id: str) -> list[str]:
    """The prefixes under which a job holds rows of its dataset (its shards, validation
    and holdout parts): deleted with the dataset, while its checkpoints stay."""
    return [
        f"{job_prefix(job_id)}/shards",
        job_validation(job_id),
        job_holdout(job_id),
        job_binned_validation(job_id),
        job_binned_holdout(job_id),
    ]


def job_checkpoint(job_id: str, round_: int) -> str:
    return f"{job_prefix(job_id)}/checkpoints/round-{round_}.safetensors"


def model_prefix(model_id: str) -> str:
    return f"models/{model_id}"


def model_artifact(model_id: str) -> str:
    return f"{model_prefix(model_id)}/model.safetensors"


def model_onnx(model_id: str) -> str:
    return f"{model_prefix(model_id)}/model.onnx"


def batch_prefix(batch_id: str) -> str:
    return f"batch_predictions/{batch_id}"


def batch_predictions(batch_id: str) -> str:
    return f"{batch_prefix(batch_id)}/predictions.parquet"
