"""Means over seeds with a confidence interval, and a verdict: what every comparison in the docs
states (one seed is an anecdote)."""

from __future__ import annotations

import math
import statistics

# Two-sided 95% quantiles of Student's t by degrees of freedom (seeds - 1); 1.96 beyond the table.
T_95 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
    21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
}  # fmt: skip


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


def seeds_needed(variance: float, half_width: float, most: int = 1000) -> int | None:
    """The fewest seeds (at least 2) whose mean, of values with this ``variance``, has a 95%
    t-interval of half-width at most ``half_width``; None beyond ``most``."""
    for seeds in range(2, most + 1):
        if T_95.get(seeds - 1, 1.96) * math.sqrt(variance / seeds) <= half_width:
            return seeds
    return None


def paired_problem_variance(a: list[float], b: list[float]) -> float:
    """The variance, over the draw of the problems, of the mean of ``a[i] - b[i]`` (two models'
    per-problem scores on the same problems): var(a - b) / problems."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"paired per-problem scores need as many of each, at least 2, got {len(a)} and {len(b)}")
    return statistics.variance([x - y for x, y in zip(a, b, strict=True)]) / len(a)
