"""Request latency by route template, and a request id on every log line of a request."""

import re
import time
import uuid

from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.logging import log_ids

# Paths that match no route share one label: raw paths would let any client create
# series without bound.
UNMATCHED = "unmatched"
REQUEST_ID_HEADER = b"x-request-id"
# The server accepts any token as a method; anything else is one label, for the same
# reason as UNMATCHED.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A caller's own request id (from a proxy) is kept only when it is short and plain,
# since it is copied into every log line and the response.
_ACCEPTABLE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


def request_duration_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "shardtrain_http_request_duration_seconds",
        "Seconds from a request's arrival to the end of its response, by route template "
        "(the path with `{placeholders}`), method and status.",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    )


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = (
            incoming.decode()
            if _ACCEPTABLE_REQUEST_ID.fullmatch(incoming)
            else uuid.uuid4().hex[:16]
        )
        # The app's own last resort (UnhandledErrorMiddleware, inside this one) answers
        # any exception with a 500; one that still escapes reaches the server, which
        # answers 500 if nothing was sent. A client that hung up is labelled 499 by the
        # app's error handlers, not here.
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        started = time.perf_counter()
        try:
            with log_ids(request_id=request_id):
                await self.app(scope, receive, send_with_request_id)
        finally:
            # The router records the matched route in the shared scope; its `path` is
            # the template, e.g. /v1/jobs/{job_id}.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.histogram.labels(method, route, str(status)).observe(time.perf_counter() - started)
