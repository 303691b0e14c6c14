"""Where a job's files live in blob storage, and the round checkpoints written there."""

from safetensors.torch import load_file, save_file

from app.paramstore import ParamStore
from app.storage import BlobStore, keys
from app.training.protocol import StateDict


def save_checkpoint(store: BlobStore, job_id: str, round_: int, state: StateDict) -> None:
    with store.temporary_path(keys.job_checkpoint(job_id, round_)) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))


def load_checkpoint(store: BlobStore, job_id: str, round_: int) -> StateDict | None:
    key = keys.job_checkpoint(job_id, round_)
    return load_file(str(store.path(key))) if store.exists(key) else None


def global_state(
    store: BlobStore, params: ParamStore, job_id: str, round_: int
) -> StateDict | None:
    """The merged parameters of a round: Redis first, the blob checkpoint if Redis lost them."""
    state = params.get_global(job_id, round_)
    if state is None:
        state = load_checkpoint(store, job_id, round_)
        if state is not None:
            params.put_global(job_id, round_, state)
    return state
