"""`client.datasets.import_url`: an object in a real S3-protocol server (moto's),
imported through the SDK, and refused with the server's 403 where it is not allowed."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from s3_server import s3_endpoint, s3_test_client
from sample_data import SEED_EXAMPLE_CSV
from sdk_harness import FAST

from app.config import Settings
from app.main import create_app
from shardtrain import Client, errors

BUCKET = "sdk-imports"


@pytest.fixture
def sdk(settings: Settings, api_key: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    with s3_endpoint() as endpoint:
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        s3: Any = s3_test_client(endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="shared/seed.csv", Body=SEED_EXAMPLE_CSV)
        s3.put_object(Bucket=BUCKET, Key="private/seed.csv", Body=SEED_EXAMPLE_CSV)
        configured = settings.model_copy(
            update={"import_allowed_prefixes": [f"s3://{BUCKET}/shared/"]}
        )
        with TestClient(create_app(configured), raise_server_exceptions=False) as http:
            client = Client(
                api_key=api_key, base_url=str(http.base_url), http_client=http, retry=FAST
            )
            yield client
            client.close()


def test_an_allowed_object_is_imported(sdk: Client) -> None:
    url = f"s3://{BUCKET}/shared/seed.csv"
    dataset = sdk.datasets.import_url(url, name="seed")
    assert (dataset.status, dataset.source_url, dataset.name) == ("processing", url, "seed")
    assert dataset.sha256 is None and dataset.bytes == len(SEED_EXAMPLE_CSV)
    assert sdk.datasets.get(dataset.id).source_url == url


def test_another_prefix_raises_permission_denied_naming_the_url(sdk: Client) -> None:
    url = f"s3://{BUCKET}/private/seed.csv"
    with pytest.raises(errors.PermissionDeniedError) as raised:
        sdk.datasets.import_url(url)
    assert raised.value.code == "import_not_allowed"
    assert url in str(raised.value)
