"""The transactional outbox: pipeline messages are rows in the transaction that
justifies them, relayed to the broker after the commit and again until it takes them."""

from app.outbox.relay import relay_pending, send_after_commit

__all__ = ["relay_pending", "send_after_commit"]
