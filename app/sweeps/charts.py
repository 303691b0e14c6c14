"""A sweep's trials as a PNG: score against trial number with the best so far, and
the parameter importances beside it. A pure function of the numbers."""

import io
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_STYLE = {"done": ("o", "tab:blue"), "pruned": ("x", "tab:orange"), "failed": ("v", "tab:red")}


@dataclass(frozen=True)
class TrialPoint:
    number: int
    state: str
    # A done trial's; pruned and failed ones have none and are marked along the bottom.
    score: float | None
    score_std: float | None = None


def render_trials_chart(
    points: Sequence[TrialPoint],
    importances: dict[str, float] | None,
    *,
    title: str,
    metric: str,
    maximize: bool,
    width_px: int = 1000,
    height_px: int = 450,
) -> bytes:
    dpi = 100
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    scores, ranks = figure.subplots(1, 2, width_ratios=[3, 2])
    figure.suptitle(title)
    _draw_scores(scores, points, metric, maximize)
    _draw_importances(ranks, importances)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw_scores(axes: Axes, points: Sequence[TrialPoint], metric: str, maximize: bool) -> None:
    axes.set_xlabel("trial")
    axes.set_ylabel(f"validation {metric}")
    done = sorted((p for p in points if p.state == "done" and p.score is not None),
                  key=lambda p: p.number)  # fmt: skip
    if not done:
        axes.text(0.5, 0.5, "no trial done yet", ha="center", va="center",
                  transform=axes.transAxes, fontsize=14)  # fmt: skip
        axes.set_xticks([])
        axes.set_yticks([])
        return
    axes.errorbar(
        [p.number for p in done],
        [p.score or 0.0 for p in done],
        yerr=[p.score_std or 0.0 for p in done],
        fmt="o",
        color=_STYLE["done"][1],
        label="done",
        markersize=5,
        capsize=3,
    )
    best: list[float] = []
    for p in done:
        assert p.score is not None
        best.append(p.score if not best else (max if maximize else min)(best[-1], p.score))
    axes.step([p.number for p in done], best, where="post", color="tab:green", label="best so far")
    low = min(p.score for p in done if p.score is not None)
    for state in ("pruned", "failed"):
        ended = [p.number for p in points if p.state == state]
        if ended:
            marker, color = _STYLE[state]
            axes.plot(ended, [low] * len(ended), marker, color=color, label=state, linestyle="")
    axes.legend()
    axes.grid(True, alpha=0.3)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_importances(axes: Axes, importances: dict[str, float] | None) -> None:
    axes.set_title("parameter importance (fANOVA)")
    if not importances:
        axes.text(0.5, 0.5, "needs 3 done trials\nthat differ", ha="center", va="center",
                  transform=axes.transAxes, fontsize=12)  # fmt: skip
        axes.set_xticks([])
        axes.set_yticks([])
        return
    names = list(importances)[::-1]
    axes.barh(names, [importances[n] for n in names], color="tab:purple")
    axes.set_xlim(0, 1)
    axes.set_xlabel("share of the score's variance")
