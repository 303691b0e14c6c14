"""`/ui`: the dashboard, a static page in plain JavaScript that is a client of the
public `/v1` API only (it holds the user's key in the tab's sessionStorage and sends
it as any client does). Its scripts, styles and the libraries it vendors
(`static/vendor/`, each with its licence) are served from here, so it works offline
and behind a firewall, as the docs do.
"""

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

UI_PATH = "/ui"
_STATIC = Path(__file__).parent / "static"

# Everything from this origin and nothing else: a page that could load a script from
# elsewhere could also send the key there. uPlot sizes its canvas with inline styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)


class _DashboardFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        # The page and its modules change with the server: never a stale copy of one.
        response.headers["Cache-Control"] = "no-cache"
        return response


def install_ui(app: FastAPI) -> None:
    @app.get(UI_PATH, include_in_schema=False)
    def dashboard(request: Request) -> RedirectResponse:
        # The page loads its modules relative to `/ui/`.
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return RedirectResponse(f"{root}{UI_PATH}/", status_code=307)

    app.mount(UI_PATH, _DashboardFiles(directory=_STATIC, html=True), name="ui")
