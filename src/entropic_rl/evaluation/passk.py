"""pass@k, avg@N and pass@N from N sampled answers per problem (ALGORITHMS.md §4).

The unbiased pass@k estimator (Chen et al., 2021) is 1 − C(n−c, k)/C(n, k): the chance that k answers drawn without
replacement from the n sampled ones include a correct one. The binomials overflow floats for n in the hundreds, so
it is computed as the telescoped product 1 − ∏_{i=n−c+1}^{n} (1 − k/i), whose terms all lie in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``c`` correct answers among ``n`` samples, 1 ≤ k ≤ n."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"pass_at_k: {name} must be an int, got {value!r}")
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got k={k}")
    if k > n:
        raise ValueError(f"pass_at_k: k={k} > n={n}; pass@k needs at least k samples")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c={c} must lie in [0, n={n}]")
    if n - c < k:  # every k-subset holds a correct answer; also keeps the product below from hitting 1 − k/i < 0
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def ks_up_to(n: int) -> list[int]:
    """The k to report for n samples: 1, 2, 4, … up to n, and n itself when it is not a power of two."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"ks_up_to: n must be an int >= 1, got {n!r}")
    ks = [1 << p for p in range(n.bit_length()) if 1 << p <= n]
    if ks[-1] != n:
        ks.append(n)
    return ks


def summarize(counts: Sequence[int], n: int, ks: Sequence[int] | None = None) -> dict[str, float]:
    """avg@N, pass@k for each k and pass@N over problems, from the number of correct answers among
    ``n`` samples of each problem. ``ks`` defaults to ``ks_up_to(n)``. Returns ``{"avg@N": …,
    "pass@1": …, "pass@2": …, …, "pass@N": …}``; avg@N is the sampled pass@1 (mean of c/N) and
    pass@N the fraction of problems with at least one correct answer.
    """
    if len(counts) == 0:
        raise ValueError("summarize: no problems given")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"summarize: n must be an int >= 1, got {n!r}")
    if bad := [c for c in counts if not 0 <= c <= n]:
        raise ValueError(f"summarize: counts must lie in [0, n={n}], got {bad[:5]}")
    ks = ks_up_to(n) if ks is None else sorted(set(ks))
    problems = len(counts)
    result = {f"avg@{n}": sum(c / n for c in counts) / problems}
    for k in ks:
        result[f"pass@{k}"] = sum(pass_at_k(n, c, k) for c in counts) / problems
    # pass@N is pass@k at k = N; written from its definition so it is exact, and present whatever ks holds.
    result[f"pass@{n}"] = sum(c >= 1 for c in counts) / problems
    return result
