"""A one-line chart of a series in unicode blocks, lowest value ▁, highest █."""

from __future__ import annotations

import math
from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """One block per value, scaled between the series' min and max; a missing or
    non-finite value is a space, and a flat series sits on the lowest block."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    span = high - low
    chars = []
    for value in values:
        if value is None or not math.isfinite(value):
            chars.append(" ")
        elif span == 0:
            chars.append(BLOCKS[0])
        else:
            chars.append(BLOCKS[round((value - low) / span * (len(BLOCKS) - 1))])
    return "".join(chars)
