"""All configuration, read once from the environment (prefix ``SHARDTRAIN_``)."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    # Where blobs live: unset or `file://…` a local (or mounted) directory, the blobs
    # folder of data_dir unless a path is given; `s3://bucket/prefix` an S3-compatible
    # bucket, reached with the standard AWS_* variables (AWS_ENDPOINT_URL for MinIO).
    storage_url: str | None = None
    # Each host's copy of the objects it reads from S3 (LRU by bytes).
    cache_dir: Path | None = None
    cache_bytes: int = Field(default=20 * 1024**3, gt=0)
    # A read from S3 that stalls this long is one failed attempt, retried with backoff
    # (AWS_MAX_ATTEMPTS, default 5): a wedged connection costs seconds, not the task.
    s3_read_timeout_s: float = Field(default=60.0, gt=0)
    # The s3://bucket/prefix URLs tenants may import datasets from, comma-separated; a
    # `{tenant}` in one stands for the importing tenant's id. Empty: no imports by URL.
    import_allowed_prefixes: Annotated[list[str], NoDecode] = Field(default_factory=list)

    max_upload_bytes: int = Field(default=10 * 1024**3, gt=0)
    max_predict_rows: int = Field(default=10_000, gt=0)
    # Every body but an upload's: 10,000 predict rows of wide records fit well inside.
    max_json_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    model_cache_size: int = Field(default=8, gt=0)
    # The longest an API process trusts a remembered alias whose move it was not told
    # of (a generation bump lost to a Redis outage); every told move counts at once.
    alias_cache_s: float = Field(default=30.0, ge=0)
    # `json`: one JSON object per log line (python-json-logger), for log collectors.
    # Seconds between keep-alive comments on an idle event stream, so proxies do not
    # close it while a long round trains.
    sse_ping_s: float = Field(default=15.0, gt=0)
    log_format: Literal["plain", "json"] = "plain"

    # Celery: a message its worker never acknowledged (the whole worker or host died) is
    # handed out again after this long. kombu's Redis transport keeps one unacked index
    # for every queue and any consumer restores from it by its own timeout, so this
    # cannot differ per queue: it is sized to the longest single task (a shard, an
    # ingest), twice the stage deadline. A task that outlasts it runs a second copy,
    # which every stage absorbs (docs/architecture.md, Delivery guarantees).
    visibility_timeout_s: int = Field(default=1800, gt=0)
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
    # How long a task retries, with backoff, a transient database error (a restart, a
    # refused or dropped connection, a serialization failure) before it leaves its stage
    # to the watchdog; the grace counts from the first failure.
    database_outage_grace_s: float = Field(default=60.0, ge=0)
    # How long prepare waits for the job's dataset to finish ingesting before it fails
    # the job (`dataset_not_ready`). 0: as long as the dataset watchdog can take to give
    # up on an ingest, stage deadline x (max attempts + 1).
    dataset_wait_s: float = Field(default=0.0, ge=0)
    # Ingest tasks started on one dataset before it fails as `worker_lost`: a file that
    # gets its worker killed (out of memory) would otherwise be redelivered forever.
    ingest_max_deliveries: int = Field(default=3, ge=1)
    # Temporary files of another machine (or unnamed), and dataset folders with no row,
    # untouched for this long are removed at start-up: an upload still streaming in
    # another API process has no row yet, but it writes to its file all the while.
    orphan_grace_s: float = Field(default=3600.0, ge=0)
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
    # While SQL is unreachable, predict accepts a key (and its tenant's limits) that
    # this process resolved within this many seconds: a key revoked just before an
    # outage keeps working this long. With SQL up every request reads the key afresh.
    outage_key_cache_s: float = Field(default=60.0, ge=0)
    # Uploads streaming at once per tenant, over every API process: each one is a file
    # being written and, for a slow client, a connection held for minutes.
    quota_max_concurrent_uploads: int = Field(default=4, ge=1)
    # An upload whose client sends nothing for this long is abandoned (408 upload_timeout)
    # and its slot freed, so a stalled client cannot hold one for good.
    upload_idle_timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _default_database(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'shardtrain.db').resolve()}"
        return self

    @property
    def broker_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL

    @model_validator(mode="after")
    def _known_storage(self) -> "Settings":
        if self.storage_url and not self.storage_url.startswith(("file://", "s3://")):
            raise ValueError(
                f"SHARDTRAIN_STORAGE_URL must be file://… or s3://bucket/prefix, not "
                f"{self.storage_url!r}"
            )
        return self

    @field_validator("import_allowed_prefixes", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("import_allowed_prefixes")
    @classmethod
    def _s3_prefixes(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            parsed = urlparse(prefix)
            if parsed.scheme != "s3" or not parsed.netloc:
                raise ValueError(
                    f"SHARDTRAIN_IMPORT_ALLOWED_PREFIXES holds {prefix!r}; each entry must "
                    "be an s3://bucket/prefix URL"
                )
        return prefixes

    @property
    def blob_dir(self) -> Path:
        """The local store's directory (ignored when storage is S3)."""
        if self.storage_url and self.storage_url.startswith("file://"):
            return Path(urlparse(self.storage_url).path)
        return self.data_dir / "blobs"

    @property
    def s3_storage(self) -> bool:
        return bool(self.storage_url and self.storage_url.startswith("s3://"))

    @property
    def object_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "cache"


@lru_cache
def get_settings() -> Settings:
    return Settings()
