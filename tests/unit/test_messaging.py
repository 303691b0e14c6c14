"""The Celery wiring lives on the app side: every task name is declared once, routed,
and registered by the worker, and the API is built without importing `workers`."""

import json
import subprocess
import sys
from pathlib import Path

from app.config import Settings
from app.dispatch import Dispatcher, shard_task_id
from app.messaging import QUEUES, TASK_ROUTES, Queue, TaskName, create_celery

ROOT = Path(__file__).resolve().parents[2]


def test_every_task_is_routed_to_a_known_queue() -> None:
    assert sorted(TASK_ROUTES) == sorted(name.value for name in TaskName)
    assert {route["queue"] for route in TASK_ROUTES.values()} <= set(QUEUES)
    assert QUEUES == ("ingest", "train", "train_gpu", "merge")


def test_the_worker_registers_every_task_name_and_only_those() -> None:
    from workers.celery_app import celery_app

    celery_app.loader.import_default_modules()
    ours = {name for name in celery_app.tasks if name.startswith("shardtrain.")}
    assert ours == {name.value for name in TaskName}
    assert {type(name) for name in ours} == {str}


def test_a_rounds_chord_names_its_tasks_and_queue_as_plain_strings(tmp_path: Path) -> None:
    # An enum member here once made Celery read its `.name` ("MERGE_ROUND") as the
    # task, so no merge was ever sent; the chord is built, not sent, so no broker is used.
    dispatcher = Dispatcher(create_celery(Settings(data_dir=tmp_path)))
    for device, queue in (("auto", "train"), ("cuda", "train_gpu")):
        chord = dispatcher.round_chord("job_x", 2, 3, device, attempt=1)
        header, body = list(chord.tasks), chord.body
        assert [type(s.task) for s in [*header, body]] == [str] * 4
        assert [s.task for s in header] == ["shardtrain.train_shard"] * 3
        assert body.task == "shardtrain.merge_round" and body.args == ("job_x", 2)
        assert {type(s.options["queue"]) for s in header} == {str}
        assert {s.options["queue"] for s in header} == {queue}
        assert [s.id for s in header] == [shard_task_id("job_x", 2, s, 1) for s in range(3)]


def test_beat_sends_only_declared_tasks(tmp_path: Path) -> None:
    app = create_celery(Settings(data_dir=tmp_path))
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert scheduled == {TaskName.WATCHDOG, TaskName.RELAY_OUTBOX}
    assert app.conf.task_default_queue == Queue.MERGE


def test_building_the_api_imports_no_worker_module(tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "from app.config import Settings\n"
        "from app.main import create_app\n"
        f"create_app(Settings(data_dir={str(tmp_path)!r}))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr[-3000:]
    modules = json.loads(child.stdout.strip().splitlines()[-1])
    assert "app.main" in modules and "app.messaging" in modules
    assert [m for m in modules if m == "workers" or m.startswith("workers.")] == []
