"""`GET /v1/jobs/{id}/metrics.png`: loss curves of a job trained by the real stage
functions, an image for a job with no round yet, and tenant scoping."""

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from dbsetup import issue_key
from fastapi.testclient import TestClient
from matplotlib import image
from sample_data import iris_table, table_to_csv

from app.config import Settings
from app.jobs.charts import LossPoint, render_loss_chart

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# matplotlib's first two colours, the train and validation lines.
TRAIN_BLUE = np.array([0x1F, 0x77, 0xB4]) / 255
VALIDATION_ORANGE = np.array([0xFF, 0x7F, 0x0E]) / 255


def decode(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_SIGNATURE)
    return np.asarray(image.imread(io.BytesIO(png), format="png"))


def pixels_of(picture: np.ndarray, colour: np.ndarray) -> int:
    return int(np.sum(np.all(np.abs(picture[..., :3] - colour) < 0.02, axis=-1)))


def test_a_trained_job_draws_both_loss_curves(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    job = train_job(
        "iris.csv",
        table_to_csv(iris_table()),
        target="species",
        training={"rounds": 4, "early_stopping": None},
        distribution={"shards": 2},
    )
    assert job["status"] == "succeeded", job
    response = client.get(f"/v1/jobs/{job['id']}/metrics.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    picture = decode(response.content)
    assert picture.shape[:2] == (450, 800)
    assert pixels_of(picture, TRAIN_BLUE) > 200
    assert pixels_of(picture, VALIDATION_ORANGE) > 200


def test_a_job_without_rounds_gets_an_image_not_an_error(
    client: TestClient, ready_dataset: Callable[[str, bytes], str]
) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    created = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "species"})
    assert created.status_code == 201, created.text
    response = client.get(f"/v1/jobs/{created.json()['id']}/metrics.png")
    assert response.status_code == 200
    picture = decode(response.content)
    assert picture.shape[:2] == (450, 800)
    assert pixels_of(picture, TRAIN_BLUE) == 0
    assert response.content == render_loss_chart(
        [], title=f"{created.json()['id']}: loss per round"
    )


def test_another_tenants_job_is_404(
    client: TestClient, settings: Settings, ready_dataset: Callable[[str, bytes], str]
) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    job_id = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "species"}).json()[
        "id"
    ]
    other = {"Authorization": f"Bearer {issue_key(settings.database_url, 'outsiders')}"}
    response = client.get(f"/v1/jobs/{job_id}/metrics.png", headers=other)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert client.get("/v1/jobs/job_missing/metrics.png").status_code == 404
    assert (
        client.get(f"/v1/jobs/{job_id}/metrics.png", headers={"Authorization": ""}).status_code
        == 401
    )


def test_gaps_and_non_finite_losses_do_not_break_the_chart() -> None:
    points = [
        LossPoint(1, 0.9, None),
        LossPoint(2, float("nan"), 0.7),
        LossPoint(3, float("inf"), 0.6),
        LossPoint(4, 0.5, 0.5),
    ]
    picture = decode(render_loss_chart(points, title="gaps", width_px=640, height_px=320))
    assert picture.shape[:2] == (320, 640)
    assert pixels_of(picture, TRAIN_BLUE) > 50 and pixels_of(picture, VALIDATION_ORANGE) > 50
    only_nan = decode(render_loss_chart([LossPoint(1, float("nan"), None)], title="diverged"))
    assert pixels_of(only_nan, TRAIN_BLUE) == 0
