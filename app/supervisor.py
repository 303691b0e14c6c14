"""Keeping `make run`'s children alive: restart one that dies, with backoff, and give
up when one keeps dying right after it starts.

`RestartPolicy` is the decision alone (no clock, no processes) so it can be tested
exactly; `Supervisor` applies it to real child processes.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import IO, NoReturn


class RestartPolicy:
    """When to start a dead child again, or that it is time to stop trying.

    The delay doubles with each exit in a row (initial, 2x, 4x, ... up to a cap). A
    child that stayed up `stable_after_s` before it died starts a new streak, so one
    crash a day costs one short delay. A child that dies again after `max_restarts`
    restarts in a row, none of which lasted `stable_after_s`, is crash-looping (a
    port in use, a bad setting): more restarts would only fill the log.
    """

    def __init__(
        self,
        initial_delay_s: float = 1.0,
        max_delay_s: float = 30.0,
        stable_after_s: float = 60.0,
        max_restarts: int = 5,
    ) -> None:
        if initial_delay_s < 0 or max_delay_s < initial_delay_s:
            raise ValueError("delays must satisfy 0 <= initial_delay_s <= max_delay_s")
        if max_restarts < 0:
            raise ValueError("max_restarts must be >= 0")
        self.initial_delay_s = initial_delay_s
        self.max_delay_s = max_delay_s
        self.stable_after_s = stable_after_s
        self.max_restarts = max_restarts
        self.streak = 0

    def after_exit(self, uptime_s: float) -> float | None:
        """Seconds to wait before starting the child again, or None to give up."""
        if uptime_s >= self.stable_after_s:
            self.streak = 0
        self.streak += 1
        if self.streak > self.max_restarts:
            return None
        return float(min(self.initial_delay_s * 2 ** (self.streak - 1), self.max_delay_s))


class GaveUp(Exception):
    """A child kept dying; the message says which and how."""


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _exited(pid: int) -> bool:
    # WNOWAIT leaves the child a zombie: its pid, and so its process group id, cannot
    # be reused before _kill_group has run and Popen reaps it.
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int) -> None:
    # Each child leads its own process group, so what it forked (a prefork worker's
    # pool processes) goes with it instead of living on as orphans.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _why_not_again(policy: RestartPolicy) -> str:
    restarts = policy.streak - 1
    if restarts == 0:
        return "restarts are off"
    within = f"{policy.stable_after_s:g} s"
    if restarts == 1:
        return f"restarted once, dead again within {within}"
    return f"restarted {restarts} times in a row, dead within {within} each time"


class Child:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None,
        env: dict[str, str] | None,
        stdout: int | IO[bytes] | None,
        policy: RestartPolicy,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.cwd = cwd
        self.env = env
        self.stdout = stdout
        self.policy = policy
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None

    def start(self, now: float) -> None:
        self.process = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=self.stdout, process_group=0
        )
        self.started_at = now
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class Supervisor:
    """Starts children, restarts the ones that die, and stops them all in reverse order."""

    def __init__(
        self,
        policy: Callable[[], RestartPolicy] = RestartPolicy,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._log = log or (lambda line: print(f"shardtrain: {line}", flush=True))
        self._clock = clock
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        stdout: int | IO[bytes] | None = None,
    ) -> Child:
        child = Child(name, argv, cwd=cwd, env=env, stdout=stdout, policy=self._policy())
        self.children.append(child)
        child.start(self._clock())
        return child

    def check(self) -> None:
        """One pass: notice deaths, start the children whose delay is over.

        Raises GaveUp when a child is crash-looping; the caller stops the rest."""
        now = self._clock()
        for child in self.children:
            process = child.process
            if child.restart_at is None and process is not None:
                if not _exited(process.pid):
                    continue
                _kill_group(process.pid)
                returncode = process.wait()
                uptime = now - child.started_at
                how = f"{child.name} ({describe_exit(returncode)}) after {uptime:.1f} s"
                delay = child.policy.after_exit(uptime)
                if delay is None:
                    raise GaveUp(f"{how}: {_why_not_again(child.policy)}; giving up")
                self._log(f"{how}: restarting it in {delay:g} s")
                child.restart_at = now + delay
            if child.restart_at is not None and now >= child.restart_at:
                child.start(now)
                self._log(f"{child.name} restarted (pid {child.pid})")

    def run(self, interval_s: float = 0.25) -> NoReturn:
        """Supervise until GaveUp (or a signal handler's exception) ends it."""
        while True:
            self.check()
            time.sleep(interval_s)

    def stop_all(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every child, last started first; SIGKILL what is left at the deadline."""
        live = [
            c.process
            for c in reversed(self.children)
            if c.process is not None and c.process.returncode is None
        ]
        for process in live:
            # Not Popen.terminate: it reaps an exited child, freeing its group id.
            if not _exited(process.pid):
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in live:
            while not _exited(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            _kill_group(process.pid)
            process.wait()
