"""Accuracy of the federated core against scikit-learn on the same splits.

Run from the repository root:

    .venv/bin/python bench/accuracy.py            # full run, about 5 minutes on 2 cores
    .venv/bin/python bench/accuracy.py --quick    # 2 seeds, no 200k dataset, < 1 minute

For every dataset and seed the rows are split with the service's own
``assign_rows`` (holdout 0.2, no validation split), features are standardized
with the training rows' mean and standard deviation, and both sides fit the same
L2-regularized objective on the same training rows:

* ours: :func:`app.training.federated.fit_federated` (``train_local`` on every
  shard, then ``merge_results("fedavg")``, round after round), at 1, 4 and 8 shards;
* scikit-learn: ``LogisticRegression`` (lbfgs, C=1) or ``Ridge`` (alpha=1) on
  all training rows.

Scores are on the 20 % holdout. Both sides run with the same number of threads
and are timed the same way (``time.perf_counter`` around the fit only; ours is
the sum over all shards run one after another, i.e. total compute, not the wall
time of a parallel job).

The experiments are ``accuracy_linear.py`` (the main tables), ``accuracy_mlp.py``
and ``accuracy_skew.py`` (label-skewed shards), over ``accuracy_harness.py``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch
from accuracy_harness import HOLDOUT_FRACTION, bundled
from accuracy_linear import DATASETS, Row, print_header, run_table
from accuracy_mlp import run_mlp
from accuracy_skew import NON_IID_SETTINGS, run_non_iid
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from threadpoolctl import threadpool_limits

from app.training.federated import fit_federated
from app.training.loop import TrainConfig
from app.training.networks import NetworkConfig


def warm_up() -> None:
    """Pay torch's and scikit-learn's one-time costs before anything is timed."""
    x, y = bundled(load_iris)()
    config = NetworkConfig("logistic_regression", x.shape[1], 3)
    train = TrainConfig(task="classification", optimizer="sgd", batch_size=32)
    fit_federated(config, [(x.astype(np.float32), y.astype(np.float32))], train, rounds=2, seed=0)
    LogisticRegression(max_iter=10_000).fit(x, y)
    Ridge().fit(x, y)


def summarize(label: str, rows: list[Row]) -> tuple[float, float]:
    classification = [row.gap for row in rows if row.task == "classification"]
    regression = [row.gap for row in rows if row.task == "regression"]
    mean_gap = float(np.mean(classification)) if classification else math.nan
    worst_r2 = max(regression) if regression else math.nan
    if classification:
        print(
            f"{label}: mean classification gap {mean_gap:+.3f} pp "
            f"(mean |gap| {np.mean(np.abs(classification)):.3f} pp, "
            f"worst {max(classification):+.3f} pp, {len(classification)} rows)"
        )
    if regression:
        print(f"{label}: worst R² gap {worst_r2:+.4f} ({len(regression)} rows)")
    return mean_gap, worst_r2


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, skip the 200k table")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument(
        "--only", nargs="+", metavar="DATASET", help="run only these datasets' tables"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    datasets = [d for d in DATASETS if not (args.quick and d.name.endswith("200k"))]
    if args.only:
        datasets = [d for d in DATASETS if d.name in args.only]
    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, {args.threads} thread(s) for torch and BLAS; "
        f"seeds {seeds}; holdout {HOLDOUT_FRACTION}; mean ± sd over seeds; "
        "gap = scikit-learn - ours (pp of accuracy, or R²)\n"
    )
    with threadpool_limits(limits=args.threads):
        warm_up()
        print_header()
        rows = run_table(datasets, seeds)
        minibatch_rows: list[Row] = []
        if not args.quick:
            print(
                "\nThe same with minibatch local SGD (several local steps per round, so the "
                "shards drift apart between merges); not used for the targets:\n"
            )
            print_header()
            minibatch_rows = run_table(datasets, seeds, minibatch=True)
        mlp = {} if args.only else run_mlp(seeds[:1] if args.quick else seeds)
        if not args.only:
            run_non_iid(
                seeds[:1] if args.quick else seeds[:3],
                NON_IID_SETTINGS[:1] if args.quick else NON_IID_SETTINGS,
                iid_rounds=100,
                max_rounds=100 if args.quick else 200,
            )

    print()
    mean_gap, worst_r2 = summarize("main table", rows)
    if minibatch_rows:
        summarize("minibatch table", minibatch_rows)
    if not math.isnan(mean_gap):
        print(f"target mean classification gap <= 0.5 pp: {_verdict(mean_gap <= 0.5)}")
    if not math.isnan(worst_r2):
        print(f"target R² gap <= 0.02: {_verdict(worst_r2 <= 0.02)}")
    if mlp:
        worst_mlp = min(float(np.mean(scores)) for scores in mlp.values())
        note = " [--quick: one seed, indicative only]" if args.quick else ""
        print(
            f"target MLP digits >= 0.97 at every shard count: {_verdict(worst_mlp >= 0.97)} "
            f"(lowest mean {worst_mlp:.4f}){note}"
        )
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
