"""`.list()` walks every page: more objects than one page holds, with limit=2."""

import asyncio
from pathlib import Path
from urllib.parse import parse_qs

import httpx
from fault_injection import FaultInjector
from sample_data import SEED_EXAMPLE_CSV
from sdk_harness import FAST, Served

from app.config import Settings
from app.main import create_app
from shardtrain import AsyncClient


def test_datasets_list_follows_every_page(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_bytes(SEED_EXAMPLE_CSV)
    created = [served.sdk.datasets.upload(path, name=f"d{i}").id for i in range(5)]
    listed = [d.id for d in served.sdk.datasets.list(limit=2)]
    assert listed == list(reversed(created))  # newest first, each once
    pages = served.injector.requests("GET", "/v1/datasets")
    assert len(pages) == 3
    cursors = [parse_qs(p.query).get("after", [None])[0] for p in pages]
    assert cursors == [None, listed[1], listed[3]]
    assert all(parse_qs(p.query)["limit"] == ["2"] for p in pages)


def test_jobs_list_follows_every_page(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_bytes(SEED_EXAMPLE_CSV)
    dataset = served.sdk.datasets.upload(path)
    created = [
        served.sdk.jobs.create(dataset_id=dataset.id, target="label", training={"seed": i}).id
        for i in range(3)
    ]
    assert [j.id for j in served.sdk.jobs.list(limit=2)] == list(reversed(created))
    assert len(served.injector.requests("GET", "/v1/jobs")) == 2
    page = served.sdk.jobs.list_page(limit=2)
    assert page.has_more and len(page.data) == 2


def test_async_list_follows_every_page(settings: Settings, api_key: str, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_bytes(SEED_EXAMPLE_CSV)
    injector = FaultInjector(create_app(settings))

    async def scenario() -> tuple[list[str], list[str]]:
        transport = httpx.ASGITransport(app=injector)
        async with httpx.AsyncClient(transport=transport) as http:
            client = AsyncClient(api_key, "http://sdk.test", http_client=http, retry=FAST)
            created = [(await client.datasets.upload(path)).id for _ in range(3)]
            return created, [d.id async for d in client.datasets.list(limit=2)]

    created, listed = asyncio.run(scenario())
    assert listed == list(reversed(created))
    assert len(injector.requests("GET", "/v1/datasets")) == 2
