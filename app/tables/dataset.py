from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.tables.base import Base, new_id, now_s
from app.tables.statuses import DatasetStatus


class Dataset(Base):
    __tablename__ = "datasets"

    # `seq` orders lists and cursors; `id` is the public, unguessable handle.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("ds"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Null until the worker has copied an imported object (its digest is not known before).
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Set for a dataset imported by URL: the object and the ETag the API saw, so the copy
    # takes those bytes or fails, never a replacement written in between.
    source_url: Mapped[str | None] = mapped_column(String(1100), nullable=True)
    source_etag: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=DatasetStatus.PROCESSING)
    rows: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    columns: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    raw_key: Mapped[str] = mapped_column(String(255))
    data_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_s)
    # Optimistic locking, as on jobs: an ingest finishing never undoes a delete.
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
    # Deleted datasets keep their row (jobs and models refer to it) but lose their bytes.
    deleted_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # When the ingest message was last sent, and how often the watchdog re-sent it: a
    # dataset left `processing` by a lost message is sent again, then failed.
    stage_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    stage_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Ingest tasks started on this dataset, counted in a transaction of their own before
    # the work: a worker killed mid-ingest (the out-of-memory killer) never records its
    # end, so only this count stops a file that kills every worker from looping forever.
    ingest_deliveries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
