"""A few hundred MB uploaded through the real API: the server's memory stays flat."""

import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from e2e_system import System

pytestmark = pytest.mark.e2e

UPLOAD_BYTES = 300 * 1024 * 1024
RSS_GROWTH_LIMIT = 100 * 1024 * 1024
BOUNDARY = "shardtrain-test-boundary"


def csv_body(total: int) -> Iterator[bytes]:
    """A multipart body whose CSV part is generated on the fly, never held whole."""
    yield (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
        "id,value,city\r\n"
    ).encode()
    sent, row = 0, 0
    while sent < total:
        block = "".join(
            f"{row + i},{(row + i) * 0.25},{('lima', 'oslo', 'rome')[(row + i) % 3]}\r\n"
            for i in range(20_000)
        ).encode()
        row += 20_000
        sent += len(block)
        yield block
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def test_api_memory_stays_flat_during_a_large_upload(system: System) -> None:
    api = psutil.Process(system.api_pid)
    baseline = api.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, api.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        response = system.client.post(
            "/v1/datasets",
            content=csv_body(UPLOAD_BYTES),
            headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
            timeout=300,
        )
    finally:
        done.set()
        sampler.join()
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["bytes"] > UPLOAD_BYTES
    assert dataset["format"] == "csv"
    growth = peak - baseline
    assert growth < RSS_GROWTH_LIMIT, f"API RSS grew by {growth / 2**20:.0f} MiB"
