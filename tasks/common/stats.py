"""Distribution statistics shared by the balancing and mixing steps."""

from __future__ import annotations

import numpy as np


def gini(values) -> float:
    """Gini coefficient of non-negative counts (0 = perfectly even; 0 for an empty or all-zero input)."""
    x = np.sort(np.asarray(list(values), dtype=np.float64))
    if len(x) == 0 or x.sum() <= 0:
        return 0.0
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))
