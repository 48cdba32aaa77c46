"""What the figures share: matplotlib without a display, and running means."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # never needs a display
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["np", "plt", "running_mean"]


def running_mean(values: list[float], window: int) -> np.ndarray:
    """Means of ``window`` consecutive values (``len(values) - window + 1`` of them)."""
    values = np.asarray(values, dtype=float)
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")
