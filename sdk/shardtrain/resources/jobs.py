"""`client.jobs`: create from a typed spec, list, read, cancel, delete, rerun, resume,
per-round metrics, events (listed, or followed live over server-sent events), and wait
for the end."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from shardtrain._http import AsyncHTTP, SyncHTTP
from shardtrain.event_stream import afollow_events, alist_events, follow_events, list_events
from shardtrain.models import Event, Job, JobDeleted, Page, RoundMetrics
from shardtrain.pagination import aiterate_pages, iterate_pages
from shardtrain.polling import apoll_until_done, poll_until_done
from shardtrain.progress import JobBar
from shardtrain.spec import JobSpec, request_body

PATH = "/v1/jobs"


def spec_body(spec: JobSpec | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> Any:
    """A JobSpec, a mapping (validated into one) or keyword fields; only set fields are
    sent, so the server fills its own defaults."""
    return request_body(JobSpec, spec, fields)


def _headers(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


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
        path = f"{PATH}/{job_id}/events"
        if follow:
            return follow_events(
                self._http,
                path,
                Event.model_validate_json,
                after,
                ended=lambda: self.get(job_id).done,
                owner_id=job_id,
            )
        return list_events(self._http, path, Page[Event], after)

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
        with JobBar(progress) as bar:
            for job in poll_until_done(
                lambda: self.get(job_id),
                f"job {job_id}",
                timeout=timeout,
                poll_interval=poll_interval,
            ):
                bar.update(job)
        return job


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
        path = f"{PATH}/{job_id}/events"
        if follow:
            return afollow_events(
                self._http,
                path,
                Event.model_validate_json,
                after,
                ended=lambda: self._ended(job_id),
                owner_id=job_id,
            )
        return alist_events(self._http, path, Page[Event], after)

    async def _ended(self, job_id: str) -> bool:
        return (await self.get(job_id)).done

    async def wait(
        self,
        job_id: str,
        *,
        progress: bool = True,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Job:
        with JobBar(progress) as bar:
            async for job in apoll_until_done(
                lambda: self.get(job_id),
                f"job {job_id}",
                timeout=timeout,
                poll_interval=poll_interval,
            ):
                bar.update(job)
        return job
