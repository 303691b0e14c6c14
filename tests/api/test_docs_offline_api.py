"""`/docs` and `/redoc` load everything from this app (issue 14: on a machine without
internet they rendered blank, their scripts coming from a CDN), and `/` leads there."""

from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

BASE = "http://testserver"


class _References(HTMLParser):
    """Every URL the page makes a browser fetch: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        attribute = {"script": "src", "link": "href", "img": "src"}.get(tag)
        if attribute and named.get(attribute):
            self.urls.append(str(named[attribute]))
        self._in_script = tag == "script" and not named.get("src")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_scripts.append(data)


def _references(html: str) -> _References:
    parser = _References()
    parser.feed(html)
    return parser


@pytest.fixture
def anonymous(settings: Settings) -> Iterator[TestClient]:
    # No key: a newcomer opens the docs before having one.
    with TestClient(create_app(settings), base_url=BASE) as client:
        yield client


EXPECTED_TYPES = {
    ".js": "javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_of_the_docs_pages_is_served_by_the_app(
    anonymous: TestClient, page: str
) -> None:
    response = anonymous.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    found = _references(response.text)
    # The page loads at least its script, and for /docs a stylesheet, and a favicon.
    suffixes = {urlsplit(url).path.rsplit(".", 1)[-1] for url in found.urls}
    assert "js" in suffixes and "png" in suffixes
    if page == "/docs":
        assert "css" in suffixes
    for url in found.urls:
        absolute = urljoin(BASE + page, url)
        assert urlsplit(absolute).netloc == "testserver", f"{page} loads {url} from elsewhere"
        asset = anonymous.get(absolute)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
        suffix = "." + urlsplit(absolute).path.rsplit(".", 1)[-1]
        assert EXPECTED_TYPES[suffix] in asset.headers["content-type"], url
    # Nothing in the page's own script names another host (swagger-ui's validator badge,
    # a CDN): offline such a fetch fails, and online it would send the API's shape away.
    inline = "".join(found.inline_scripts)
    assert "http://" not in inline and "https://" not in inline
    assert "fonts.googleapis" not in response.text


def test_docs_points_at_this_apps_schema_and_oauth_redirect(anonymous: TestClient) -> None:
    html = anonymous.get("/docs").text
    assert "url: '/openapi.json'" in html
    # Authorize keeps working: the redirect page Swagger UI's OAuth flow lands on exists.
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in html
    redirect = anonymous.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200 and "oauth2" in redirect.text.lower()
    # A key pasted into Authorize survives a reload of the page.
    assert '"persistAuthorization": true' in html
    spec = anonymous.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")


def test_docs_assets_follow_a_proxy_prefix(settings: Settings) -> None:
    # Behind a proxy that serves the API under /shardtrain, every URL the page loads
    # carries the prefix, or the browser would ask the proxy for paths it does not route.
    app = create_app(settings)
    with TestClient(app, base_url=BASE, root_path="/shardtrain") as client:
        html = client.get("/docs").text
        urls = _references(html).urls
        assert urls and all(url.startswith("/shardtrain/docs-assets/") for url in urls)
        assert "url: '/shardtrain/openapi.json'" in html


def test_root_redirects_to_the_docs(anonymous: TestClient) -> None:
    response = anonymous.get("/", follow_redirects=False)
    assert response.status_code in (307, 308)
    assert response.headers["location"] == "/docs"
    assert anonymous.head("/", follow_redirects=False).headers["location"] == "/docs"
    followed = anonymous.get("/")
    assert followed.status_code == 200 and "swagger-ui" in followed.text


def test_docs_routes_are_not_operations_of_the_api(anonymous: TestClient) -> None:
    paths = anonymous.get("/openapi.json").json()["paths"]
    for hidden in ("/", "/docs", "/redoc", "/docs/oauth2-redirect"):
        assert hidden not in paths
    assert not any(path.startswith("/docs-assets") for path in paths)


def test_the_authorize_dialog_says_where_the_dev_key_is(anonymous: TestClient) -> None:
    scheme = anonymous.get("/openapi.json").json()["components"]["securitySchemes"]["ApiKey"]
    assert "`make run` prints a dev key" in scheme["description"]
    assert "$SHARDTRAIN_DATA_DIR/dev-api-key" in scheme["description"]
    assert "./.shardtrain/dev-api-key" in scheme["description"]


def test_an_unknown_asset_is_a_404(anonymous: TestClient) -> None:
    response = anonymous.get("/docs-assets/nothing.js")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
