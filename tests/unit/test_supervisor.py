"""The runner's restart policy as pure arithmetic, and the supervisor on real child
processes (with a clock the test moves, so no test waits out a backoff)."""

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from app.supervisor import GaveUp, RestartPolicy, Supervisor, describe_exit


def test_delay_doubles_per_quick_exit_then_gives_up() -> None:
    policy = RestartPolicy(initial_delay_s=1, max_delay_s=30, stable_after_s=60, max_restarts=5)
    assert [policy.after_exit(0.5) for _ in range(5)] == [1, 2, 4, 8, 16]
    assert policy.after_exit(0.5) is None
    assert policy.streak == 6


def test_delay_is_capped() -> None:
    policy = RestartPolicy(initial_delay_s=1, max_delay_s=30, stable_after_s=60, max_restarts=8)
    assert [policy.after_exit(10) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert policy.after_exit(10) is None


def test_a_child_that_stayed_up_starts_a_new_streak() -> None:
    policy = RestartPolicy(initial_delay_s=1, max_delay_s=30, stable_after_s=60, max_restarts=3)
    assert [policy.after_exit(1) for _ in range(3)] == [1, 2, 4]
    # Uptime at the threshold counts as stable: back to the first delay, and three
    # more restarts before giving up.
    assert policy.after_exit(60) == 1
    assert [policy.after_exit(59.9) for _ in range(2)] == [2, 4]
    assert policy.after_exit(59.9) is None


def test_zero_restarts_gives_up_at_the_first_death() -> None:
    assert RestartPolicy(max_restarts=0).after_exit(1000) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"max_restarts": -1}, {"initial_delay_s": -1}, {"initial_delay_s": 5, "max_delay_s": 1}],
)
def test_policy_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


def test_describe_exit() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _check_until_logged(supervisor: Supervisor, lines: list[str], count: int) -> None:
    deadline = time.monotonic() + 30
    while len(lines) < count:
        assert time.monotonic() < deadline, lines
        supervisor.check()
        time.sleep(0.02)


def _wait_for_file(path: Path) -> str:
    deadline = time.monotonic() + 30
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return path.read_text().strip()


@pytest.fixture
def lines() -> list[str]:
    return []


def test_killed_child_is_restarted_after_its_delay(lines: list[str]) -> None:
    clock = Clock()
    supervisor = Supervisor(RestartPolicy, log=lines.append, clock=clock)
    try:
        child = supervisor.start("sleeper", ["sleep", "300"])
        first_pid = child.pid
        assert first_pid is not None
        supervisor.check()
        assert lines == []

        clock.now += 12.5
        os.kill(first_pid, signal.SIGKILL)
        _check_until_logged(supervisor, lines, 1)
        assert lines == ["sleeper (killed by SIGKILL) after 12.5 s: restarting it in 1 s"]
        clock.now += 0.9
        supervisor.check()
        assert len(lines) == 1 and child.pid == first_pid  # still waiting out the delay

        clock.now += 0.1
        supervisor.check()
        assert child.pid != first_pid and child.pid is not None and _alive(child.pid)
        assert lines[1] == f"sleeper restarted (pid {child.pid})"
    finally:
        supervisor.stop_all()
    assert child.pid is not None and not _alive(child.pid)


def test_crash_looping_child_makes_the_supervisor_give_up(lines: list[str]) -> None:
    clock = Clock()
    supervisor = Supervisor(lambda: RestartPolicy(max_restarts=2), log=lines.append, clock=clock)
    try:
        supervisor.start("broken", [sys.executable, "-c", "raise SystemExit(3)"])
        for delay in (1, 2):
            _check_until_logged(supervisor, lines, len(lines) + 1)
            assert lines[-1] == f"broken (exit code 3) after 0.0 s: restarting it in {delay} s"
            clock.now += delay
            supervisor.check()
            assert lines[-1].startswith("broken restarted (pid ")
        clock.now += 59
        with pytest.raises(GaveUp) as gave_up:
            _check_until_logged(supervisor, lines, len(lines) + 1)
        assert str(gave_up.value) == (
            "broken (exit code 3) after 59.0 s: restarted 2 times in a row, dead within 60 s "
            "each time; giving up"
        )
    finally:
        supervisor.stop_all()


def test_what_a_dead_child_forked_dies_with_it(lines: list[str], tmp_path: Path) -> None:
    # A prefork worker's pool processes outlive a SIGKILLed parent unless killed too.
    grandchild_file = tmp_path / "grandchild"
    clock = Clock()
    supervisor = Supervisor(RestartPolicy, log=lines.append, clock=clock)
    try:
        child = supervisor.start(
            "forker", ["sh", "-c", f"sleep 300 & echo $! > {grandchild_file}; wait"]
        )
        grandchild = int(_wait_for_file(grandchild_file))
        assert _alive(grandchild)
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        _check_until_logged(supervisor, lines, 1)
        deadline = time.monotonic() + 30
        while _alive(grandchild):
            assert time.monotonic() < deadline, "the dead child's own child lives on"
            time.sleep(0.02)
    finally:
        supervisor.stop_all()


def test_stop_all_kills_a_child_that_ignores_sigterm(lines: list[str], tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    supervisor = Supervisor(RestartPolicy, log=lines.append)
    stubborn = supervisor.start(
        "stubborn", ["sh", "-c", f"trap '' TERM; echo $$ > {ready}; while :; do sleep 1; done"]
    )
    polite = supervisor.start("polite", ["sleep", "300"])
    _wait_for_file(ready)
    supervisor.stop_all(timeout_s=0.5)
    for child in (stubborn, polite):
        assert child.process is not None
        assert child.pid is not None and not _alive(child.pid)
    assert stubborn.process is not None and stubborn.process.returncode == -signal.SIGKILL
    assert polite.process is not None and polite.process.returncode == -signal.SIGTERM
    assert lines == []


def test_with_restarts_off_the_first_death_ends_it(lines: list[str]) -> None:
    supervisor = Supervisor(lambda: RestartPolicy(max_restarts=0), log=lines.append)
    try:
        supervisor.start("broken", [sys.executable, "-c", "raise SystemExit(3)"])
        with pytest.raises(
            GaveUp,
            match=r"^broken \(exit code 3\) after [0-9.]+ s: restarts "
            r"are off; giving up$",
        ):
            _check_until_logged(supervisor, lines, 1)
    finally:
        supervisor.stop_all()
    assert lines == []
