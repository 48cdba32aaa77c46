"""Means over seeds with a confidence interval, and a verdict: what every comparison in the docs
states (one seed is an anecdote)."""

from __future__ import annotations

import math
import statistics

# Two-sided 95% quantiles of Student's t by degrees of freedom (seeds - 1); 1.96 beyond the table.
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def mean_ci(values: list[float]) -> tuple[float, float]:
    """The mean and the half-width of its 95% t-interval (nan for one value)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return values[0], math.nan
    half = T_95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return statistics.fmean(values), half


def below_verdict(values: list[float], bound: float) -> str:
    """``held`` when the 95% interval of the mean lies below ``bound``, ``not held`` when above,
    else ``not distinguishable`` (also with fewer than two values)."""
    mean, half = mean_ci(values)
    if math.isnan(half):
        return "not distinguishable"
    if mean + half < bound:
        return "held"
    if mean - half > bound:
        return "not held"
    return "not distinguishable"


def format_ci(values: list[float], percent: bool = False) -> str:
    """``mean ± half-width`` (``mean`` alone for one value, ``-`` for none)."""
    mean, half = mean_ci(values)
    if math.isnan(mean):
        return "-"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    text = f"{mean * scale:.3g}{unit}" if not percent else f"{mean * scale:.1f}{unit}"
    if not math.isnan(half):
        text += f" ± {half * scale:.1f}{unit}" if percent else f" ± {half * scale:.2g}"
    return text


def difference_verdict(a: list[float], b: list[float]) -> tuple[float, float, str]:
    """Paired by seed: the mean of ``a[i] - b[i]``, the half-width of its 95% interval, and
    ``higher`` when the interval lies above 0, ``lower`` when below, else ``not distinguishable``."""
    if len(a) != len(b):
        raise ValueError(f"paired values need as many of each, got {len(a)} and {len(b)}")
    mean, half = mean_ci([x - y for x, y in zip(a, b, strict=True)])
    if math.isnan(half) or abs(mean) <= half:
        return mean, half, "not distinguishable"
    return mean, half, "higher" if mean > 0 else "lower"
