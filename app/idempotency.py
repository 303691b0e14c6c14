"""Idempotency-Key: a retried create returns the object its first request made."""

import hashlib
import json
from typing import Annotated, Any

from fastapi import Header
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import APIError
from app.tables import IdempotencyKey

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retry-safe creation: the same key returns the first request's object.",
    ),
]


def fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class IdempotencyRepository:
    def __init__(self, session: Session, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def find(self, endpoint: str, key: str, body_fingerprint: str | None = None) -> str | None:
        """The id created under this key, or None. The same key with another body is an
        error: replaying it would silently answer a request the client never sent."""
        row = self.session.scalars(
            select(IdempotencyKey).where(
                IdempotencyKey.tenant_id == self.tenant_id,
                IdempotencyKey.endpoint == endpoint,
                IdempotencyKey.key == key,
            )
        ).one_or_none()
        if row is None:
            return None
        if body_fingerprint and row.fingerprint and row.fingerprint != body_fingerprint:
            raise APIError(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request body.",
                "Idempotency-Key",
            )
        return row.object_id

    def remember(
        self, endpoint: str, key: str, object_id: str, body_fingerprint: str | None = None
    ) -> None:
        self.session.add(
            IdempotencyKey(
                tenant_id=self.tenant_id,
                endpoint=endpoint,
                key=key,
                object_id=object_id,
                fingerprint=body_fingerprint,
            )
        )
        self.session.flush()
