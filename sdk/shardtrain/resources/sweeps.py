"""`client.sweeps`: hyperparameter sweeps. Create one from a typed spec (a job spec
template, the space its trials draw from, the metric and the budget), list, read, cancel,
its trials, its events (listed, or followed live over server-sent events), the trials
chart as a PNG, and wait for the end."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from shardtrain._http import AsyncHTTP, SyncHTTP
from shardtrain.event_stream import afollow_events, alist_events, follow_events, list_events
from shardtrain.models import Page, Sweep, SweepEvent, SweepTrial
from shardtrain.pagination import aiterate_pages, iterate_pages
from shardtrain.polling import apoll_until_done, poll_until_done
from shardtrain.progress import SweepBar
from shardtrain.spec import SweepSpec, request_body

PATH = "/v1/sweeps"


def sweep_body(spec: SweepSpec | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> Any:
    """A SweepSpec, a mapping (validated into one) or keyword fields; only set fields are
    sent, so the server fills its own defaults."""
    return request_body(SweepSpec, spec, fields)


def _headers(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


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
        path = f"{PATH}/{sweep_id}/events"
        if follow:
            return follow_events(
                self._http,
                path,
                SweepEvent.model_validate_json,
                after,
                ended=lambda: self.get(sweep_id).done,
                owner_id=sweep_id,
            )
        return list_events(self._http, path, Page[SweepEvent], after)

    def watch(
        self, sweep_id: str, *, timeout: float | None = None, poll_interval: float = 1.0
    ) -> Iterator[Sweep]:
        """The sweep as read every `poll_interval` seconds until it has ended, the last
        one yielded as it ended (for a live view of its trials); WaitTimeoutError after
        `timeout`."""
        yield from poll_until_done(
            lambda: self.get(sweep_id),
            f"sweep {sweep_id}",
            timeout=timeout,
            poll_interval=poll_interval,
        )

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
        path = f"{PATH}/{sweep_id}/events"
        if follow:
            return afollow_events(
                self._http,
                path,
                SweepEvent.model_validate_json,
                after,
                ended=lambda: self._ended(sweep_id),
                owner_id=sweep_id,
            )
        return alist_events(self._http, path, Page[SweepEvent], after)

    async def _ended(self, sweep_id: str) -> bool:
        return (await self.get(sweep_id)).done

    async def watch(
        self, sweep_id: str, *, timeout: float | None = None, poll_interval: float = 1.0
    ) -> AsyncIterator[Sweep]:
        async for sweep in apoll_until_done(
            lambda: self.get(sweep_id),
            f"sweep {sweep_id}",
            timeout=timeout,
            poll_interval=poll_interval,
        ):
            yield sweep

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
