from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.tables.base import Base


class OutboxMessage(Base):
    """A pipeline message written in the transaction that justifies it, and deleted once
    the broker has taken it: a Redis outage delays a dispatch but never loses one."""

    __tablename__ = "outbox_messages"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # A Dispatcher method name ("ingest", "prepare", "round", …) and its keyword arguments.
    kind: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
