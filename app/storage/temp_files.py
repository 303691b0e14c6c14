"""Temporary files in blob storage, named after the process that writes them.

Every blob is written to a `.tmp-…` file beside its key and renamed into place, so a
process killed mid-write (SIGKILL, the out-of-memory killer, a lost host) leaves its
temporary file behind; a worker killed six times in one ingest left 864 MB of them.
A sweep must remove that debris without touching a file another live process is still
writing, and an absent row or an old name says nothing about that. So each name
carries its writer: the machine (boot id and PID namespace, which containers on one
host do not share), the process id, then mkstemp's random part:

    .tmp-<target>~<machine>~<pid>~<random>

On the same machine a dead pid means an abandoned file, at once. A file from another
machine, or one without an owner in its name (written by older code), can only be
judged by age: it is abandoned when nothing has written to it for `grace_s`.
"""

import os
import socket
import time
from functools import cache
from pathlib import Path

TEMP_PREFIX = ".tmp-"
_SEP = "~"


@cache
def this_machine() -> str:
    """Who "this machine" is for pids: a pid means nothing outside its PID namespace,
    and after a reboot every old pid is dead whatever process holds it now."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
        namespace = os.stat("/proc/self/ns/pid").st_ino
        return f"{boot}.{namespace}"
    except OSError:
        return socket.gethostname().replace(_SEP, "-").replace("/", "-") or "unknown"


def temp_prefix(target_name: str) -> str:
    """The prefix for a temporary file that will become `target_name`."""
    return f"{TEMP_PREFIX}{target_name}{_SEP}{this_machine()}{_SEP}{os.getpid()}{_SEP}"


def _owner(name: str) -> tuple[str, int] | None:
    parts = name.split(_SEP)
    if len(parts) < 4 or not parts[-2].isdigit():
        return None
    return parts[-3], int(parts[-2])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    try:
        # A killed process its parent has not reaped yet still answers signal 0.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in {"Z", "X"}


def abandoned(path: Path, *, grace_s: float, now: float | None = None) -> bool:
    """Whether no live process will ever finish this temporary file."""
    owner = _owner(path.name)
    if owner is not None and owner[0] == this_machine():
        return owner[1] != os.getpid() and not pid_alive(owner[1])
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return False
    return (time.time() if now is None else now) - modified > grace_s


def sweep_temp_files(directory: Path, *, grace_s: float, now: float | None = None) -> list[Path]:
    """Remove the abandoned temporary files under `directory`; the paths removed."""
    removed = []
    for folder, _dirs, names in os.walk(directory):
        for name in names:
            path = Path(folder) / name
            if name.startswith(TEMP_PREFIX) and abandoned(path, grace_s=grace_s, now=now):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
