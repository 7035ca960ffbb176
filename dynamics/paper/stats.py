"""Statistics behind the claims: slopes of seed-averaged quantities with a paired bootstrap over seeds, the
verdict rule that needs the data to exclude a named alternative, the sample that would decide an
inconclusive claim, the learning-rate optimum by a quadratic fit in log η, the joint finite-size fit
err(n, L) ≈ a·n^−p + b·L^−q, and the slope of limit-run points from their Monte-Carlo errors (mc_slope).
Pure numpy/pandas, no I/O; docs/theory.md §8 says why each is done this way.

Paired bootstrap over seeds: a resample draws seeds with replacement and keeps every row of each drawn seed
(all its widths or depths, and both members of a twin pair), so whatever a seed shares across the sweep
(data order, the task) stays paired and the interval reflects seed-to-seed variation only. The statistic of
a resample is computed on the per-x mean over its seeds, so a quantity that may be negative for one seed
(an excess over chance, a signed gap) is averaged before any logarithm is taken.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

__all__ = ["Interval", "Alternative", "by_seed", "seed_bootstrap", "slope_of_means", "mean_of", "mc_slope",
           "verdict", "seeds_to_decide", "lr_optimum", "joint_power_fit", "joint_fit_surface", "t975"]

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile interval; `dropped`: resamples where the statistic was undefined
    (e.g. a non-positive mean under a logarithm), `seeds`: how many seeds were resampled; `identified` False
    when the data do not pin the statistic down (dynamics.paper.identify), `diagnosis` then says why and which
    design would identify it."""
    value: float
    low: float
    high: float
    seeds: int
    dropped: int = 0
    identified: bool = True
    diagnosis: str = ""

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.value, self.low, self.high))

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


# two-sided 97.5% quantiles of Student's t by degrees of freedom (beyond 30: 1.96 + 2.4/df, within 0.002)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042}


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with df degrees of freedom (table to 30, then 1.96 + 2.4/df)."""
    return _T975.get(df, 1.96 + 2.4 / df)


def small_sample_factor(seeds: int) -> float:
    """Widening of a percentile interval over `seeds` resampled seeds: √(S/(S−1)) undoes the bootstrap's
    (S−1)/S variance, and t_{S−1}/z replaces the normal quantile by Student's (95% level). 1.44 at S = 6,
    1.17 at S = 12; without it a 6-seed interval covers the truth about 83% of the time, not 95%."""
    if seeds < 2:
        return math.nan
    df = seeds - 1
    t = t975(df)
    return math.sqrt(seeds / df) * t / 1.959964


def by_seed(points: pd.DataFrame, x: str | list[str], y: str, seed_col: str = "seed") -> tuple[np.ndarray, list]:
    """Pivot tidy points to an array (seeds, cells) of y (NaN where a seed lacks a cell) and the cells' keys
    (values of x, or tuples of the x columns), sorted."""
    t = points.pivot_table(index=seed_col, columns=x, values=y, aggfunc="mean")
    return t.to_numpy(float, copy=True), list(t.columns)


def seed_bootstrap(table: np.ndarray, stat: Callable[[np.ndarray], float], *, n_boot: int = 2000,
                   rng_seed: int = 0, level: float = LEVEL) -> Interval:
    """stat(table) with a percentile interval over resamples of whole seeds: table is (seeds, ...), a resample
    draws rows with replacement (so every cell of a seed, both members of its twin pair, stays together).
    The interval is widened about the estimate by small_sample_factor(seeds). Resamples whose statistic is
    not finite are dropped and counted; if more than (1 − level)/2 of them are, no interval is given, since
    the dropped ones are exactly the tail it would cut."""
    table = np.asarray(table, float)
    value = float(stat(table))
    S = table.shape[0]
    if S < 2 or n_boot <= 0:
        return Interval(value, math.nan, math.nan, S)
    rng = np.random.default_rng(rng_seed)
    picks = rng.integers(0, S, size=(n_boot, S))
    batch = getattr(stat, "batch", None)  # the same statistic over all resamples at once, where it has one
    with np.errstate(all="ignore"):
        vals = batch(table[picks]) if batch else np.array([stat(table[p]) for p in picks], float)
    good = vals[np.isfinite(vals)]
    dropped = n_boot - len(good)
    a = (1 - level) / 2
    if dropped > a * n_boot or len(good) < 10 or not math.isfinite(value):
        return Interval(value, math.nan, math.nan, S, dropped)
    lo, hi = np.quantile(good, [a, 1 - a])
    c = small_sample_factor(S)
    return Interval(value, float(value - (value - lo) * c), float(value + (hi - value) * c), S, dropped)


def _loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """OLS slope of log y on log x; NaN if fewer than two distinct x or any y ≤ 0."""
    if len(np.unique(x)) < 2 or not np.all(np.isfinite(y)) or np.any(y <= 0):
        return math.nan
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def slope_of_means(xs) -> Callable[[np.ndarray], float]:
    """Statistic on a (seeds, len(xs)) table: the slope of log(mean over seeds) vs log x, i.e. y ∝ x^slope
    fitted on the seed means (a per-seed value may be ≤ 0; the mean must not be)."""
    xs = np.asarray(xs, float)

    def stat(t: np.ndarray) -> float:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # an all-NaN column (diverged runs) -> NaN
            return _loglog_slope(xs, np.nanmean(t, axis=0))

    def batch(ts: np.ndarray) -> np.ndarray:
        """stat of every resample of a (resamples, seeds, len(xs)) stack: the OLS slope in closed form,
        Σ (lx − mean lx)·log m / Σ (lx − mean lx)², NaN where a mean is not finite or ≤ 0."""
        if len(np.unique(xs)) < 2:
            return np.full(len(ts), math.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmean(ts, axis=1)                          # (resamples, len(xs))
            lx = np.log(xs) - np.log(xs).mean()
            out = (np.log(m) * lx).sum(1) / (lx * lx).sum()
        return np.where((np.isfinite(m) & (m > 0)).all(1), out, math.nan)
    stat.batch = batch
    return stat


def mean_of(t: np.ndarray) -> float:
    """Statistic: the mean over seeds and cells of a (seeds, cells) table (e.g. a signed paired gap)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(t))


