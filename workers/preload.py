"""What a worker process would otherwise import during its first training task,
imported once in the parent before the prefork pool forks its processes.

torch imports its compiler stack (torch._dynamo and sympy, about 800 modules) the
first time any optimizer is built or stepped, even with nothing compiled: 1.0-1.3 s
here, and it was most of a fresh worker's first job (training 2.4 s against 0.6 s
once warm). Imported in the parent, every pool process inherits it, and a replaced
process (after a crash or `max_tasks_per_child`) does not pay it again."""

import importlib

# Modules torch.optim imports lazily on first use.
OPTIMIZER_STACK = ("torch._dynamo",)


def preload_optimizer_stack() -> None:
    for name in OPTIMIZER_STACK:
        importlib.import_module(name)
