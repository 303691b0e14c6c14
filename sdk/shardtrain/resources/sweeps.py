"""`client.sweeps`: hyperparameter sweeps. Create one from a typed spec (a job spec
template, the space its trials draw from, the metric and the budget), list, read, cancel,
its trials, its events (listed, or followed live over server-sent events), the trials
chart as a PNG, and wait for the end."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx
from httpx_sse import EventSource

from shardtrain._http import AsyncHTTP, SyncHTTP
from shardtrain.errors import APIConnectionError, WaitTimeoutError
from shardtrain.models import Page, Sweep, SweepEvent, SweepTrial
from shardtrain.pagination import aiterate_pages, iterate_pages
from shardtrain.progress import SweepBar
from shardtrain.spec import SweepSpec

PATH = "/v1/sweeps"
EVENTS_PAGE = 1000


def sweep_body(spec: SweepSpec | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> Any:
    """A SweepSpec, a mapping (validated into one) or keyword fields; only set fields are
    sent, so the server fills its own defaults."""
    if spec is None:
        spec = SweepSpec.model_validate(dict(fields))
    elif not isinstance(spec, SweepSpec):
        spec = SweepSpec.model_validate({**spec, **fields})
    elif fields:
        spec = SweepSpec.model_validate({**spec.to_request(), **fields})
    return spec.to_request()


def _headers(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


def _sse_headers(last_event_id: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    return headers


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _check_deadline(sweep: Sweep, deadline: float | None, timeout: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise WaitTimeoutError(f"sweep {sweep.id} still {sweep.status} after {timeout}s")


class Sweeps:
    def __init__(self, http: SyncHTTP) -> None:
        self._http = http

    def create(
        self,
        spec: SweepSpec | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Sweep:
        """`create(SweepSpec(...))`, `create({"template": {...}, "space": {...}, ...})` or
        `create(template=JobSpec(...), space={"training.learning_rate":
        LogUniform(log_uniform=(1e-3, 0.3))}, metric="accuracy")`. The sweep is
        `running`, with no trial yet; with the same `idempotency_key`, a repeated call
        returns the sweep the first one made."""
        body = sweep_body(spec, fields)
        return Sweep.model_validate(
            self._http.json("POST", PATH, json=body, headers=_headers(idempotency_key))
        )

    def list_page(self, *, limit: int = 20, after: str | None = None) -> Page[Sweep]:
        body = self._http.json("GET", PATH, params={"limit": limit, "after": after})
        return Page[Sweep].model_validate(body)

    def list(self, *, limit: int = 20) -> Iterator[Sweep]:
        return iterate_pages(lambda after: self.list_page(limit=limit, after=after))

    def get(self, sweep_id: str) -> Sweep:
        return Sweep.model_validate(self._http.json("GET", f"{PATH}/{sweep_id}"))

    def trials(self, sweep_id: str) -> builtins.list[SweepTrial]:
        """Every trial, by number (what `get(id).trials` holds, alone)."""
        body = self._http.json("GET", f"{PATH}/{sweep_id}/trials")
        return Page[SweepTrial].model_validate(body).data

    def cancel(self, sweep_id: str) -> Sweep:
        """Cancel the sweep and its running trials' jobs; no new trial starts, done trials
        and their models stay. Idempotent; ConflictError (`sweep_finished`) once it has
        succeeded or failed."""
        return Sweep.model_validate(self._http.json("POST", f"{PATH}/{sweep_id}/cancel"))

    def trials_chart(self, sweep_id: str) -> bytes:
        """A PNG image: each done trial's score (± its folds' deviation), the best so far,
        pruned and failed trials marked, and each dimension's importance once three
        trials are done."""
        return self._http.request("GET", f"{PATH}/{sweep_id}/trials.png").content

    def events(
        self, sweep_id: str, *, follow: bool = False, after: str | None = None
    ) -> Iterator[SweepEvent]:
        """The sweep's events, oldest first. `follow=True` streams them live over SSE
        until the sweep has ended, reconnecting with `Last-Event-ID` if the connection
        drops."""
        if follow:
            return self._follow(sweep_id, after)

        def fetch(cursor: str | None) -> Page[SweepEvent]:
            params = {"limit": EVENTS_PAGE, "after": cursor or after}
            return Page[SweepEvent].model_validate(
                self._http.json("GET", f"{PATH}/{sweep_id}/events", params=params)
            )

        return iterate_pages(fetch)

    def _follow(self, sweep_id: str, last: str | None) -> Iterator[SweepEvent]:
        failures = 0
        while True:
            try:
                with self._http.stream(
                    "GET", f"{PATH}/{sweep_id}/events", headers=_sse_headers(last)
                ) as response:
                    for sse in EventSource(response).iter_sse():
                        if not sse.data:
                            continue  # the server's keep-alive comment, not an event
                        event = SweepEvent.model_validate_json(sse.data)
                        last, failures = event.id, 0
                        yield event
            except httpx.TransportError as exc:
                # The stream broke mid-way: resume after the last event received.
                failures += 1
                if failures > self._http.retry.max_retries:
                    raise APIConnectionError(f"event stream of {sweep_id}: {exc!r}") from exc
                time.sleep(self._http.retry.backoff(failures - 1))
                continue
            # The server closes the stream once the sweep has ended and every event is
            # sent; a close for any other reason (a restart) is resumed.
            if self.get(sweep_id).done:
                return
            time.sleep(self._http.retry.backoff(0))

    def watch(
        self, sweep_id: str, *, timeout: float | None = None, poll_interval: float = 1.0
    ) -> Iterator[Sweep]:
        """The sweep as read every `poll_interval` seconds until it has ended, the last
        one yielded as it ended (for a live view of its trials); WaitTimeoutError after
        `timeout`."""
        deadline = _deadline(timeout)
        while True:
            sweep = self.get(sweep_id)
            yield sweep
            if sweep.done:
                return
            _check_deadline(sweep, deadline, timeout)
            time.sleep(poll_interval)

    def wait(
        self,
        sweep_id: str,
        *,
        progress: bool = True,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Sweep:
        """Poll until the sweep has succeeded, failed or been cancelled and return it as
        it ended. `progress=True` shows trials ended and the best score on stderr."""
        with SweepBar(progress) as bar:
            for sweep in self.watch(sweep_id, timeout=timeout, poll_interval=poll_interval):
                bar.update(sweep)
        return sweep


class AsyncSweeps:
    def __init__(self, http: AsyncHTTP) -> None:
        self._http = http

    async def create(
        self,
        spec: SweepSpec | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Sweep:
        body = sweep_body(spec, fields)
        return Sweep.model_validate(
            await self._http.json("POST", PATH, json=body, headers=_headers(idempotency_key))
        )

    async def list_page(self, *, limit: int = 20, after: str | None = None) -> Page[Sweep]:
        body = await self._http.json("GET", PATH, params={"limit": limit, "after": after})
        return Page[Sweep].model_validate(body)

    def list(self, *, limit: int = 20) -> AsyncIterator[Sweep]:
        return aiterate_pages(lambda after: self.list_page(limit=limit, after=after))

    async def get(self, sweep_id: str) -> Sweep:
        return Sweep.model_validate(await self._http.json("GET", f"{PATH}/{sweep_id}"))

    async def trials(self, sweep_id: str) -> builtins.list[SweepTrial]:
        body = await self._http.json("GET", f"{PATH}/{sweep_id}/trials")
        return Page[SweepTrial].model_validate(body).data

    async def cancel(self, sweep_id: str) -> Sweep:
        return Sweep.model_validate(await self._http.json("POST", f"{PATH}/{sweep_id}/cancel"))

    async def trials_chart(self, sweep_id: str) -> bytes:
        return (await self._http.request("GET", f"{PATH}/{sweep_id}/trials.png")).content

    def events(
        self, sweep_id: str, *, follow: bool = False, after: str | None = None
    ) -> AsyncIterator[SweepEvent]:
        if follow:
            return self._follow(sweep_id, after)

        async def fetch(cursor: str | None) -> Page[SweepEvent]:
            params = {"limit": EVENTS_PAGE, "after": cursor or after}
            return Page[SweepEvent].model_validate(
                await self._http.json("GET", f"{PATH}/{sweep_id}/events", params=params)
            )

        return aiterate_pages(fetch)

    async def _follow(self, sweep_id: str, last: str | None) -> AsyncIterator[SweepEvent]:
        failures = 0
        while True:
            try:
                async with self._http.stream(
                    "GET", f"{PATH}/{sweep_id}/events", headers=_sse_headers(last)
                ) as response:
                    async for sse in EventSource(response).aiter_sse():
                        if not sse.data:
                            continue  # the server's keep-alive comment, not an event
                        event = SweepEvent.model_validate_json(sse.data)
                        last, failures = event.id, 0
                        yield event
            except httpx.TransportError as exc:
                failures += 1
                if failures > self._http.retry.max_retries:
                    raise APIConnectionError(f"event stream of {sweep_id}: {exc!r}") from exc
                await asyncio.sleep(self._http.retry.backoff(failures - 1))
                continue
            if (await self.get(sweep_id)).done:
                return
            await asyncio.sleep(self._http.retry.backoff(0))

    async def watch(
        self, sweep_id: str, *, timeout: float | None = None, poll_interval: float = 1.0
    ) -> AsyncIterator[Sweep]:
        deadline = _deadline(timeout)
        while True:
            sweep = await self.get(sweep_id)
            yield sweep
            if sweep.done:
                return
            _check_deadline(sweep, deadline, timeout)
            await asyncio.sleep(poll_interval)

    async def wait(
        self,
        sweep_id: str,
        *,
        progress: bool = True,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Sweep:
        with SweepBar(progress) as bar:
            async for sweep in self.watch(sweep_id, timeout=timeout, poll_interval=poll_interval):
                bar.update(sweep)
        return sweep
