"""Is a fitted exponent identified by the data? The joint finite-size fit err ≈ a·n^−p + b·L^−q (stats.joint_power_fit)
with its profile interval and the bootstrap diagnostics that say when the design cannot separate the two terms
(docs/theory.md §8).

Interval: the profile over the exponent, the least squared log residual over every other parameter at each grid
value, kept where it stays below SSE_min·(1 + F/(N − 4)) with F = t²_{N−4} (the 95% F(1, N − 4) quantile; N seed-mean
cells, 4 fitted parameters); each end is interpolated between the last grid value inside and the first outside, so
the interval holds its estimate strictly inside unless the profile is flat up to the end of the search grid, and
then the fit is not identified. The profile treats the cells as independent; what a seed shares across its cells
(its data, its teacher) is in the seed bootstrap, so the claim's interval is the hull of the two (the bootstrap's
percentile interval widened by stats.small_sample_factor, as every seed interval is): it is never narrower than
either, and never ends on its estimate.

Not identified when any of these holds: the term is fitted as 0 at the estimate; its profile interval reaches the
end of the grid (the data allow any exponent beyond it: the other term absorbs it); in more than 2.5% of seed
resamples the term is fitted as 0 or its exponent lands on the grid's end; the resamples' percentile interval
ends on the estimate at one side only (they pile on one grid value; both ends on it is a spread finer than the
grid, and the profile interval then gives its width). The diagnosis says which, and what design would identify it:
widths large enough that the width floor falls below the depth term at the largest depth (or the floor measured on
its own, e.g. the width-extrapolated limit at each depth), and more seeds.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from . import stats as S

TAIL = 0.025  # a diagnostic fires when more than this share of the resamples shows it


def profile_bounds(grid: np.ndarray, prof: np.ndarray, threshold: float) -> tuple[float, float, bool]:
    """(lo, hi, open) of {g : prof(g) ≤ threshold} around the minimum, each end linearly interpolated between the
    last grid value inside and the first outside; `open` when the set reaches an end of the grid."""
    k = int(np.argmin(prof))
    i = k
    while i > 0 and prof[i - 1] <= threshold:
        i -= 1
    j = k
    while j < len(grid) - 1 and prof[j + 1] <= threshold:
        j += 1

    def cross(inside: int, outside: int) -> float:
        f0, f1 = prof[inside], prof[outside]
        w = (threshold - f0) / (f1 - f0) if f1 > f0 else 0.5
        return float(grid[inside] + w * (grid[outside] - grid[inside]))
    lo = float(grid[0]) if i == 0 else cross(i, i - 1)
    hi = float(grid[-1]) if j == len(grid) - 1 else cross(j, j + 1)
    return lo, hi, i == 0 or j == len(grid) - 1


def joint_interval(n, L, table: np.ndarray, term: str, *, n_boot: int = 400, rng_seed: int = 0) -> S.Interval:
    """−p (term 'width') or −q ('depth') of the joint fit of the seed means of a (seeds, cells) table of errors
    (cells at widths n and depths L), with its profile interval and the identification diagnostics of the module
    docstring; not identified -> Interval.identified False and the diagnosis in words."""
    n, L, table = np.asarray(n, float), np.asarray(L, float), np.asarray(table, float)
    seeds = table.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(table, axis=0)
    ok = np.isfinite(m) & (m > 0)
    grid, sse, a, b = S.joint_fit_surface(n, L, m)
    G, N = len(grid), int(ok.sum())
    k = int(np.argmin(sse))
    ip, iq = k // G, k % G
    idx, coef = (ip, a[k]) if term == "width" else (iq, b[k])
    if N <= 5:
        return S.Interval(math.nan, math.nan, math.nan, seeds, identified=False,
                          diagnosis=f"{N} cells for 4 parameters; a widths × depths grid of at least 3 × 3")
    if coef <= 0:
        return S.Interval(math.nan, math.nan, math.nan, seeds, identified=False, diagnosis=(
            f"the {term} term is fitted as 0, so its exponent is undefined; " + _design(n, L, a[k], b[k], grid[ip],
                                                                                     grid[iq], seeds)))
    surf = sse.reshape(G, G)
    prof = surf.min(axis=1) if term == "width" else surf.min(axis=0)
    dof = N - 4
    lo_e, hi_e, open_ = profile_bounds(grid, prof, float(sse[k]) * (1 + S.t975(dof) ** 2 / dof))
    value = -float(grid[idx])
    problems = []
    if open_:
        problems.append(f"its profile interval reaches the end of the search grid ({term} exponent "
                        f"{grid[0]:g}…{grid[-1]:g}): the other term absorbs any larger change")
    zero, edge, lo_b, hi_b = _resamples(n, L, table, term, grid, n_boot, rng_seed)
    if zero > TAIL:
        problems.append(f"the {term} term is fitted as 0 in {zero:.0%} of seed resamples")
    if edge > TAIL:
        problems.append(f"its exponent lands on the grid's end in {edge:.0%} of seed resamples")
    if math.isfinite(lo_b) and (math.isclose(lo_b, value, abs_tol=1e-12) != math.isclose(hi_b, value, abs_tol=1e-12)):
        problems.append(f"the resamples' percentile interval [{lo_b:.3g}, {hi_b:.3g}] ends on the estimate "
                        f"{value:.3g} (they pile on one grid value)")
    diagnosis = "; ".join(problems)
    if problems:
        diagnosis += "; " + _design(n, L, a[k], b[k], grid[ip], grid[iq], seeds)
    low, high = -hi_e + 0.0, -lo_e + 0.0
    if math.isfinite(lo_b):  # the hull with the seed bootstrap's interval (widened as stats.seed_bootstrap's):
        c = S.small_sample_factor(seeds)  # the profile sees the cells' scatter, not what a seed shares across them
        low, high = min(low, value - (value - lo_b) * c), max(high, value + (hi_b - value) * c)
    return S.Interval(value, low, high, seeds, dropped=int(round(zero * n_boot)), identified=not problems,
                      diagnosis=diagnosis)


def _resamples(n, L, table, term, grid, n_boot, rng_seed) -> tuple[float, float, float, float]:
    """(share with the term fitted as 0, share with its exponent on the grid's end, percentile 2.5%, 97.5% of
    −exponent over the resamples where the term is present) over seed resamples of the table."""
    S_ = table.shape[0]
    if S_ < 2:
        return 0.0, 0.0, math.nan, math.nan
    rng = np.random.default_rng(rng_seed)
    zero = edge = 0
    vals = []
    for pick in rng.integers(0, S_, size=(n_boot, S_)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p, q, a, b = S.joint_power_fit(n, L, np.nanmean(table[pick], axis=0), grid=grid)
        e, c = (p, a) if term == "width" else (q, b)
        if c <= 0:
            zero += 1
            continue
        edge += e in (grid[0], grid[-1])
        vals.append(-e)
    lo, hi = np.quantile(vals, [TAIL, 1 - TAIL]) if len(vals) >= 10 else (math.nan, math.nan)
    return zero / n_boot, edge / n_boot, float(lo), float(hi)


def _design(n, L, a: float, b: float, p: float, q: float, seeds: int) -> str:
    """The design that would identify the fit: the width at which the fitted floor a·n^−p falls below the fitted
    depth term b·L^−q at the largest depth, and more seeds."""
    nmax, Lmax = float(np.max(n)), float(np.max(L))
    floor, depth = a * nmax ** -p, b * Lmax ** -q
    if a <= 0 or b <= 0 or p <= 0:
        need = ("measure the width floor on its own (the width-extrapolated limit at each depth, docs/theory.md "
                "§6) and fit the depth term to what is left")
    elif floor <= depth:
        need = (f"the fitted floor ({floor:.2g} at n = {nmax:g}) is already below the depth term ({depth:.2g} at "
                f"L = {Lmax:g}): more depths")
    else:
        width = nmax * (floor / depth) ** (1 / p)
        need = (f"the fitted width floor ({floor:.2g} at n = {nmax:g}) is {floor / depth:.2g}× the depth term "
                f"({depth:.2g} at L = {Lmax:g}); widths beyond about {width:.3g} put it below, or measure it on its "
                "own (the width-extrapolated limit at each depth, docs/theory.md §6)")
    return f"design that would identify it: {need}, with more seeds than {seeds}"
