"""After a task, a worker hands back what Arrow's pool and the C allocator kept: an idle
worker must not sit on the memory of the last large ingest or sharding."""

import json
import subprocess
import sys
from pathlib import Path

from dbsetup import ROOT

CHILD = """
import json, sys
import numpy as np, psutil, pyarrow as pa, pyarrow.csv as pacsv
from workers.memory import release_memory
process = psutil.Process()
rss = lambda: process.memory_info().rss
table = pa.table({f"x{i}": np.random.default_rng(i).random(300_000) for i in range(20)})
pacsv.write_csv(table, sys.argv[1])
del table
before = rss()
table = pacsv.read_csv(sys.argv[1])
copies = [np.array(column) for column in table.columns]
del table, copies
freed = rss()
release_memory()
print(json.dumps({"before": before, "freed": freed, "released": rss()}))
"""


def test_release_memory_returns_what_a_large_read_kept(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "data.csv")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rss = json.loads(done.stdout)
    mb = 1024 * 1024
    # Arrow's pool keeps freed buffers: without the release, freeing gives nothing back.
    assert rss["freed"] - rss["before"] > 40 * mb, rss
    assert rss["released"] < rss["freed"] - 40 * mb, rss


def test_every_worker_process_releases_after_each_task() -> None:
    from celery.signals import task_postrun

    import workers.tasks  # noqa: F401  (what a worker imports)
    from workers import memory

    receivers = [ref() for _, ref in task_postrun.receivers]
    assert memory._after_task in receivers
