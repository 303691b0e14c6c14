"""The start-up sweep: remove what killed processes left in blob storage.

A process killed mid-write leaves a temporary file; an API killed between storing an
upload and committing its row leaves a dataset folder with no row; an ingest whose
commit was lost to a database outage leaves a Parquet file beside a dataset that later
failed; a delete whose removal never ran leaves the bytes of a deleted dataset. None of
these is ever read again, and each was found still on disk after restarts, so every
API and worker process sweeps them when it starts.

What may still be in use is left alone: a temporary file whose writer is alive (see
`app.storage.temp_files`), and a folder with no row yet whose files changed within
`grace_s`, which is what an upload streaming in another API process looks like.
"""

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.datasets.repository import DatasetRepository
from app.db import make_engine, session_scope
from app.storage import BlobStore, keys
from app.tables.statuses import DatasetStatus
from app.tenancy.scope import SYSTEM

logger = logging.getLogger(__name__)

_BATCH = 500


@dataclass
class SweepReport:
    temp_files: int = 0
    folders: int = 0
    parquet_files: int = 0


def sweep_orphans(
    sessions: sessionmaker[Session], store: BlobStore, *, grace_s: float, now: float | None = None
) -> SweepReport:
    now = time.time() if now is None else now
    report = SweepReport()
    folders = store.children("datasets")
    for start in range(0, len(folders), _BATCH):
        batch = folders[start : start + _BATCH]
        with session_scope(sessions) as session:
            states = DatasetRepository(session, SYSTEM).states(batch)
        for dataset_id in batch:
            state = states.get(dataset_id)
            if state is None:
                written = store.last_written(
                    keys.dataset_prefix(dataset_id), grace_s=grace_s, now=now
                )
                if now - written > grace_s:
                    store.delete_prefix(keys.dataset_prefix(dataset_id))
                    report.folders += 1
            elif state[1] is not None:  # deleted; its removal after the commit never ran
                store.delete_prefix(keys.dataset_prefix(dataset_id))
                report.folders += 1
            elif state[0] == DatasetStatus.FAILED and store.exists(keys.dataset_table(dataset_id)):
                store.delete(keys.dataset_table(dataset_id))
                report.parquet_files += 1
    # After the folders: removing a file touches its folder, which would then look fresh.
    report.temp_files = len(store.sweep_temp_files(grace_s=grace_s))
    return report


def sweep_in_background(database_url: str, store: BlobStore, grace_s: float) -> None:
    """Sweep without delaying the start: a large store takes a while to walk, and a
    database that is down now only means the folders wait for the next start.

    The sweep has an engine of its own, disposed of when it ends: a Celery worker forks
    new pool processes from the process that sweeps, and a child must never inherit a
    pooled connection its parent also uses."""

    def sweep() -> None:
        engine = make_engine(database_url)
        try:
            report = sweep_orphans(sessionmaker(engine), store, grace_s=grace_s)
        except Exception:  # a failed sweep must never take the process down
            logger.warning("start-up sweep of orphaned files failed", exc_info=True)
            return
        finally:
            engine.dispose()
        if report.temp_files or report.folders or report.parquet_files:
            logger.info(
                "start-up sweep removed %s temporary file(s), %s dataset folder(s) and "
                "%s Parquet file(s) of failed datasets",
                report.temp_files,
                report.folders,
                report.parquet_files,
            )

    threading.Thread(target=sweep, name="shardtrain-orphan-sweep", daemon=True).start()
