"""A real uvicorn in a thread of the test process, on a free port, for what only a real
server shows: connections kept or closed, clients that hang up."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from app.runner import free_local_port


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The base URL while the server runs."""
    port = free_local_port()
    # log_config=None: uvicorn's loggers keep propagating, so caplog sees what it logs.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        thread.join(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
