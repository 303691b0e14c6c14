"""A small ASGI wrapper in front of the real app: it records every request and answers
the first N that match with an error, either instead of the app (a 429 with Retry-After,
a 503 from a proxy) or after the app has handled the request (the response is lost on
the way back, so the object exists but the client never heard of it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Seen:
    method: str
    path: str
    query: str
    idempotency_key: str | None
    answered: int


@dataclass
class Fault:
    method: str
    path: str
    status: int
    times: int
    retry_after: str | None = None
    when: Literal["before", "after"] = "before"


@dataclass
class FaultInjector:
    app: ASGIApp
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]

    def _fault_for(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.method == method and fault.path == path and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    async def _answer(self, send: Send, fault: Fault) -> None:
        headers = [(b"content-type", b"application/json")]
        if fault.retry_after is not None:
            headers.append((b"retry-after", fault.retry_after.encode()))
        kind = "rate_limit_error" if fault.status == 429 else "api_error"
        body = (
            f'{{"error": {{"type": "{kind}", "code": "injected_{fault.status}", '
            f'"message": "injected by the test", "param": null}}}}'
        ).encode()
        await send({"type": "http.response.start", "status": fault.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        fault = self._fault_for(method, path)
        seen = Seen(
            method, path, scope.get("query_string", b"").decode(),
            headers.get("idempotency-key"), 0,
        )  # fmt: skip
        self.seen.append(seen)
        if fault is not None and fault.when == "before":
            seen.answered = fault.status
            await self._answer(send, fault)
            return
        if fault is not None:
            # Let the app do its work, drop its answer, send the error instead.
            async def discard(message: Message) -> None:
                return None

            await self.app(scope, receive, discard)
            seen.answered = fault.status
            await self._answer(send, fault)
            return

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen.answered = message["status"]
            await send(message)

        await self.app(scope, receive, record)
