from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.tables import OutboxMessage


class OutboxRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, kind: str, args: dict[str, Any], *, now: float) -> OutboxMessage:
        message = OutboxMessage(kind=kind, args=args, created_at=now, attempts=0)
        self.session.add(message)
        self.session.flush()
        return message

    def claim(self, seqs: list[int] | None, limit: int) -> list[OutboxMessage]:
        """Oldest first, locked; rows another relay holds are skipped, not waited for.
        SQLite ignores the lock, so two relays there may both send a message: every
        task is idempotent, so a duplicate costs a no-op."""
        statement = select(OutboxMessage).order_by(OutboxMessage.seq).limit(limit)
        if seqs is not None:
            statement = statement.where(OutboxMessage.seq.in_(seqs))
        return list(self.session.scalars(statement.with_for_update(skip_locked=True)))

    def remove(self, message: OutboxMessage) -> None:
        self.session.delete(message)

    def pending(self) -> list[OutboxMessage]:
        return list(self.session.scalars(select(OutboxMessage).order_by(OutboxMessage.seq)))
