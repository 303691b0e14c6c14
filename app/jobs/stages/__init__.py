"""A job's worker stages, one module each, named after what they do: `prepare`
(shards and round 0), `train` (one shard in one round), `merge` (a round's merge and
decision), `finalize` (score, write the artifact, register); `next_step` is what a
stage sends once its transaction has committed.

Each stage is an idempotent function of ids: it re-reads state, skips work already
done, and writes by key. The Celery tasks in `workers/tasks.py` are thin wrappers that
run each SQL step in a short session of its own."""
