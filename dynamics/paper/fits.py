"""Rates from runs: log-log power-law fits with bootstrap confidence intervals, and the finite-vs-limit error
of a depth profile. Pure numpy/pandas (no Streamlit, no I/O); the Limit and Scaling pages and the tests
call these.

The theory's rates (docs/theory.md §3, §7): finite width vs the width limit O(1/n) for averages over seeds,
finite depth vs the continuum O(1/L); so error ∝ n^−1 and ∝ L^−1, slope −1 on log-log axes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from typing import NamedTuple

__all__ = ["LogLogFit", "fit_loglog", "fit_groups", "profile_error", "THEORY_SLOPE"]


class LogLogFit(NamedTuple):
    """A fitted slope and its bootstrap interval; unpacks as (slope, ci_low, ci_high)."""
    slope: float
    ci_low: float
    ci_high: float

    def contains(self, value: float) -> bool:
        """Whether value lies in the interval (False when the interval is undefined)."""
        return bool(self.ci_low <= value <= self.ci_high)

THEORY_SLOPE = {"width": -1.0, "depth": -1.0}  # error ∝ 1/n and ∝ 1/L


def _ols(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float]:
    """Least-squares line ly = a + b·lx -> (b, a)."""
    b, a = np.polyfit(lx, ly, 1)
    return float(b), float(a)


def fit_loglog(x, y, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> LogLogFit:
    """Fit y = C·x^slope by least squares on (log x, log y); return (slope, ci_low, ci_high).

    The interval is the percentile bootstrap over points (resample the (x, y) pairs with replacement,
    refit; resamples with a single distinct x are skipped). Points with non-positive or non-finite x or y
    are dropped. Fewer than two distinct x give NaNs; exactly two give the slope with a NaN interval
    (every resample is either degenerate or the same line).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    if len(np.unique(lx)) < 2:
        return LogLogFit(float("nan"), float("nan"), float("nan"))
    slope, _ = _ols(lx, ly)
    if len(np.unique(lx)) < 3 or n_boot <= 0:
        return LogLogFit(slope, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(lx), size=(n_boot, len(lx)))
    bx, by = lx[idx], ly[idx]                                   # (n_boot, points)
    mx, my = bx.mean(axis=1, keepdims=True), by.mean(axis=1, keepdims=True)
    sxx = ((bx - mx) ** 2).sum(axis=1)
    good = sxx > 1e-12 * max(1.0, float(np.ptp(lx)) ** 2)
    slopes = ((bx - mx) * (by - my)).sum(axis=1)[good] / sxx[good]
    if len(slopes) < 10:
        return LogLogFit(slope, float("nan"), float("nan"))
    a = (1 - level) / 2
    lo, hi = np.quantile(slopes, [a, 1 - a])
    return LogLogFit(slope, float(lo), float(hi))


def fit_groups(df: pd.DataFrame, x: str, y: str, by: str | None, n_boot: int = 1000,
               seed: int = 0) -> pd.DataFrame:
    """fit_loglog per group of `by` (or over all rows): columns by, points, slope, ci_low, ci_high,
    intercept (log-space, so the fitted line is exp(intercept)·x^slope)."""
    rows = []
    groups = df.groupby(by, sort=True) if by else [(None, df)]
    for key, part in groups:
        slope, lo, hi = fit_loglog(part[x], part[y], n_boot=n_boot, seed=seed)
        ok = (part[x] > 0) & (part[y] > 0)
        intercept = float(np.mean(np.log(part[y][ok])) - slope * np.mean(np.log(part[x][ok]))) \
            if np.isfinite(slope) else float("nan")
        rows.append({by or "group": key, "points": int(ok.sum()), "slope": slope, "ci_low": lo, "ci_high": hi,
                     "intercept": intercept})
    return pd.DataFrame(rows)


def profile_error(tau: np.ndarray, value: np.ndarray, ref_tau: np.ndarray, ref_value: np.ndarray) -> float:
    """Root-mean-square over the finite run's layers of value(τ_ℓ) − ref(τ_ℓ), the reference (a limit run
    on its own depth grid) linearly interpolated to τ_ℓ = ℓ/L. NaN when either side has no finite values."""
    tau, value = np.asarray(tau, float), np.asarray(value, float)
    ref_tau, ref_value = np.asarray(ref_tau, float), np.asarray(ref_value, float)
    ok = np.isfinite(ref_value)
    if not ok.any() or not np.isfinite(value).any():
        return float("nan")
    order = np.argsort(ref_tau[ok])
    ref = np.interp(tau, ref_tau[ok][order], ref_value[ok][order])
    diff = (value - ref)[np.isfinite(value)]
    return float(np.sqrt(np.mean(diff ** 2)))
