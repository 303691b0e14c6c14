"""Following events over SSE and waiting, against a scripted transport: the app in this
process cannot drop a stream mid-way or close one early, so these pin what the SDK does
then (resume with Last-Event-ID, give up after `max_retries` breaks in a row, read the
resource again on a close) for jobs and sweeps, sync and async."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from sdk_harness import FAST

from shardtrain import AsyncClient, Client
from shardtrain.errors import APIConnectionError, WaitTimeoutError

Handler = Callable[[httpx.Request], httpx.Response]


class _Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An SSE body: its chunks, then, with `breaks`, a dropped connection."""

    def __init__(self, chunks: list[bytes], *, breaks: bool) -> None:
        self._chunks = chunks
        self._breaks = breaks

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks
        if self._breaks:
            raise httpx.ReadError("connection dropped")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._breaks:
            raise httpx.ReadError("connection dropped")


def _sse(*events: dict[str, Any], keep_alive: bool = False, breaks: bool = False) -> httpx.Response:
    chunks = [b": keep-alive\n\n"] if keep_alive else []
    chunks += [f"id: {e['id']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]
    headers = {"content-type": "text/event-stream"}
    return httpx.Response(200, headers=headers, stream=_Body(chunks, breaks=breaks))


def _job_event(n: int) -> dict[str, Any]:
    return {
        "id": f"evt_{n}",
        "object": "job.event",
        "job_id": "job_1",
        "type": "job.round",
        "level": "info",
        "message": f"round {n}",
        "data": {},
        "created_at": n,
    }


def _sweep_event(n: int) -> dict[str, Any]:
    event = {**_job_event(n), "object": "sweep.event", "type": "trial.done"}
    del event["job_id"]
    return {**event, "sweep_id": "swp_1"}


def _job(status: str) -> dict[str, Any]:
    return {
        "id": "job_1",
        "status": status,
        "spec": {"dataset_id": "ds_1", "target": "y"},
        "progress": {"round": 1, "rounds": 3},
        "created_at": 0,
    }


def _sweep(status: str) -> dict[str, Any]:
    return {
        "id": "swp_1",
        "status": status,
        "spec": {},
        "task": "classification",
        "metric": "accuracy",
        "direction": "maximize",
        "trials": [],
        "counts": {},
        "created_at": 0,
    }


class Script:
    """Answers each events stream with the next scripted response and each read of the
    resource with the next status; records the Last-Event-ID of every stream."""

    def __init__(self, streams: list[httpx.Response], statuses: list[str], body: Any) -> None:
        self.streams = streams
        self.statuses = statuses
        self.body = body
        self.last_event_ids: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            self.last_event_ids.append(request.headers.get("last-event-id"))
            return self.streams.pop(0)
        return httpx.Response(200, json=self.body(self.statuses.pop(0)))


def _client(handler: Handler) -> Client:
    http = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://test")
    return Client(api_key="k", base_url="http://test", http_client=http, retry=FAST)


def _async_client(handler: Handler) -> AsyncClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://test")
    return AsyncClient(api_key="k", base_url="http://test", http_client=http, retry=FAST)


def _resuming_script(event: Callable[[int], dict[str, Any]], body: Any) -> Script:
    # Two events and a drop; one more and a close while it runs; a close once it ended.
    streams = [
        _sse(event(1), event(2), keep_alive=True, breaks=True),
        _sse(event(3)),
        _sse(),
    ]
    return Script(streams, ["running", "succeeded"], body)


def test_a_followed_job_stream_resumes_after_a_drop_and_after_a_close_until_it_ended() -> None:
    script = _resuming_script(_job_event, _job)
    events = list(_client(script).jobs.events("job_1", follow=True, after="evt_0"))
    assert [e.id for e in events] == ["evt_1", "evt_2", "evt_3"]
    assert script.last_event_ids == ["evt_0", "evt_2", "evt_3"]
    assert script.statuses == []


def test_a_followed_sweep_stream_resumes_the_same_way_async() -> None:
    script = _resuming_script(_sweep_event, _sweep)

    async def follow() -> list[str]:
        client = _async_client(script)
        return [e.id async for e in client.sweeps.events("swp_1", follow=True)]

    assert asyncio.run(follow()) == ["evt_1", "evt_2", "evt_3"]
    assert script.last_event_ids == [None, "evt_2", "evt_3"]
    assert script.statuses == []


def test_a_stream_that_keeps_breaking_without_an_event_gives_up_naming_it() -> None:
    drops = [_sse(breaks=True) for _ in range(FAST.max_retries + 1)]
    script = Script(drops, [], _job)
    with pytest.raises(APIConnectionError, match=r"^event stream of job_1: ReadError"):
        list(_client(script).jobs.events("job_1", follow=True))
    assert len(script.last_event_ids) == FAST.max_retries + 1


def test_an_event_between_breaks_starts_the_count_again() -> None:
    # Three streams bring an event each and break; only the breaks since the last
    # event count, the one that ended its stream the first of them.
    streams = [_sse(_sweep_event(n), breaks=True) for n in range(1, 4)]
    streams += [_sse(breaks=True) for _ in range(FAST.max_retries)]
    script = Script(streams, [], _sweep)

    async def follow() -> list[str]:
        seen: list[str] = []
        with pytest.raises(APIConnectionError, match=r"^event stream of swp_1: "):
            async for event in _async_client(script).sweeps.events("swp_1", follow=True):
                seen.append(event.id)
        return seen

    assert asyncio.run(follow()) == ["evt_1", "evt_2", "evt_3"]
    assert script.streams == []


def test_wait_and_watch_time_out_naming_the_object_and_its_status() -> None:
    client = _client(Script([], ["running"] * 4, _job))
    with pytest.raises(WaitTimeoutError, match=r"^job job_1 still running after 0\.0s$"):
        client.jobs.wait("job_1", progress=True, timeout=0.0)
    sweeps = _client(Script([], ["running"] * 4, _sweep)).sweeps
    with pytest.raises(WaitTimeoutError, match=r"^sweep swp_1 still running after 0\.0s$"):
        sweeps.wait("swp_1", progress=True, timeout=0.0)


def test_wait_returns_the_object_as_it_ended_and_watch_yields_each_read() -> None:
    statuses = ["running", "running", "failed"]
    job = _client(Script([], list(statuses), _job)).jobs.wait("job_1", poll_interval=0)
    assert job.status == "failed"
    sweeps = _client(Script([], list(statuses), _sweep)).sweeps
    assert [s.status for s in sweeps.watch("swp_1", poll_interval=0)] == statuses

    async def waited() -> tuple[str, list[str]]:
        jobs = _async_client(Script([], list(statuses), _job)).jobs
        ended = await jobs.wait("job_1", progress=False, poll_interval=0)
        watched = _async_client(Script([], list(statuses), _sweep)).sweeps
        return ended.status, [s.status async for s in watched.watch("swp_1", poll_interval=0)]

    assert asyncio.run(waited()) == ("failed", statuses)
