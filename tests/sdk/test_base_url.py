"""Where the SDK and CLI look for the server when no base URL is given: the variables
the server itself was started with (`make run` reads SHARDTRAIN_HOST/SHARDTRAIN_PORT)."""

import pytest

from shardtrain import Client
from shardtrain.client import resolve_base_url
from shardtrain.errors import ShardtrainError


@pytest.fixture(autouse=True)
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHARDTRAIN_BASE_URL", "SHARDTRAIN_HOST", "SHARDTRAIN_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_the_make_run_default_without_any_variable() -> None:
    assert resolve_base_url(None) == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, "8123", "http://127.0.0.1:8123"),
        ("0.0.0.0", "9000", "http://127.0.0.1:9000"),
        ("api.internal", None, "http://api.internal:8000"),
        ("::", "9000", "http://[::1]:9000"),
        ("::1", "9000", "http://[::1]:9000"),
    ],
)
def test_the_servers_host_and_port(
    monkeypatch: pytest.MonkeyPatch, host: str | None, port: str | None, expected: str
) -> None:
    if host is not None:
        monkeypatch.setenv("SHARDTRAIN_HOST", host)
    if port is not None:
        monkeypatch.setenv("SHARDTRAIN_PORT", port)
    assert resolve_base_url(None) == expected
    assert Client(api_key="sk_x").base_url == expected


def test_base_url_wins_over_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDTRAIN_PORT", "8123")
    monkeypatch.setenv("SHARDTRAIN_BASE_URL", "https://shardtrain.example")
    assert resolve_base_url(None) == "https://shardtrain.example"
    assert resolve_base_url("http://other:1") == "http://other:1"


def test_a_port_that_is_not_a_number_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDTRAIN_PORT", "eighty")
    with pytest.raises(ShardtrainError, match="SHARDTRAIN_PORT"):
        resolve_base_url(None)
