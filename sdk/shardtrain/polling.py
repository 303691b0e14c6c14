"""Reading a job or a sweep again and again until it has ended, sync and async: what
`wait()` and `sweeps.watch()` are made of."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Protocol, TypeVar

from shardtrain.errors import WaitTimeoutError


class _Ends(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def done(self) -> bool: ...


Polled = TypeVar("Polled", bound=_Ends)


class _Deadline:
    def __init__(self, what: str, timeout: float | None) -> None:
        self._what = what
        self._timeout = timeout
        self._at = None if timeout is None else time.monotonic() + timeout

    def check(self, current: _Ends) -> None:
        if self._at is not None and time.monotonic() > self._at:
            raise WaitTimeoutError(f"{self._what} still {current.status} after {self._timeout}s")


def poll_until_done(
    read: Callable[[], Polled], what: str, *, timeout: float | None, poll_interval: float
) -> Iterator[Polled]:
    """`read()` every `poll_interval` seconds, each result yielded, up to the first that
    is done (yielded too); WaitTimeoutError naming `what` once `timeout` has passed."""
    deadline = _Deadline(what, timeout)
    while True:
        current = read()
        yield current
        if current.done:
            return
        deadline.check(current)
        time.sleep(poll_interval)


async def apoll_until_done(
    read: Callable[[], Awaitable[Polled]],
    what: str,
    *,
    timeout: float | None,
    poll_interval: float,
) -> AsyncIterator[Polled]:
    """`poll_until_done`, async."""
    deadline = _Deadline(what, timeout)
    while True:
        current = await read()
        yield current
        if current.done:
            return
        deadline.check(current)
        await asyncio.sleep(poll_interval)
