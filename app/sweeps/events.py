"""Sweep events: written in the same transaction as the change they describe."""

from typing import Any

from sqlalchemy.orm import Session

from app.tables import SweepEvent


def record_sweep_event(
    session: Session,
    sweep_id: str,
    type_: str,
    message: str,
    *,
    level: str = "info",
    **data: Any,
) -> SweepEvent:
    event = SweepEvent(sweep_id=sweep_id, type=type_, level=level, message=message, data=data)
    session.add(event)
    return event
