"""Fitted rates with honest uncertainty: log-log slopes with bootstrap confidence intervals.

Used by the experiments (summary.parquet), the reproduce command and the Scaling page, so one fit serves
every place a rate is quoted. Pure numpy; no files.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LogLogFit", "fit_loglog"]


@dataclass(frozen=True)
class LogLogFit:
    slope: float          # least-squares slope of log y on log x
    ci_low: float         # bootstrap percentile interval of the slope
    ci_high: float
    intercept: float      # log y at log x = 0
    n_points: int

    def contains(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high


def fit_loglog(x, y, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> LogLogFit:
    """Slope of log y = a + b log x by least squares, with a percentile bootstrap over points.

    x, y: 1-D arrays of equal length, y > 0, at least two distinct x. Repeated x (several seeds per x) are
    kept as separate points, so the bootstrap resamples seeds as well as x. Resamples with fewer than two
    distinct x are redrawn. Raises ValueError on non-positive or non-finite input.
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError("fit_loglog needs x and y of equal length ≥ 2")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0) and np.all(y > 0)):
        raise ValueError("fit_loglog needs finite, positive x and y")
    lx, ly = np.log(x), np.log(y)
    if np.unique(lx).size < 2:
        raise ValueError("fit_loglog needs at least two distinct x")
    slope, intercept = np.polyfit(lx, ly, 1)
    rng = np.random.default_rng(seed)
    slopes = []
    while len(slopes) < n_boot:
        idx = rng.integers(0, x.size, size=(n_boot, x.size))
        ok = np.array([np.unique(lx[i]).size >= 2 for i in idx])
        for i in idx[ok]:
            bx, by = lx[i], ly[i]
            bxc = bx - bx.mean()
            slopes.append(float((bxc * (by - by.mean())).sum() / (bxc ** 2).sum()))
    slopes = np.array(slopes[:n_boot])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(slopes, [alpha, 1 - alpha])
    return LogLogFit(float(slope), float(lo), float(hi), float(intercept), int(x.size))
