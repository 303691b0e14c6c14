"""The README's tour, run as a newcomer runs it, against the live system: every
`console` block (iris.csv, the CLI, curl) and the SDK's `python` block, in order, in
one directory that holds `.shardtrain/dev-api-key` and a `.venv` as `make run`'s
checkout does, with no SHARDTRAIN_* variable but the port. What each command prints
must match what the README shows (tests/readme_tour.py says how loosely), and each
must exit 0: a README that drifts from the product fails here.

With SHARDTRAIN_README_RECORD=FILE, what every step printed is also written there,
to paste into the README after a deliberate change."""

import os
import sys
from pathlib import Path

import pytest
from dbsetup import ROOT, issue_key
from e2e_system import System
from readme_tour import Block, Ran, matches, parse, run_console, run_python

pytestmark = pytest.mark.e2e

# Wide enough that no detail table of the tour wraps a cell; the README was printed so.
COLUMNS = "100"


def tour_env(system: System) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDTRAIN_")}
    venv = Path(sys.prefix)
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        SHARDTRAIN_PORT=system.base_url.rsplit(":", 1)[1],
        COLUMNS=COLUMNS,
    )
    return env


def _report(block: Block, ran: Ran) -> str:
    shown = "\n".join(ran.step.expected)
    return (
        f"README block at line {block.line}, command:\n{ran.step.command}\n"
        f"exit {ran.returncode}; printed:\n{ran.printed}\nthe README shows:\n{shown}"
    )


def test_the_readme_tour_prints_what_the_readme_shows(system: System, tmp_path: Path) -> None:
    blocks = parse((ROOT / "README.md").read_text())
    assert [b.kind for b in blocks] == ["console", "console", "python", "console"], blocks
    (tmp_path / ".venv").symlink_to(sys.prefix)
    (tmp_path / ".shardtrain").mkdir()
    key = issue_key(system.processes.env["SHARDTRAIN_DATABASE_URL"], "readme-tour")
    (tmp_path / ".shardtrain" / "dev-api-key").write_text(key + "\n")
    env = tour_env(system)
    port = env["SHARDTRAIN_PORT"]

    results: list[tuple[Block, Ran]] = []
    for block in blocks:
        for step in block.steps:
            step.command = step.command.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        if block.kind == "console":
            results += [(block, ran) for ran in run_console(block, tmp_path, env, timeout=300)]
        else:
            results.append((block, run_python(block, tmp_path, env, timeout=300)))

    record = os.environ.get("SHARDTRAIN_README_RECORD")
    if record:
        Path(record).write_text(
            "\n".join(f"$ {ran.step.command}\n{ran.printed.strip()}" for _, ran in results)
        )
    for block, ran in results:
        assert ran.returncode == 0, _report(block, ran)
        assert matches(ran.step.expected, ran.printed), _report(block, ran)
    # What the tour leaves behind is real: the SDK's download and curl's loss chart.
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(tmp_path.glob("mdl_*.safetensors"))) == 1
