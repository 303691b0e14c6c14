"""All configuration, read once from the environment (prefix ``SHARDTRAIN_``)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHARDTRAIN_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./.shardtrain")
    # Empty means "SQLite file inside data_dir", resolved below so that changing
    # DATA_DIR alone moves the database with it.
    database_url: str = ""
    # Unset means: the local Redis if one answers, else `make run` starts its own.
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000

    max_upload_bytes: int = Field(default=10 * 1024**3, gt=0)
    max_predict_rows: int = Field(default=10_000, gt=0)
    # Every body but an upload's: 10,000 predict rows of wide records fit well inside.
    max_json_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    model_cache_size: int = Field(default=8, gt=0)
    # `json`: one JSON object per log line (python-json-logger), for log collectors.
    # Seconds between keep-alive comments on an idle event stream, so proxies do not
    # close it while a long round trains.
    sse_ping_s: float = Field(default=15.0, gt=0)
    log_format: Literal["plain", "json"] = "plain"

    # Celery: a shard task must finish well inside the visibility timeout, or
    # Redis hands the unacknowledged message to a second worker.
    visibility_timeout_s: int = Field(default=6 * 3600, gt=0)
    worker_concurrency: int = Field(default=2, gt=0)
    # Parameter blobs above this size are split across several Redis keys.
    param_chunk_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    param_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)

    # The watchdog re-sends a job's stage when it has made no progress for this long;
    # it must exceed the slowest expected round, or healthy rounds are sent twice.
    stage_deadline_s: float = Field(default=900.0, gt=0)
    watchdog_interval_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    # How long a task retries, with backoff, while Redis is unreachable before it leaves
    # its stage to the watchdog instead of failing the job.
    redis_outage_grace_s: float = Field(default=120.0, ge=0)
    # Beat's period for relaying outbox messages the broker refused (a Redis outage).
    outbox_relay_interval_s: float = Field(default=5.0, gt=0)

    # Per-tenant limits; a tenant's own `limits` (set with `python -m app.admin set-limit`)
    # override these defaults one by one.
    quota_max_running_jobs: int = Field(default=8, ge=1)
    quota_max_stored_bytes: int = Field(default=100 * 1024**3, ge=1)
    quota_max_shards: int = Field(default=256, ge=1)
    quota_max_rounds: int = Field(default=1000, ge=1)
    # Weights and biases of one model: each shard holds a copy, Redis holds one per
    # shard per round, so this bounds worker memory and the parameter store alike.
    quota_max_parameters: int = Field(default=50_000_000, ge=1)
    rate_limit_predict_per_minute: int = Field(default=6000, ge=1)
    rate_limit_upload_per_minute: int = Field(default=60, ge=1)

    @model_validator(mode="after")
    def _default_database(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'shardtrain.db').resolve()}"
        return self

    @property
    def broker_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


@lru_cache
def get_settings() -> Settings:
    return Settings()
