"""The dashboard's page and every script, style and library it loads are served by the
app itself (it works offline, like the docs), under a policy that allows no other
origin; and the vendored libraries carry their licences."""

import re
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app

# A module's static imports: `import {a, b} from "./x.js"`, `export {c} from "./y.js"`.
IMPORT = r"^\s*(?:import|export)\s*(?:\{[^}]*\}|\*\s+as\s+\w+|\w+)?\s*from\s*[\"']([^\"']+)[\"']"
STATIC = Path(__file__).resolve().parents[2] / "app" / "ui" / "static"


def _client() -> TestClient:
    return TestClient(create_app(), follow_redirects=False)


def test_ui_redirects_to_its_page_which_allows_this_origin_only() -> None:
    with _client() as client:
        assert client.get("/ui").headers["location"] == "/ui/"
        page = client.get("/ui/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"


def test_every_asset_the_page_and_its_modules_load_is_served_here() -> None:
    html = (STATIC / "index.html").read_text()
    wanted = set(re.findall(r'(?:src|href)="([^"#]+)"', html))
    assert wanted and not any(re.match(r"(https?:)?//", url) for url in wanted)
    for module in STATIC.rglob("*.js"):
        text = module.read_text()
        for target in re.findall(IMPORT, text, re.MULTILINE):
            assert target.startswith("."), f"{module.name} imports {target} from elsewhere"
            wanted.add(str((module.parent / target).resolve().relative_to(STATIC)))
    with _client() as client:
        for path in sorted(wanted):
            response = client.get(f"/ui/{path.removeprefix('./')}")
            assert response.status_code == 200, path
    assert len(wanted) > 10


def test_the_vendored_libraries_carry_their_licences() -> None:
    vendored = [d for d in (STATIC / "vendor").iterdir() if d.is_dir()]
    assert {d.name.rsplit("-", 1)[0] for d in vendored} == {"uplot", "fetch-event-source"}
    for folder in vendored:
        assert (
            "MIT" in (folder / "LICENSE").read_text()[:200]
            or "Permission is hereby" in (folder / "LICENSE").read_text()
        )
    with _client() as client:
        assert client.get("/ui/vendor/no-such.js").status_code == 404