def mc_slope(x, y, se, *, dof: int | None = None, n_boot: int = 2000, rng_seed: int = 0,
             level: float = LEVEL) -> Interval:
    """Slope of log y vs log x (least squares over the points) for points whose only error is a known
    Monte-Carlo standard error `se` (limit runs: no seeds, no width noise), with a parametric bootstrap:
    each resample draws y* = y + se·ε per point independently (ε standard normal, or Student's t with `dof`
    degrees of freedom when se is itself the spread of dof + 1 replicas) and refits; percentile interval.
    The target is the slope of the noise-free curve over these x, so the interval holds Monte-Carlo error
    only (no curvature term: the x are fixed, not sampled). Resamples with some y* ≤ 0 are dropped and counted;
    more than (1 − level)/2 of them: no interval. `seeds` is 0 (seeds_to_decide does not apply)."""
    value, slopes = mc_slope_draws(x, y, se, dof=dof, n_boot=n_boot, rng_seed=rng_seed)
    return percentile_interval(value, slopes, level=level)


def mc_slope_draws(x, y, se, *, dof: int | None = None, n_boot: int = 2000, rng_seed: int = 0
                   ) -> tuple[float, np.ndarray]:
    """(slope, its n_boot parametric-bootstrap draws) of mc_slope; a draw is NaN where some y* ≤ 0, and all are
    NaN when the slope or the stderrs are not usable."""
    x, y, se = (np.asarray(v, float) for v in (x, y, se))
    value = _loglog_slope(x, y)
    if not math.isfinite(value) or not np.all(np.isfinite(se)) or np.any(se < 0) or n_boot <= 0:
        return value, np.full(max(n_boot, 0), math.nan)
    rng = np.random.default_rng(rng_seed)
    eps = rng.standard_normal((n_boot, len(x))) if dof is None else rng.standard_t(dof, (n_boot, len(x)))
    ys = y[None, :] + se[None, :] * eps
    ok = np.all(ys > 0, axis=1)
    lx = np.log(x) - np.log(x).mean()
    with np.errstate(all="ignore"):
        ly = np.log(np.where(ys > 0, ys, np.nan))
    slopes = ((ly - ly.mean(axis=1, keepdims=True)) * lx).sum(axis=1) / (lx ** 2).sum()
    return value, np.where(ok, slopes, math.nan)


