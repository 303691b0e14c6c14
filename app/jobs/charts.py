"""Loss curves as a PNG: a pure function of the rounds' numbers, no SQL and no HTTP."""

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

# The object API with the Agg canvas, never pyplot: pyplot keeps global figure state,
# which concurrent requests in the API's thread pool would share.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


@dataclass(frozen=True)
class LossPoint:
    round: int
    train_loss: float | None
    val_loss: float | None


def _series(points: Sequence[LossPoint], attr: str) -> tuple[list[int], list[float]]:
    # A round without a value (no validation split, every shard excluded) or with a
    # non-finite one (a diverged round) leaves a gap rather than breaking the axis scale.
    pairs = [
        (p.round, value)
        for p in points
        if (value := getattr(p, attr)) is not None and math.isfinite(value)
    ]
    return [r for r, _ in pairs], [v for _, v in pairs]


def render_loss_chart(
    points: Sequence[LossPoint], *, title: str, width_px: int = 800, height_px: int = 450
) -> bytes:
    """Train and validation loss per round, as PNG bytes; a note when there is nothing yet."""
    dpi = 100
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel("round")
    axes.set_ylabel("loss")
    drawn = False
    for attr, label, style in (
        ("train_loss", "train", "o-"),
        ("val_loss", "validation", "s--"),
    ):
        rounds, values = _series(points, attr)
        if rounds:
            axes.plot(rounds, values, style, label=label, markersize=3)
            drawn = True
    if drawn:
        axes.legend()
        axes.grid(True, alpha=0.3)
        # Rounds are whole numbers: no tick at round 2.5.
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        note = "no rounds yet" if not points else "no finite loss recorded"
        axes.text(0.5, 0.5, note, ha="center", va="center", transform=axes.transAxes, fontsize=14)
        axes.set_xticks([])
        axes.set_yticks([])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
