"""Job events: written in the same transaction as the change they describe."""

from typing import Any

from sqlalchemy.orm import Session

from app.tables import JobEvent


def record_event(
    session: Session,
    job_id: str,
    type_: str,
    message: str,
    *,
    level: str = "info",
    **data: Any,
) -> JobEvent:
    event = JobEvent(job_id=job_id, type=type_, level=level, message=message, data=data)
    session.add(event)
    return event
