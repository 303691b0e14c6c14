"""A NUL character in a /v1 URL is a 422 before any route looks its ids up in SQL."""

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import error_response
from app.nul_characters import MESSAGE, NUL

API_PREFIX = "/v1/"


class NulCharacterMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            param = _nul_in_url(scope["path"], scope.get("query_string", b""))
            if param is not None:
                where = "The URL's path" if param == "path" else f"Query parameter {param!r}"
                response = error_response(422, "invalid_request", f"{where} {MESSAGE}.", param)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _nul_in_url(path: str, query_string: bytes) -> str | None:
    if NUL in path:
        return "path"
    if b"%00" not in query_string and b"\x00" not in query_string:
        return None
    query = query_string.decode("latin-1")
    for key, value in parse_qsl(query, keep_blank_values=True, encoding="utf-8"):
        if NUL in key or NUL in value:
            return key.replace(NUL, "") or "query"
    return None
