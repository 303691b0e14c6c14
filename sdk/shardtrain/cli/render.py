"""How objects are shown: rich tables for `--output table`, plain JSON for `--output json`
(printed without rich, so a script can parse stdout)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import typer
from pydantic import BaseModel
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.table import Table

from shardtrain.cli.context import Output, refuse_ids
from shardtrain.cli.sparkline import sparkline
from shardtrain.models import (
    BatchPrediction,
    Comparison,
    Dataset,
    Event,
    Gate,
    Job,
    Model,
    Prediction,
    RoundMetrics,
    Sweep,
    SweepEvent,
    SweepTrial,
)
from shardtrain.spec import InitFrom, JobSpec


def console() -> Console:
    # Names, messages and values come from users: `[/b]` in a dataset name must print
    # as itself, not be read as rich markup (which would raise or swallow text).
    return Console(markup=False)


def emit_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, dict):
        data = value
    else:
        data = [item.model_dump(mode="json") for item in value]
    typer.echo(json.dumps(data, indent=2))


def emit_ids(value: BaseModel | Sequence[BaseModel]) -> None:
    items = [value] if isinstance(value, BaseModel) else list(value)
    ids = [getattr(item, "id", None) for item in items]
    if None in ids:
        refuse_ids(Output.id, "this command")
    for object_id in ids:
        typer.echo(object_id)


def show(output: Output, value: BaseModel | Sequence[BaseModel], *views: RenderableType) -> None:
    """`value` as JSON for scripts, its id for shell variables, or the views (tables,
    lines) for people."""
    if output is Output.json:
        emit_json(value)
        return
    if output is Output.id:
        emit_ids(value)
        return
    out = console()
    for view in views:
        out.print(view)


def emit_json_line(value: BaseModel) -> None:
    typer.echo(value.model_dump_json())


def when(timestamp: int | None, *, seconds: bool = True) -> str:
    if timestamp is None:
        return ""
    pattern = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(timestamp).strftime(pattern)


def _width(width: int | None) -> int:
    return console().width if width is None else width


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    return str(value)


def _fields(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    # As wide as the title at least, so `batch prediction bp_…` is not split over lines.
    table = Table(title=title, show_header=False, title_justify="left", min_width=cell_len(title))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, "" if value is None else str(value))
    return table


def list_table(*columns: str, wraps: str = "") -> Table:
    """Every cell on one line, ids and timestamps above all (ids are what a user copies);
    only the `wraps` column (free text) folds when the terminal is narrow."""
    table = Table(box=None, padding=(0, 2, 0, 0), pad_edge=False, header_style="bold")
    for name in columns:
        if name == wraps:
            table.add_column(name, overflow="fold", ratio=1)
        else:
            # ds_/job_/mdl_ and 24 hex characters: at most 28.
            width = 28 if name.endswith("id") else None
            table.add_column(name, no_wrap=True, min_width=width)
    return table


# The widths under which a list leaves out its less important columns (still in `show`
# and `--output json`) instead of cutting every cell to `suc…` in an 80-column terminal.
DATASETS_WIDE = 100
JOBS_WIDE = 110
MODELS_WIDE = 120


def pinned(table: Table) -> Table:
    """Every one-line column at least as wide as its widest cell: rich would otherwise
    shrink them all to fit a narrow terminal, cutting `succeeded` to `suc…`."""
    for column in table.columns:
        if column.no_wrap:
            column.min_width = max(cell_len(str(c)) for c in [column.header, *column.cells])
    return table


def dataset_table(datasets: Iterable[Dataset], width: int | None = None) -> Table:
    if _width(width) >= DATASETS_WIDE:
        table = list_table(
            "id", "name", "format", "status", "rows", "bytes", "created", wraps="name"
        )
        for d in datasets:
            table.add_row(
                d.id, d.name, d.format, d.status, number(d.rows), str(d.bytes), when(d.created_at)
            )
        return pinned(table)
    table = list_table("id", "name", "status", "rows", "created", wraps="name")
    for d in datasets:
        table.add_row(d.id, d.name, d.status, number(d.rows), when(d.created_at, seconds=False))
    return pinned(table)


def dataset_detail(d: Dataset) -> list[Table]:
    tables = [
        _fields(
            f"dataset {d.id}",
            [("name", d.name), ("format", d.format), ("status", d.status), ("rows", d.rows),
             ("bytes", d.bytes), ("sha256", d.sha256),
             *([("source", d.source_url)] if d.source_url else []), ("error", d.error),
             ("created", when(d.created_at))],
        )
    ]  # fmt: skip
    if d.columns:
        columns = Table("column", "dtype", "missing", title="columns", title_justify="left")
        for c in d.columns:
            columns.add_row(c.name, c.dtype, str(c.missing))
        tables.append(columns)
    return tables


def records_table(records: Sequence[dict[str, Any]]) -> Table:
    names: list[str] = []
    for record in records:
        names.extend(k for k in record if k not in names)
    table = Table(*names)
    for record in records:
        table.add_row(*("" if record.get(n) is None else str(record[n]) for n in names))
    return table


def _losses(job: Job) -> str:
    metrics = job.metrics or {}
    return " ".join(f"{k}={number(metrics[k])}" for k in ("train_loss", "val_loss") if k in metrics)


def job_table(jobs: Iterable[Job], width: int | None = None) -> Table:
    wide = _width(width) >= JOBS_WIDE
    # Narrow: the model id is left to `jobs show` and `models list --job`.
    names = ("id", "status", "target", "rounds", "model id", "created")
    table = list_table(*(n for n in names if wide or n != "model id"), wraps="target")
    for j in jobs:
        rounds = f"{j.progress.round}/{j.progress.rounds}"
        created = when(j.created_at, seconds=wide)
        model = (j.model_id or "",) if wide else ()
        table.add_row(j.id, j.status, j.spec.target, rounds, *model, created)
    return pinned(table)


def _warm_start(j: Job) -> list[tuple[str, Any]]:
    """`init from` with the model a warm start resolved to, and what the spec named."""
    if j.init_model_id is None:
        return []
    init = j.spec.init_from
    named = init.model if isinstance(init, InitFrom) else None
    shown = j.init_model_id if named in (None, j.init_model_id) else f"{j.init_model_id} ({named})"
    return [("init from", shown)]


def job_detail(j: Job) -> Table:
    metrics = ", ".join(f"{k}={number(v)}" for k, v in (j.metrics or {}).items())
    error = f"{j.error.code}: {j.error.message}" if j.error else None
    return _fields(
        f"job {j.id}",
        [("status", j.status), ("task", j.task), ("dataset", j.spec.dataset_id),
         ("target", j.spec.target), ("model", j.spec.model.type), *_warm_start(j),
         *([("sweep", j.sweep_id)] if j.sweep_id else []),
         ("progress", f"{j.progress.round}/{j.progress.rounds} rounds"), ("metrics", metrics),
         ("model id", j.model_id), ("error", error), ("created", when(j.created_at)),
         ("started", when(j.started_at)), ("finished", when(j.finished_at))],
    )  # fmt: skip


def event_row(table: Table, e: Event | SweepEvent) -> None:
    table.add_row(when(e.created_at), e.type, e.level, e.message)


def event_line(e: Event | SweepEvent) -> str:
    line = f"{when(e.created_at)}  {e.type:<16} {e.level:<7} {e.message}"
    losses = [f"{k}={number(e.data[k])}" for k in ("train_loss", "val_loss") if k in e.data]
    return f"{line}  {' '.join(losses)}" if losses else line


def event_table() -> Table:
    return list_table("time", "type", "level", "message", wraps="message")


def show_events(output: Output, stream: Iterable[Event | SweepEvent], *, follow: bool) -> None:
    """A job's or a sweep's events: one JSON object a line, one id a line, or a table."""
    if output is Output.json:
        for event in stream:
            emit_json_line(event)
        return
    if output is Output.id:
        for event in stream:
            typer.echo(event.id)
        return
    if not follow:
        table = event_table()
        for event in stream:
            event_row(table, event)
        console().print(pinned(table))
        return
    # Followed events are printed as they arrive, one line each (a table would have to
    # wait for the last one).
    out = console()
    for event in stream:
        out.print(event_line(event), highlight=False, soft_wrap=True)


def metrics_table(rounds: Sequence[RoundMetrics]) -> Table:
    """One row per round; the caption draws the loss columns as sparklines."""
    names: list[str] = []
    for r in rounds:
        names.extend(k for k in r.val_metrics if k not in names)
    # Borderless like the lists: with a box, eight columns no longer fit 80 columns.
    table = list_table("round", "train loss", "val loss", *names, "shards", "seconds")
    for r in rounds:
        table.add_row(
            str(r.round), number(r.train_loss), number(r.val_loss),
            *(number(r.val_metrics.get(n)) for n in names),
            f"{len(r.shards) - len(r.excluded_shards)}/{len(r.shards)}", number(r.seconds, 2),
        )  # fmt: skip
    lines = []
    for label, series in (
        ("train loss", [r.train_loss for r in rounds]),
        ("val loss", [r.val_loss for r in rounds]),
    ):
        if any(v is not None for v in series):
            present = [v for v in series if v is not None]
            span = f"{number(present[0])} → {number(present[-1])}"
            lines.append(f"{label:<10} {sparkline(series)}  {span}")
    table.caption = "\n".join(lines)
    table.caption_justify = "left"
    return pinned(table)


def model_table(models: Iterable[Model], width: int | None = None) -> Table:
    wide = _width(width) >= MODELS_WIDE
    if wide:
        table = list_table("id", "status", "type", "target", "metrics", "created", wraps="metrics")
    else:
        # Narrow: the type and target are left to `models show`; one metric a line, so
        # none is split.
        table = list_table("id", "status", "metrics", "created", wraps="metrics")
    longest = 0
    for m in models:
        pairs = [f"{k}={number(v, 3)}" for k, v in m.metrics.items()]
        longest = max([longest, *map(len, pairs)])
        created = when(m.created_at, seconds=wide)
        if wide:
            table.add_row(m.id, m.status, m.type, m.target, " ".join(pairs), created)
        else:
            table.add_row(m.id, m.status, "\n".join(pairs), created)
    # A ratio column may shrink below its longest word; a metric must stay on one line.
    table.columns[-2].min_width = longest
    return pinned(table)


def gate_text(g: Gate) -> str:
    """`accuracy ≥ 0.9 beats champion by 0.005: 0.93 (passed)`, and why it failed."""
    bounds = [f"{k} {number(v)}" for k, v in (("≥", g.min), ("≤", g.max)) if v is not None]
    if g.beats:
        bounds.append(f"beats {g.beats}" + (f" by {number(g.by)}" if g.by else ""))
    verdict = "passed" if g.passed else "failed"
    text = f"{g.metric} {' '.join(bounds)}: {number(g.value)} ({verdict})"
    return f"{text}: {g.reason}" if g.reason else text


def comparison_text(c: Comparison) -> str:
    """The champion gate's verdict and the server's account of it (scores, rows)."""
    return f"{'promoted' if c.passed else 'not promoted'}: {c.reason}"


def model_detail(m: Model) -> list[Table]:
    gate = None if m.gate is None else gate_text(m.gate)
    comparison = [("comparison", comparison_text(m.comparison))] if m.comparison else []
    detail = _fields(
        f"model {m.id}",
        [("status", m.status), ("type", m.type), ("task", m.task), ("job", m.job_id),
         ("target", m.target), ("classes", m.classes),
         ("metrics", ", ".join(f"{k}={number(v)}" for k, v in m.metrics.items())),
         ("gate", gate), *comparison, ("created", when(m.created_at))],
    )  # fmt: skip
    if m.feature_importance is None:
        features = Table("feature", "dtype", title="features", title_justify="left")
        for f in m.features:
            features.add_row(f.name, f.dtype)
        return [detail, features]
    dtypes = {f.name: f.dtype for f in m.features}
    total = sum(row.gain for row in m.feature_importance) or 1.0
    features = Table(
        "feature", "dtype", "gain", "share", "splits", title="features by importance",
        title_justify="left",
    )  # fmt: skip
    for row in m.feature_importance:
        features.add_row(
            row.feature, dtypes.get(row.feature, ""), number(row.gain),
            f"{row.gain / total:.1%}", str(row.split),
        )  # fmt: skip
    return [detail, features]


def batch_detail(b: BatchPrediction) -> Table:
    return _fields(
        f"batch prediction {b.id}",
        [("status", b.status), ("model", b.model_id), ("dataset", b.dataset_id),
         ("rows", b.rows), ("error", b.error), ("created", when(b.created_at)),
         ("finished", when(b.finished_at))],
    )  # fmt: skip


def prediction_table(p: Prediction) -> Table:
    classes: list[str] = list(p.probabilities[0]) if p.probabilities else []
    table = Table("row", "prediction", *(f"p({c})" for c in classes))
    for i, predicted in enumerate(p.predictions):
        probabilities = p.probabilities[i] if p.probabilities else {}
        table.add_row(str(i), number(predicted), *(number(probabilities.get(c)) for c in classes))
    return table


def job_summary(j: Job) -> str:
    losses = _losses(j)
    return f"{j.id} {j.status}" + (f" ({losses})" if losses else "")


# Sweeps: the list, one sweep, its trials (also the live view of `sweeps create --wait`).
# Under this width the list leaves out the metric, the model id and the folds' deviation
# of the best score (all in `sweeps show`), and shows dates to the minute.
SWEEPS_WIDE = 130
# A param line longer than this folds (a whole `model` block drawn by a choice).
PARAM_WIDTH = 40


def param_value(value: Any) -> str:
    """A drawn value: a float to 4 significant digits, a list or block as compact JSON."""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def params_text(params: dict[str, Any], sep: str = "\n") -> str:
    return sep.join(f"{k}={param_value(v)}" for k, v in params.items())


def score_text(score: float | None, std: float | None) -> str:
    """`0.9667`, or `0.9667 ± 0.0120` with cross-validation."""
    if score is None:
        return ""
    return number(score) if std is None else f"{number(score)} ± {number(std)}"


def _trials_done(s: Sweep) -> str:
    ended = sum(t.state != "running" for t in s.trials)
    return f"{ended}/{max(s.spec.max_trials, len(s.trials))}"


def sweep_table(sweeps: Iterable[Sweep], width: int | None = None) -> Table:
    wide = _width(width) >= SWEEPS_WIDE
    names = ("id", "status", "metric", "trials", "best", "model id", "created")
    table = list_table(*(n for n in names if wide or n not in ("metric", "model id")))
    for s in sweeps:
        best = s.best_trial
        score = "" if best is None else score_text(best.score, best.score_std if wide else None)
        if wide:
            table.add_row(
                s.id, s.status, s.metric, _trials_done(s), score, s.model_id or "",
                when(s.created_at),
            )  # fmt: skip
        else:
            table.add_row(s.id, s.status, _trials_done(s), score, when(s.created_at, seconds=False))
    return pinned(table)


def trials_table(trials: Sequence[SweepTrial]) -> Table:
    """One row per trial: its number, state, score (± the folds' deviation), the values
    drawn (one a line) and its seconds."""
    table = list_table("trial", "state", "score", "params", "seconds", wraps="params")
    longest = 0
    for t in trials:
        params = params_text(t.params)
        longest = max([longest, *map(len, params.splitlines())])
        table.add_row(
            str(t.number), t.state, score_text(t.score, t.score_std), params, number(t.seconds, 2)
        )
    table.columns[3].min_width = min(longest, PARAM_WIDTH)
    return pinned(table)


def _counts(s: Sweep) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in s.counts.items() if n)
    return f"{_trials_done(s)} ended" + (f" ({counts})" if counts else "")


def best_text(s: Sweep) -> str | None:
    """`trial 2: accuracy 0.9667 ± 0.0120`; None before any trial is done."""
    best = s.best_trial
    if best is None:
        return None
    return f"trial {best.number}: {s.metric} {score_text(best.score, best.score_std)}"


def sweep_detail(s: Sweep) -> list[RenderableType]:
    template = s.spec.template
    dataset = template.dataset_id if isinstance(template, JobSpec) else None
    error = f"{s.error.code}: {s.error.message}" if s.error else None
    best = s.best_trial
    detail = _fields(
        f"sweep {s.id}",
        [("status", s.status), ("task", s.task), ("dataset", dataset),
         ("metric", f"{s.metric} ({s.direction})"), ("trials", _counts(s)),
         ("best trial", best_text(s)),
         ("best params", None if best is None else params_text(best.params, ", ")),
         ("final job", s.final_job_id), ("model id", s.model_id), ("error", error),
         ("created", when(s.created_at)), ("finished", when(s.finished_at))],
    )  # fmt: skip
    return [detail, trials_table(s.trials)] if s.trials else [detail, "no trials yet"]


def sweep_result(s: Sweep) -> str:
    """The line `sweeps wait` ends with: the best trial and the sweep's model."""
    best = best_text(s)
    line = f"{s.id} {s.status}: " + (f"best {best}" if best else "no trial done")
    return f"{line}; model {s.model_id}" if s.model_id else line


def sweep_live(s: Sweep, height: int | None = None) -> Group:
    """What `sweeps create --wait` redraws on stderr after each poll: a line with the
    status and the best trial, and the latest trials that fit in `height` lines."""
    best = best_text(s)
    head = f"{s.id} {s.status}  {_trials_done(s)} trials" + (f"  best {best}" if best else "")
    shown: list[SweepTrial] = []
    room = None if height is None else height - 3  # the head line, the header, a margin
    for trial in reversed(s.trials):
        lines = max(1, len(trial.params))
        if room is not None and shown and lines > room:
            break
        shown.insert(0, trial)
        room = None if room is None else room - lines
    if len(shown) < len(s.trials):
        head += f"  (the last {len(shown)} shown)"
    return Group(head, trials_table(shown))