def percentile_interval(value: float, draws: np.ndarray, *, level: float = LEVEL) -> Interval:
    """The percentile interval of parametric draws (no seeds: `seeds` 0); NaN draws are dropped and counted, and
    more than (1 − level)/2 of them, or fewer than 10 left, give no interval."""
    good = draws[np.isfinite(draws)]
    dropped = len(draws) - len(good)
    a = (1 - level) / 2
    if dropped > a * len(draws) or len(good) < 10 or not math.isfinite(value):
        return Interval(value, math.nan, math.nan, 0, dropped)
    lo, hi = np.quantile(good, [a, 1 - a])
    return Interval(value, float(lo), float(hi), 0, dropped)


@dataclass(frozen=True)
class Alternative:
    """What the paper's value is tested against: a value (or a half-line) the data must exclude."""
    value: float
    words: str
    side: str = "point"   # point: the value itself; 'le': everything ≤ value; 'ge': everything ≥ value

    def excluded_by(self, ci: Interval) -> bool:
        if self.side == "le":
            return ci.low > self.value
        if self.side == "ge":
            return ci.high < self.value
        return not (ci.low <= self.value <= ci.high)


def verdict(ci: Interval, paper: tuple[float, float], alt: Alternative, *, tol: float = 0.0,
            shown: str | None = None) -> tuple[str, str]:
    """The rule of every claim. paper = [lo, hi]: the values the paper's statement allows (a rate r is [r, r];
    'vanishes' is (−∞, 0)). `agrees` only if the interval (widened by tol, for exact noise-free points
    whose spread is the next-order term) meets the paper's set AND excludes the alternative; `disagrees`
    if it misses the paper's set; otherwise `inconclusive`, with the sample that would decide it. `shown`: the
    paper's set in words (default: read from the numbers)."""
    if not ci.finite:
        why = (f"no confidence interval: {ci.dropped} bootstrap resamples had no defined statistic (more than "
               "2.5%: e.g. a mean ≤ 0 under a logarithm, an optimum off the fitted range, a fitted term of 0)"
               if ci.dropped else "no confidence interval (too few seeds or distinct values)")
        return "inconclusive", why
    lo, hi = ci.low - tol, ci.high + tol
    meets = lo <= paper[1] and hi >= paper[0]
    shown = shown or _fmt_set(paper)
    if not meets:
        return "disagrees", f"the 95% interval [{ci.low:.3g}, {ci.high:.3g}] excludes the paper's {shown}"
    wide = Interval(ci.value, lo, hi, ci.seeds)
    if alt.excluded_by(wide):
        return "agrees", (f"the 95% interval [{ci.low:.3g}, {ci.high:.3g}] holds the paper's {shown} and excludes "
                          f"the alternative ({alt.words})")
    need = seeds_to_decide(ci, paper, alt)
    more = f"; about {need} seeds (now {ci.seeds}) would decide it if the estimate stays at {ci.value:.3g}" \
        if need else ""
    return "inconclusive", (f"the 95% interval [{ci.low:.3g}, {ci.high:.3g}] holds both the paper's {shown} and "
                            f"the alternative ({alt.words}){more}")


def _fmt_set(s: tuple[float, float]) -> str:
    if s[0] == s[1]:
        return f"value {s[0]:g}"
    if s[0] == -math.inf:
        return f"range (< {s[1]:g})"
    if s[1] == math.inf:
        return f"range (≥ {s[0]:g})"
    return f"range [{s[0]:g}, {s[1]:g}]"


def seeds_to_decide(ci: Interval, paper: tuple[float, float], alt: Alternative) -> int | None:
    """Seeds needed so that an interval centred on the same estimate, with half-width shrinking like
    1/√seeds, excludes whichever of the paper's set and the alternative lies farther from the estimate
    (the nearer one cannot be excluded if the estimate stays). None when the estimate sits on the
    alternative (no sample size excludes it) or the interval is undefined."""
    if not ci.finite or ci.seeds < 2:
        return None
    m, h = ci.value, ci.half_width
    d_alt = abs(m - alt.value)
    d_paper = 0.0 if paper[0] <= m <= paper[1] else min(abs(m - paper[0]), abs(m - paper[1]))
    d = max(d_alt, d_paper)
    if d <= 1e-12 * max(1.0, abs(m)) or h <= 0:
        return None
    return max(ci.seeds + 1, math.ceil(ci.seeds * (h / d) ** 2))


