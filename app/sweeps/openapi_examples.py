"""The error examples of the sweeps' operations in the OpenAPI document: each one an
error the operation does return (tests/api/test_openapi_examples_api.py checks it)."""

_SWEEP_ID = "swp_5e4d3c2b1a0f9e8d7c6b5a49"
_DATASET_ID = "ds_4f1c2a9b8e7d6c5b4a3f2e1d"
_NO_SWEEP = ("not_found", f"No sweep with id {_SWEEP_ID!r}.", "id")

SWEEP_ERROR_EXAMPLES: dict[tuple[str, int], tuple[str, str, str | None]] = {
    ("sweeps-create", 404): (
        "not_found",
        f"No dataset with id {_DATASET_ID!r}.",
        "template.dataset_id",
    ),
    ("sweeps-create", 409): (
        "dataset_not_ready",
        f"Dataset {_DATASET_ID} is processing; a sweep starts on a ready dataset (its "
        "trials are checked against the columns).",
        "template.dataset_id",
    ),
    ("sweeps-create", 422): (
        "invalid_sweep",
        "training.seed decides the data every trial shares (or is the sweep's own): set it "
        "in the template; a sweep varies model, training and distribution settings",
        "space.training.seed",
    ),
    ("sweeps-create", 429): (
        "quota_exceeded",
        "This account already has 2 unfinished jobs and 4 held by running sweeps; with 4 "
        "more it would pass its max_running_jobs of 8. Wait for one to end or cancel one.",
        None,
    ),
    ("sweeps-get", 404): _NO_SWEEP,
    ("sweeps-trials", 404): _NO_SWEEP,
    ("sweeps-events", 404): _NO_SWEEP,
    ("sweeps-trials-chart", 404): _NO_SWEEP,
    ("sweeps-cancel", 404): _NO_SWEEP,
    ("sweeps-cancel", 409): (
        "sweep_finished",
        f"Sweep {_SWEEP_ID} already succeeded; it cannot be cancelled.",
        "id",
    ),
}
