"""Model parameters in Redis, as safetensors bytes keyed by (job, round, shard).

Writes are by key, so a shard task delivered twice overwrites its own result
instead of adding a second one. Large blobs are split into chunks (hash fields)
because one Redis value is capped at 512 MB (proto-max-bulk-len).
"""

import json
from typing import Any

import redis
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from app.training.protocol import ShardResult, StateDict


def _prefix(job_id: str) -> str:
    return f"shardtrain:{job_id}"


class ParamStore:
    def __init__(self, client: redis.Redis, *, chunk_bytes: int, ttl_s: int) -> None:
        self._redis = client
        self._chunk_bytes = chunk_bytes
        self._ttl_s = ttl_s

    @property
    def redis(self) -> redis.Redis:
        """The client, for callers that share this Redis (the in-process test harness)."""
        return self._redis

    def _put_blob(self, key: str, data: bytes, meta: dict[str, float | int | str]) -> None:
        chunks = [data[i : i + self._chunk_bytes] for i in range(0, len(data), self._chunk_bytes)]
        mapping: dict[str, bytes | str] = {"meta": json.dumps(meta), "chunks": str(len(chunks))}
        mapping.update({f"chunk:{i}": chunk for i, chunk in enumerate(chunks)})
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.expire(key, self._ttl_s)
            pipe.execute()

    def _get_blob(self, key: str) -> tuple[bytes, dict[str, Any]] | None:
        raw: dict[bytes, bytes] = self._redis.hgetall(key)  # type: ignore[assignment]
        if not raw:
            return None
        count = int(raw[b"chunks"])
        data = b"".join(raw[f"chunk:{i}".encode()] for i in range(count))
        return data, json.loads(raw[b"meta"])

    def put_global(self, job_id: str, round_: int, state: StateDict) -> None:
        self._put_blob(f"{_prefix(job_id)}:round:{round_}:global", _to_bytes(state), {})

    def get_global(self, job_id: str, round_: int) -> StateDict | None:
        found = self._get_blob(f"{_prefix(job_id)}:round:{round_}:global")
        return None if found is None else load_safetensors(found[0])

    def put_shard(self, job_id: str, round_: int, result: ShardResult) -> None:
        meta: dict[str, float | int | str] = {
            "num_examples": result.num_examples,
            "loss": result.loss,
            "seconds": result.seconds,
            "worker": result.worker,
        }
        key = f"{_prefix(job_id)}:round:{round_}:shard:{result.shard}"
        self._put_blob(key, _to_bytes(result.state), meta)

    def has_shard(self, job_id: str, round_: int, shard: int) -> bool:
        """Without reading the blob: a check that a training copy can afford often."""
        return bool(self._redis.exists(f"{_prefix(job_id)}:round:{round_}:shard:{shard}"))

    def get_shard(self, job_id: str, round_: int, shard: int) -> ShardResult | None:
        found = self._get_blob(f"{_prefix(job_id)}:round:{round_}:shard:{shard}")
        if found is None:
            return None
        data, meta = found
        return ShardResult(
            shard=shard,
            state=load_safetensors(data),
            num_examples=int(meta["num_examples"]),
            loss=float(meta["loss"]),
            seconds=float(meta["seconds"]),
            worker=str(meta.get("worker", "")),
        )

    def delete_round(self, job_id: str, round_: int) -> None:
        keys = list(self._redis.scan_iter(f"{_prefix(job_id)}:round:{round_}:*", count=500))
        if keys:
            self._redis.delete(*keys)

    def delete_job(self, job_id: str) -> None:
        keys = list(self._redis.scan_iter(f"{_prefix(job_id)}:*", count=500))
        if keys:
            self._redis.delete(*keys)


def _to_bytes(state: StateDict) -> bytes:
    return save_safetensors({k: v.detach().cpu().contiguous() for k, v in state.items()})
