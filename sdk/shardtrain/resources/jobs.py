"""`client.jobs`: create from a typed spec, list, read, cancel, delete, rerun, resume,
per-round metrics, events (listed, or followed live over server-sent events), and wait
for the end."""

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
from shardtrain.models import Event, Job, JobDeleted, Page, RoundMetrics
from shardtrain.pagination import aiterate_pages, iterate_pages
from shardtrain.progress import JobBar
from shardtrain.spec import JobSpec

PATH = "/v1/jobs"
EVENTS_PAGE = 1000


def spec_body(spec: JobSpec | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> Any:
    """A JobSpec, a mapping (validated into one) or keyword fields; only set fields are
    sent, so the server fills its own defaults."""
    if spec is None:
        spec = JobSpec.model_validate(dict(fields))
    elif not isinstance(spec, JobSpec):
        spec = JobSpec.model_validate({**spec, **fields})
    elif fields:
        spec = JobSpec.model_validate({**spec.to_request(), **fields})
    return spec.to_request()


def _headers(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


def _sse_headers(last_event_id: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    return headers


class Jobs:
    def __init__(self, http: SyncHTTP) -> None:
        self._http = http

    def create(
        self,
        spec: JobSpec | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """`create(JobSpec(...))`, `create({"dataset_id": ..., ...})` or
        `create(dataset_id=..., target=..., training=TrainingSpec(rounds=5))`."""
        body = spec_body(spec, fields)
        return Job.model_validate(
            self._http.json("POST", PATH, json=body, headers=_headers(idempotency_key))
        )

    def list_page(self, *, limit: int = 20, after: str | None = None) -> Page[Job]:
        body = self._http.json("GET", PATH, params={"limit": limit, "after": after})
        return Page[Job].model_validate(body)

    def list(self, *, limit: int = 20) -> Iterator[Job]:
        return iterate_pages(lambda after: self.list_page(limit=limit, after=after))

    def get(self, job_id: str) -> Job:
        return Job.model_validate(self._http.json("GET", f"{PATH}/{job_id}"))

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._http.json("POST", f"{PATH}/{job_id}/cancel"))

    def delete(self, job_id: str) -> JobDeleted:
        """A finished job and its data; `ConflictError` while it runs or while the model
        it trained exists (delete that first). Its dataset stays."""
        return JobDeleted.model_validate(self._http.json("DELETE", f"{PATH}/{job_id}"))

    def rerun(self, job_id: str, *, idempotency_key: str | None = None) -> Job:
        """A new job (a new model version) with the spec of `job_id`; with the same
        `idempotency_key`, a repeated call returns the job the first one made."""
        body = self._http.json("POST", f"{PATH}/{job_id}/rerun", headers=_headers(idempotency_key))
        return Job.model_validate(body)

    def resume(self, job_id: str) -> Job:
        """The same failed or cancelled job, `running` again from the checkpoint of its
        last merged round (no new job, no new version; `wait` follows it). ConflictError
        with code `job_not_resumable` for a job in any other status, one that stopped
        before its shards were written (rerun it), or one whose checkpoint or shard
        files are gone; RateLimitError at the unfinished-jobs quota."""
        return Job.model_validate(self._http.json("POST", f"{PATH}/{job_id}/resume"))

    def metrics(self, job_id: str) -> builtins.list[RoundMetrics]:
        body = self._http.json("GET", f"{PATH}/{job_id}/metrics")
        return Page[RoundMetrics].model_validate(body).data

    def events(
        self, job_id: str, *, follow: bool = False, after: str | None = None
    ) -> Iterator[Event]:
        """The job's events, oldest first. `follow=True` streams them live over SSE until
        the job has ended, reconnecting with `Last-Event-ID` if the connection drops."""
        if follow:
            return self._follow(job_id, after)

        def fetch(cursor: str | None) -> Page[Event]:
            params = {"limit": EVENTS_PAGE, "after": cursor or after}
            return Page[Event].model_validate(
                self._http.json("GET", f"{PATH}/{job_id}/events", params=params)
            )

        return iterate_pages(fetch)

    def _follow(self, job_id: str, last: str | None) -> Iterator[Event]:
        failures = 0
        while True:
            try:
                with self._http.stream(
                    "GET", f"{PATH}/{job_id}/events", headers=_sse_headers(last)
                ) as response:
                    for sse in EventSource(response).iter_sse():
                        if not sse.data:
                            continue  # the server's keep-alive comment, not an event
                        event = Event.model_validate_json(sse.data)
                        last, failures = event.id, 0
                        yield event
            except httpx.TransportError as exc:
                # The stream broke mid-way: resume after the last event received.
                failures += 1
                if failures > self._http.retry.max_retries:
                    raise APIConnectionError(f"event stream of {job_id}: {exc!r}") from exc
                time.sleep(self._http.retry.backoff(failures - 1))
                continue
            # The server closes the stream once the job has ended and every event is
            # sent; a close for any other reason (a restart) is resumed.
            if self.get(job_id).done:
                return
            time.sleep(self._http.retry.backoff(0))

    def wait(
        self,
        job_id: str,
        *,
        progress: bool = True,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Job:
        """Poll until the job has succeeded, failed or been cancelled and return it as it
        ended. `progress=True` shows rounds done and the latest losses on stderr."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with JobBar(progress) as bar:
            while True:
                job = self.get(job_id)
                bar.update(job)
                if job.done:
                    return job
                if deadline is not None and time.monotonic() > deadline:
                    raise WaitTimeoutError(f"job {job_id} still {job.status} after {timeout}s")
                time.sleep(poll_interval)


class AsyncJobs:
    def __init__(self, http: AsyncHTTP) -> None:
        self._http = http

    async def create(
        self,
        spec: JobSpec | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        body = spec_body(spec, fields)
        return Job.model_validate(
            await self._http.json("POST", PATH, json=body, headers=_headers(idempotency_key))
        )

    async def list_page(self, *, limit: int = 20, after: str | None = None) -> Page[Job]:
        body = await self._http.json("GET", PATH, params={"limit": limit, "after": after})
        return Page[Job].model_validate(body)

    def list(self, *, limit: int = 20) -> AsyncIterator[Job]:
        return aiterate_pages(lambda after: self.list_page(limit=limit, after=after))

    async def get(self, job_id: str) -> Job:
        return Job.model_validate(await self._http.json("GET", f"{PATH}/{job_id}"))

    async def cancel(self, job_id: str) -> Job:
        return Job.model_validate(await self._http.json("POST", f"{PATH}/{job_id}/cancel"))

    async def delete(self, job_id: str) -> JobDeleted:
        return JobDeleted.model_validate(await self._http.json("DELETE", f"{PATH}/{job_id}"))

    async def rerun(self, job_id: str, *, idempotency_key: str | None = None) -> Job:
        body = await self._http.json(
            "POST", f"{PATH}/{job_id}/rerun", headers=_headers(idempotency_key)
        )
        return Job.model_validate(body)

    async def resume(self, job_id: str) -> Job:
        return Job.model_validate(await self._http.json("POST", f"{PATH}/{job_id}/resume"))

    async def metrics(self, job_id: str) -> builtins.list[RoundMetrics]:
        body = await self._http.json("GET", f"{PATH}/{job_id}/metrics")
        return Page[RoundMetrics].model_validate(body).data

    def events(
        self, job_id: str, *, follow: bool = False, after: str | None = None
    ) -> AsyncIterator[Event]:
        if follow:
            return self._follow(job_id, after)

        async def fetch(cursor: str | None) -> Page[Event]:
            params = {"limit": EVENTS_PAGE, "after": cursor or after}
            return Page[Event].model_validate(
                await self._http.json("GET", f"{PATH}/{job_id}/events", params=params)
            )

        return aiterate_pages(fetch)

    async def _follow(self, job_id: str, last: str | None) -> AsyncIterator[Event]:
        failures = 0
        while True:
            try:
                async with self._http.stream(
                    "GET", f"{PATH}/{job_id}/events", headers=_sse_headers(last)
                ) as response:
                    async for sse in EventSource(response).aiter_sse():
                        if not sse.data:
                            continue  # the server's keep-alive comment, not an event
                        event = Event.model_validate_json(sse.data)
                        last, failures = event.id, 0
                        yield event
            except httpx.TransportError as exc:
                failures += 1
                if failures > self._http.retry.max_retries:
                    raise APIConnectionError(f"event stream of {job_id}: {exc!r}") from exc
                await asyncio.sleep(self._http.retry.backoff(failures - 1))
                continue
            if (await self.get(job_id)).done:
                return
            await asyncio.sleep(self._http.retry.backoff(0))

    async def wait(
        self,
        job_id: str,
        *,
        progress: bool = True,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        with JobBar(progress) as bar:
            while True:
                job = await self.get(job_id)
                bar.update(job)
                if job.done:
                    return job
                if deadline is not None and time.monotonic() > deadline:
                    raise WaitTimeoutError(f"job {job_id} still {job.status} after {timeout}s")
                await asyncio.sleep(poll_interval)
