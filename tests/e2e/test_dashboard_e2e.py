"""The dashboard at `/ui` in a real browser (Debian's Chromium through Playwright) on
the real system: iris uploaded through the page, a job started from it, its loss
curve gaining points while it runs, a prediction from the model page; a second
tenant's key sees none of it, and a revoked key is sent back to the key prompt."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_system import System
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sample_data import iris_table, table_to_csv

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("SHARDTRAIN_CHROMIUM", "/usr/bin/chromium")
# Set to a folder (docs/ui) to keep a screenshot of each page there.
SCREENSHOTS = os.environ.get("SHARDTRAIN_UI_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        f"no Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does) or set "
        "SHARDTRAIN_CHROMIUM"
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def admin(system: System, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.admin", *args],
        cwd=system.processes.root, env=system.processes.env, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout.strip()


def own_key(system: System) -> str:
    return str(system.client.headers["Authorization"]).removeprefix("Bearer ")


def iris_through_the_api(system: System) -> dict[str, Any]:
    upload = system.client.post(
        "/v1/datasets", files={"file": ("iris.csv", table_to_csv(iris_table()))}
    )
    return system.wait_for(f"/v1/datasets/{upload.json()['id']}", {"ready", "failed"})


def sign_in(page: Page, system: System, key: str) -> None:
    page.goto(f"{system.base_url}/ui/#/jobs")
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Use this key").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()


def shot(page: Page, name: str, tmp_path: Path) -> None:
    for folder in [tmp_path, *([Path(SCREENSHOTS)] if SCREENSHOTS else [])]:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
        assert (folder / f"{name}.png").stat().st_size > 1000


def test_upload_train_watch_and_predict_in_the_browser(
    system: System, browser: Browser, tmp_path: Path
) -> None:
    key = own_key(system)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, system, key)

    # Upload iris through the page, with its progress bar, and wait for it to be ready.
    page.get_by_role("link", name="Datasets").click()
    csv = tmp_path / "iris.csv"
    csv.write_bytes(table_to_csv(iris_table()))
    page.locator("input[type=file]").set_input_files(str(csv))
    expect(page.get_by_role("cell", name="ready").first).to_be_visible(timeout=60_000)
    shot(page, "datasets", tmp_path)
    page.get_by_role("link", name="iris.csv").first.click()
    expect(page.get_by_role("cell", name="petal_length").first).to_be_visible()
    # The column statistics gathered at ingest: sepal_length's greatest value.
    expect(page.get_by_role("cell", name="7.9000", exact=True)).to_be_visible()
    shot(page, "dataset", tmp_path)

    # Start a job from the jobs page; its page follows it live.
    page.get_by_role("link", name="Jobs").click()
    page.get_by_label("Target column").fill("species")
    page.get_by_label("Model").select_option("mlp")
    page.get_by_label("Rounds (trees)").fill("40")
    page.get_by_role("button", name="Start job").click()
    expect(page.get_by_role("heading", name="Job job_")).to_be_visible()
    chart = page.locator("#loss-chart")
    # A function, not an expression: the page's CSP refuses eval, as it should.
    drawn = "Number(document.querySelector('#loss-chart').dataset.points)"
    page.wait_for_function(f"() => {drawn} >= 1", timeout=60_000)
    first = int(chart.get_attribute("data-points") or 0)
    running = page.locator("dl .status").first.inner_text()
    page.wait_for_function(
        f"() => {drawn} > {first}",
        timeout=60_000,
    )
    # The first points were drawn while the job ran, and more came after them.
    assert running == "running", running
    expect(page.locator("dl .status").first).to_have_text("succeeded", timeout=120_000)
    assert int(chart.get_attribute("data-points") or 0) >= 2
    expect(page.locator("#events li").first).to_be_visible()
    shot(page, "job", tmp_path)

    # Predict from the model page's form, built from the model's input schema.
    page.get_by_role("link", name="mdl_").first.click()
    for name, value in {"sepal_length": "5.1", "sepal_width": "3.5", "petal_length": "1.4",
                        "petal_width": "0.2"}.items():  # fmt: skip
        page.locator(f"#try-{name}").fill(value)
    page.get_by_role("button", name="Predict").click()
    expect(page.locator("#prediction")).to_contain_text("setosa", timeout=30_000)
    shot(page, "model", tmp_path)
    page.get_by_role("link", name="Models", exact=True).click()
    shot(page, "models", tmp_path)
    page.get_by_role("link", name="Jobs").click()
    expect(page.get_by_role("link", name="job_").first).to_be_visible()
    shot(page, "jobs", tmp_path)

    # Readable at 390 px: nothing wider than the screen but the tables' own scroll boxes.
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    sign_in(phone, system, key)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    shot(phone, "jobs-390", tmp_path)
    phone.close()
    assert errors == []


def test_another_tenant_sees_nothing_and_a_revoked_key_goes_back_to_the_prompt(
    system: System, browser: Browser
) -> None:
    admin(system, "create-tenant", "ui-other")
    other = admin(system, "create-key", "--tenant", "ui-other")
    mine = system.client.get("/v1/jobs").json()["data"]
    page = browser.new_page()
    sign_in(page, system, other)
    expect(page.get_by_text("No jobs yet.")).to_be_visible()
    page.get_by_role("link", name="Datasets").click()
    expect(page.get_by_text("No datasets yet.")).to_be_visible()
    if mine:
        page.goto(f"{system.base_url}/ui/#/jobs/{mine[0]['id']}")
        expect(page.get_by_role("alert")).to_contain_text("No job with id")
    admin(system, "revoke-key", other[:12])
    page.get_by_role("link", name="Jobs").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    expect(page.locator("#key-reason")).to_contain_text("refused")


def test_a_sweep_and_a_named_model_in_the_browser(
    system: System, browser: Browser, tmp_path: Path
) -> None:
    key = own_key(system)
    dataset = iris_through_the_api(system)
    sweep = system.client.post(
        "/v1/sweeps",
        json={
            "template": {"dataset_id": dataset["id"], "target": "species",
                         "model_name": "iris-ui", "distribution": {"shards": 2},
                         "training": {"rounds": 4}},
            "space": {"training.learning_rate": {"log_uniform": [0.01, 0.3]}},
            "metric": "accuracy", "max_trials": 3, "parallelism": 2, "pruner": "none",
        },
    ).json()  # fmt: skip
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, system, key)
    page.get_by_role("link", name="Sweeps").click()
    page.get_by_role("link", name=sweep["id"]).click()
    expect(page.locator("#sweep-summary .status").first).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#trials tbody tr")).to_have_count(3)
    assert int(page.locator("#sweep-chart").get_attribute("data-points") or 0) == 3
    expect(page.locator("#cancel-sweep")).to_be_disabled()
    shot(page, "sweep", tmp_path)
    page.get_by_role("link", name="Named models").click()
    page.get_by_role("link", name="iris-ui").click()
    # The final job trained the best trial's settings as version 1 of the name.
    model_id = system.client.get(f"/v1/sweeps/{sweep['id']}").json()["model_id"]
    expect(page.get_by_role("link", name=model_id).first).to_be_visible()
    shot(page, "model-name", tmp_path)
    # A logistic regression's page shows its weights by raw column and class.
    page.get_by_role("link", name=model_id).first.click()
    expect(page.get_by_role("heading", name="Coefficients")).to_be_visible()
    expect(page.get_by_role("cell", name="petal_length").first).to_be_visible()
    assert errors == []


# Every control has an accessible name (its label, or its text), so a screen reader
# and a keyboard user reach and know each one; and nothing is wider than a phone.
UNNAMED_CONTROLS = """() => [...document.querySelectorAll('input, select, button, textarea, a')]
  .filter((e) => e.offsetParent !== null)
  .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !e.textContent.trim() && !e.getAttribute('title'))
  .map((e) => e.outerHTML.slice(0, 120))"""


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_labels_its_controls_and_fits_the_screen(
    system: System, browser: Browser, width: int
) -> None:
    key = own_key(system)
    jobs = system.client.get("/v1/jobs").json()["data"]
    models = system.client.get("/v1/models").json()["data"]
    datasets = system.client.get("/v1/datasets").json()["data"]
    sweeps = system.client.get("/v1/sweeps").json()["data"]
    pages = ["#/jobs", "#/datasets", "#/models", "#/model-names", "#/sweeps"]
    pages += [f"#/jobs/{jobs[0]['id']}"] if jobs else []
    pages += [f"#/models/{models[0]['id']}"] if models else []
    pages += [f"#/datasets/{datasets[0]['id']}"] if datasets else []
    pages += [f"#/sweeps/{sweeps[0]['id']}"] if sweeps else []
    page = browser.new_page(viewport={"width": width, "height": 900})
    sign_in(page, system, key)
    for route in pages:
        page.goto(f"{system.base_url}/ui/{route}")
        expect(page.locator("main h1")).to_be_visible()
        assert page.evaluate(UNNAMED_CONTROLS) == [], route
        assert page.evaluate("document.documentElement.scrollWidth") <= width, route
    # The keyboard reaches the navigation first, after the skip link.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Jobs"


def test_a_file_dropped_on_the_page_is_uploaded_with_its_progress(
    system: System, browser: Browser
) -> None:
    key = own_key(system)
    page = browser.new_page()
    sign_in(page, system, key)
    page.get_by_role("link", name="Datasets").click()
    expect(page.locator("#dropzone")).to_be_visible()
    # What a browser hands the page when a file is dragged onto it.
    dropped = page.evaluate_handle(
        """() => {
          const transfer = new DataTransfer();
          transfer.items.add(new File(["a,b\\n1,x\\n2,y\\n3,x\\n"], "dropped.csv",
                                      {type: "text/csv"}));
          return transfer;
        }"""
    )
    page.dispatch_event("#dropzone", "dragover", {"dataTransfer": dropped})
    expect(page.locator("#dropzone")).to_have_class(re.compile(r"\bover\b"))
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
    expect(page.locator("#upload-dataset .status")).to_have_text("ready", timeout=60_000)
    assert page.locator("#upload-progress").evaluate("(bar) => bar.value") == 1
    expect(page.get_by_role("link", name="dropped.csv").first).to_be_visible()
    names = [d["name"] for d in system.client.get("/v1/datasets").json()["data"]]
    assert "dropped.csv" in names


def test_delete_shows_the_409_reason_and_a_model_is_undeployed_deployed_and_downloaded(
    system: System, browser: Browser, tmp_path: Path
) -> None:
    key = own_key(system)
    dataset = iris_through_the_api(system)
    spec = {"dataset_id": dataset["id"], "target": "species", "distribution": {"shards": 2}}
    trained = system.client.post("/v1/jobs", json={**spec, "training": {"rounds": 2}}).json()
    done = system.wait_for(f"/v1/jobs/{trained['id']}", {"succeeded", "failed", "cancelled"})
    busy = system.client.post("/v1/jobs", json={**spec, "training": {"rounds": 1000}}).json()
    page = browser.new_page()
    sign_in(page, system, key)
    page.goto(f"{system.base_url}/ui/#/datasets/{dataset['id']}")
    page.locator("#delete-dataset").click()
    expect(page.locator("#dataset-message")).to_contain_text(busy["id"])
    expect(page.locator("#dataset-message")).to_contain_text("unfinished job")
    # The jobs list follows an unfinished job live: its cancel shows without a reload.
    page.get_by_role("link", name="Jobs").click()
    row = page.locator(f"#job-row-{busy['id']}")
    expect(row).to_contain_text("running", timeout=30_000)
    system.client.post(f"/v1/jobs/{busy['id']}/cancel")
    expect(row).to_contain_text("cancelled", timeout=30_000)

    page.goto(f"{system.base_url}/ui/#/models/{done['model_id']}")
    summary = page.locator("dl .status").first
    expect(summary).to_have_text("deployed")
    page.locator("#undeploy-model").click()
    expect(summary).to_have_text("undeployed")
    assert system.client.get(f"/v1/models/{done['model_id']}").json()["status"] == "undeployed"
    page.locator("#deploy-model").click()
    expect(summary).to_have_text("deployed")
    with page.expect_download() as downloading:
        page.locator("#download-artifact").click()
    saved = tmp_path / downloading.value.suggested_filename
    downloading.value.save_as(saved)
    assert saved.suffix == ".safetensors" and saved.stat().st_size > 100
