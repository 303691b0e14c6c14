"""`/docs` (Swagger UI) and `/redoc` served with their scripts, styles and favicon
from this app, not from a CDN.

FastAPI's built-in pages load swagger-ui and redoc from jsdelivr (and redoc's fonts
from Google), so on a machine without internet they render blank (issue 14). The
assets come from the `fastapi-offline` wheel, a pinned dependency, rather than
files copied into this repository: one pip upgrade refreshes them, licences
included, and the repository carries no 2.8 MB of minified JavaScript.
"""

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"

# FastAPI's defaults plus:
# - persistAuthorization: the key typed into Authorize survives a reload of the page,
#   so a newcomer pastes the dev key once, not after every restart of `make run`;
# - validatorUrl None: swagger-ui would otherwise send the document to
#   validator.swagger.io, which fails (and leaks the API's shape) offline.
SWAGGER_UI_PARAMETERS = {
    "dom_id": "#swagger-ui",
    "layout": "BaseLayout",
    "deepLinking": True,
    "showExtensions": True,
    "showCommonExtensions": True,
    "persistAuthorization": True,
    "validatorUrl": None,
}


def install_docs(app: FastAPI) -> None:
    """Adds `/docs`, its OAuth2 redirect page, `/redoc`, the assets they load and
    `GET /` (to `/docs`). The app must be built with `docs_url=None, redoc_url=None`
    so FastAPI's CDN-backed pages do not shadow these."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(ASSETS_PATH, StaticFiles(directory=_ASSETS_DIR), name="docs-assets")

    def root_of(request: Request) -> str:
        # Behind a proxy that mounts the API under a prefix, every URL the page loads
        # must carry that prefix, as FastAPI's own pages do.
        return str(request.scope.get("root_path", "")).rstrip("/")

    # HEAD too, so `curl -I` on the bare address finds the docs as a browser does.
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index(request: Request) -> RedirectResponse:
        # 307, the temporary redirect: what `/` shows may change, so no client should
        # cache it for good.
        return RedirectResponse(f"{root_of(request)}/docs", status_code=307)

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = root_of(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            oauth2_redirect_url=root + oauth2_redirect_url,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = root_of(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            # The fonts come from fonts.googleapis.com; offline, redoc falls back to
            # the system's sans-serif.
            with_google_fonts=False,
        )
