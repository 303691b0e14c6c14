"""A real S3-protocol server on a local port (moto's server mode, what s3fs and
pyarrow test against) and a client for it, for the storage tests."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.server import ThreadedMotoServer

from app.storage.s3 import s3_client


@contextmanager
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_test_client(endpoint: str, **options: Any) -> Any:
    return s3_client(
        **options,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
