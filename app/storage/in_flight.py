"""Calls handed to background threads with a bound on how many are unfinished, their
results and failures coming back to the submitting thread in submission order: for
writers whose caller goes on reading while a part or a row group is written."""

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class InFlight(Generic[T]):
    def __init__(self, *, threads: int, limit: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._limit = limit
        self._pending: deque[Future[T]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, call: Callable[..., T], *args: Any) -> list[T]:
        """Queue `call(*args)`; the results of the oldest calls that have finished, and
        of those waited for to keep within the limit. A failed call raises here."""
        finished = []
        while self._pending and (self._pending[0].done() or len(self._pending) >= self._limit):
            finished.append(self._pending.popleft().result())
        self._pending.append(self._pool.submit(call, *args))
        return finished

    def drain(self) -> list[T]:
        """Every result still to come, in order; raises the first failure."""
        finished = []
        while self._pending:
            finished.append(self._pending.popleft().result())
        return finished

    def close(self) -> None:
        """Drop the calls not yet started; wait for those running."""
        self._pool.shutdown(wait=True, cancel_futures=True)
