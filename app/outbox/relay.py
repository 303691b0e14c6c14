import logging
import time
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from app.db import enqueue_after_commit
from app.dispatch import Dispatcher
from app.outbox.repository import OutboxRepository

logger = logging.getLogger(__name__)

RELAY_BATCH = 500


def send_after_commit(session: Session, dispatcher: Dispatcher, kind: str, **args: Any) -> None:
    """Record `dispatcher.<kind>(**args)` in this transaction; try it once committed.

    If the broker does not take it then, the row stays and `relay_pending` (beat's
    `shardtrain.relay_outbox`) sends it once Redis answers again: the caller's work is
    committed either way, and its message is never lost.
    """
    dispatcher.check_kind(kind)
    message = OutboxRepository(session).add(kind, args, now=time.time())
    seq, bind = message.seq, session.get_bind()
    enqueue_after_commit(session, lambda: _relay_committed(bind, dispatcher, [seq]))


def _relay_committed(bind: Engine | Connection, dispatcher: Dispatcher, seqs: list[int]) -> None:
    # Runs after the commit: nothing here may fail the request that committed.
    try:
        with Session(bind) as session, session.begin():
            relay_pending(session, dispatcher, seqs=seqs)
    except Exception:
        logger.warning("could not relay outbox message(s) %s now; will retry", seqs, exc_info=True)


def relay_pending(
    session: Session, dispatcher: Dispatcher, *, seqs: list[int] | None = None
) -> int:
    """Send pending messages, oldest first; delete each one the broker took. Stops at
    the first refusal: with the broker down, the rest would be refused too. The caller
    commits. Returns how many were sent."""
    repository = OutboxRepository(session)
    sent = 0
    for message in repository.claim(seqs, RELAY_BATCH):
        try:
            dispatcher.send(message.kind, message.args)
        except Exception as exc:
            message.attempts += 1
            message.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            logger.warning(
                "broker refused outbox message %s (%s, attempt %s): %s",
                message.seq, message.kind, message.attempts, exc,
            )  # fmt: skip
            break
        repository.remove(message)
        sent += 1
    return sent
