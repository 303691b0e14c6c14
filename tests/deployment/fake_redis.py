"""An in-memory stand-in for the Redis client the compose healthchecks open."""

import fnmatch


class FakeRedis:
    """What WorkerRegistry and the healthchecks call, in memory."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.pings = 0

    def ping(self) -> bool:
        self.pings += 1
        return True

    def set(self, key: str, value: str, ex: int | None = None) -> None:
        self.data[key.encode()] = value.encode()

    def get(self, key: bytes | str) -> bytes | None:
        return self.data.get(key if isinstance(key, bytes) else key.encode())

    def delete(self, key: str) -> None:
        self.data.pop(key.encode(), None)

    def scan_iter(self, pattern: str, count: int = 0) -> list[bytes]:
        return [k for k in self.data if fnmatch.fnmatchcase(k.decode(), pattern)]
