"""What the in-process SDK tests share: fast retries and the served app's handles."""

from dataclasses import dataclass

from fastapi.testclient import TestClient
from fault_injection import FaultInjector

from shardtrain import Client, RetryPolicy

# Fast retries: the backoff is not what these tests measure (Retry-After is).
FAST = RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.05)


@dataclass
class Served:
    injector: FaultInjector
    sdk: Client
    http: TestClient
    api_key: str