def lr_optimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """log-η optimum by a quadratic fit of log loss vs log η through the grid minimum and its two neighbours
    on each side (fewer at the ends of the grid): η* = exp(−b/2a) of log loss ≈ a(log η)² + b log η + c.
    NaN when the fit is not convex or its vertex lies outside the fitted points (the optimum is off the grid
    or the curve is flat there); non-finite losses (divergence) are left out of the fit."""
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)
    order = np.argsort(lrs)
    lx, ly = np.log(lrs[order]), losses[order]
    ok = np.isfinite(ly) & (ly > 0)
    lx, ly = lx[ok], np.log(ly[ok])
    if len(lx) < 3:
        return math.nan
    i = int(np.argmin(ly))
    lo, hi = max(0, i - 2), min(len(lx), i + 3)
    if hi - lo < 3:
        return math.nan
    a, b, _ = np.polyfit(lx[lo:hi], ly[lo:hi], 2)
    if a <= 0:
        return math.nan
    v = -b / (2 * a)
    if not (lx[lo] <= v <= lx[hi - 1]):
        return math.nan
    return float(math.exp(v))


def joint_power_fit(n: np.ndarray, L: np.ndarray, err: np.ndarray, *, grid: np.ndarray | None = None
                    ) -> tuple[float, float, float, float]:
    """Fit err ≈ a·n^−p + b·L^−q (a, b ≥ 0) by least squares on log err: for each (p, q) on a grid, a and b
    solve the linear least squares of the relative error Σ (1 − (a n^−p + b L^−q)/err)² (closed form, clipped
    at 0), and the (p, q) with the smallest Σ (log err − log fit)² wins. Returns (p, q, a, b)."""
    grid, sse, a, b = joint_fit_surface(n, L, err, grid=grid)
    G = len(grid)
    k = int(np.argmin(sse))
    return float(grid[k // G]), float(grid[k % G]), float(a[k]), float(b[k])


def joint_fit_surface(n: np.ndarray, L: np.ndarray, err: np.ndarray, *, grid: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The whole grid search of joint_power_fit: (grid, sse, a, b), each of the last three flat over the (p, q)
    combos in meshgrid 'ij' order (combo k = (grid[k // G], grid[k % G])), so sse.reshape(G, G).min(0) is the
    profile over q (dynamics.paper.identify)."""
    n, L, err = (np.asarray(v, float) for v in (n, L, err))
    ok = np.isfinite(err) & (err > 0)
    n, L, err = n[ok], L[ok], err[ok]
    grid = np.linspace(0.0, 3.0, 121) if grid is None else np.asarray(grid, float)
    G = len(grid)
    A = n[None, :] ** -grid[:, None] / err[None, :]        # (G, points): n^−p/err, per p only
    B = L[None, :] ** -grid[:, None] / err[None, :]        # L^−q/err, per q only
    s11, t1 = np.repeat((A * A).sum(1), G), np.repeat(A.sum(1), G)
    s22, t2 = np.tile((B * B).sum(1), G), np.tile(B.sum(1), G)
    s12 = (A[:, None, :] * B[None, :, :]).sum(2).ravel()
    det = s11 * s22 - s12 ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(det > 1e-300, (s22 * t1 - s12 * t2) / det, 0.0)
        b = np.where(det > 1e-300, (s11 * t2 - s12 * t1) / det, 0.0)
        # a negative coefficient: refit with that term dropped
        neg_a, neg_b = a < 0, b < 0
        a = np.where(neg_a, 0.0, np.where(neg_b, t1 / s11, a))
        b = np.where(neg_b, 0.0, np.where(neg_a, t2 / s22, b))
    a, b = np.maximum(a, 0), np.maximum(b, 0)
    fit = (a.reshape(G, G, 1) * (A * err)[:, None, :] + b.reshape(G, G, 1) * (B * err)[None, :, :]).reshape(G * G, -1)
    with np.errstate(divide="ignore"):
        sse = ((np.log(err)[None, :] - np.log(np.maximum(fit, 1e-300))) ** 2).sum(1)
    return grid, sse, a, b
