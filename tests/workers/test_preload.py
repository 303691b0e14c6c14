"""A worker's parent imports what torch.optim would otherwise import on a pool
process's first training step, so that the first job of each process does not pay it."""

import json
import subprocess
import sys

from celery.signals import worker_init
from dbsetup import ROOT

from workers import process_signals

CHILD = """
import json, sys
import torch
from app.training.loop import _make_optimizer
if sys.argv[1] == "preload":
    from workers.preload import preload_optimizer_stack
    preload_optimizer_stack()
before = set(sys.modules)
for name in ("sgd", "momentum", "adam"):
    model = torch.nn.Linear(4, 2)
    optimizer = _make_optimizer(name, list(model.parameters()), 0.1)
    model(torch.ones(3, 4)).sum().backward()
    optimizer.step()
print(json.dumps(sorted(set(sys.modules) - before)))
"""
HEAVY = ("torch._dynamo", "torch._inductor", "sympy")


def _imported_by_first_steps(mode: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] == "sympy" or m.startswith(HEAVY)]


def test_without_the_preload_the_first_optimizer_step_imports_the_compiler_stack() -> None:
    # If a torch release stops doing this, the preload is dead weight: remove it.
    assert _heavy(_imported_by_first_steps("cold"))


def test_after_the_preload_the_first_steps_import_none_of_it() -> None:
    assert _heavy(_imported_by_first_steps("preload")) == []


def test_the_preload_runs_in_the_worker_parent_before_the_pool_forks() -> None:
    receivers = [ref() for _key, ref in worker_init.receivers]
    assert process_signals._preload in receivers
