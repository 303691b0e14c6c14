"""The model artifact: one safetensors file whose metadata carries, as JSON, everything
needed to predict from raw records (network config, preprocessing, schema, task)."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from app.training.networks import NetworkConfig
from app.training.preprocessing import Preprocessor
from app.training.protocol import StateDict

ARTIFACT_FORMAT = "shardtrain.model.v1"


@dataclass(frozen=True)
class Artifact:
    network: NetworkConfig
    preprocessor: Preprocessor
    task: str
    state: StateDict


def write_artifact(
    path: Path,
    *,
    state: StateDict,
    network: NetworkConfig,
    preprocessor: Preprocessor,
    task: str,
    extra: dict[str, Any] | None = None,
) -> None:
    metadata = {
        "format": ARTIFACT_FORMAT,
        "task": task,
        "network": json.dumps(network.to_dict()),
        "preprocessing": json.dumps(preprocessor.to_dict()),
        "schema": json.dumps(preprocessor.feature_schema),
        "extra": json.dumps(extra or {}),
    }
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)


def read_artifact(path: Path) -> Artifact:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if metadata.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"{path} is not a {ARTIFACT_FORMAT} artifact")
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    return Artifact(
        network=NetworkConfig.from_dict(json.loads(metadata["network"])),
        preprocessor=Preprocessor.from_dict(json.loads(metadata["preprocessing"])),
        task=metadata["task"],
        state=state,
    )
