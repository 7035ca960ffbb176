"""The coordinate check's statistics: per (metric, layer τ, step) the log-log slope of the seed means against
width or depth, its seed-bootstrap interval, and the judgement against the Θ(1) of depth-μP. Pure numpy/pandas.

Every judged metric is normalised to be Θ(1) in n and L under depth-μP (docs/theory.md §2): the squared norms
h_sq, phi_sq, g_sq, the movements h_move, g_move and the per-step change h_step (feature learning survives
both limits, step by step), diversity and a_move. A row's statistic is the slope b of log(mean over seeds) against log x (x = width or depth),
fitted with `dynamics.paper.stats.slope_of_means` and resampled by whole seeds (`seed_bootstrap`, whose
95% interval is widened for few seeds, docs/theory.md §8). The judgement needs the interval to decide:

    flat          the whole interval lies in [−tol, tol]: it excludes every slope |b| ≥ tol
    grows/shrinks the whole interval lies beyond tol (or −tol): it excludes Θ(1)
    inconclusive  the interval straddles ±tol, or there is none (too few seeds or rungs)

The tolerance (TOLERANCE = 1/2) is the midpoint between Θ(1) and the smallest departure a wrong multiplier
makes: every metric here is a squared coordinate size, a multiplier off by √n (sp's 1/√n readout and its
un-scaled learning rate, which leave the features moving like n^−1/2) or √L (mup's branch β instead of β/√L)
turns into a slope of ±1, so an interval inside [−1/2, 1/2] excludes those alternatives and one outside it
excludes Θ(1). The finite-size corrections of depth-μP (O(1/n) for seed means, O(1/L) in depth) measured on
small ladders stay well inside it (docs/coordcheck.md gives the numbers). The overall verdict: `inconsistent`
when some row grows or shrinks (or a rung diverged); `consistent` when none does and at least CONSISTENT_SHARE
(95%) of the judged rows are flat, the rest undecided for lack of seeds (a check of our default ResNet ladders
has about 500 rows: one interval that ends at −0.502 should not undo the other 499); `inconclusive` otherwise.
The counts of every judgement travel with the verdict.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterable

import numpy as np
import pandas as pd

from ..paper.stats import Interval, seed_bootstrap, slope_of_means

__all__ = ["JUDGED", "NOT_JUDGED", "TOLERANCE", "CONSISTENT_SHARE", "AXES", "VERDICTS", "judge_interval", "common_taus",
           "fit_rows", "overall", "ROW_COLUMNS"]

AXES = ("width", "depth")
TOLERANCE = 0.5
CONSISTENT_SHARE = 0.95
JUDGED = ("h_sq", "phi_sq", "g_sq", "h_move", "h_step", "g_move", "diversity", "a_move")
MOVEMENT = ("h_move", "g_move", "a_move")   # zero at the reference step: no slope there
NOT_JUDGED = {
    "fg_cov": "signed, and O(n^-1/2) at initialisation by the readout's symmetry (docs/theory.md §2)",
    "fg_eigmin": "biased low at finite width by about (1 - sqrt(2P/n))^2 (docs/theory.md §2)",
    "coupling": "the transpose-coupling terms have their own rates, not Theta(1) (docs/theory.md §5)",
    "network": "network scalars (loss, grad_norm) are not per-layer coordinates",
}
VERDICTS = ("consistent", "inconsistent", "inconclusive")
FAILS = ("grows", "shrinks", "diverged")
ROW_COLUMNS = ["axis", "metric", "tau", "step", "slope", "ci_low", "ci_high", "seeds", "rungs", "judgement", "why"]


def judge_interval(ci: Interval, tol: float = TOLERANCE) -> tuple[str, str]:
    """flat / grows / shrinks / inconclusive for one slope interval (module docstring), with the reason."""
    if not ci.finite:
        return "inconclusive", ("no interval: fewer than 2 seeds or rungs" if not ci.dropped else
                                f"no interval: {ci.dropped} resamples had a mean <= 0 under the logarithm")
    shown = f"[{ci.low:.2f}, {ci.high:.2f}]"
    if -tol <= ci.low and ci.high <= tol:
        return "flat", f"95% interval {shown} inside ±{tol:g}"
    if ci.low > tol:
        return "grows", f"95% interval {shown} above +{tol:g}"
    if ci.high < -tol:
        return "shrinks", f"95% interval {shown} below -{tol:g}"
    need = _seeds_to_decide(ci, tol)
    more = f"; about {need} seeds would decide it if the slope stays at {ci.value:.2f}" if need else ""
    return "inconclusive", f"95% interval {shown} straddles ±{tol:g}{more}"


def _seeds_to_decide(ci: Interval, tol: float) -> int | None:
    """Seeds for an interval about the same estimate, half-width shrinking like 1/√seeds, to clear ±tol."""
    d = abs(abs(ci.value) - tol)
    if ci.seeds < 2 or d < 1e-9:
        return None
    return max(ci.seeds + 1, math.ceil(ci.seeds * (ci.half_width / d) ** 2))


def common_taus(depths: Iterable[int]) -> list[Fraction]:
    """Depth times τ = ℓ/L present at every depth (exact fractions): the rows of a depth ladder."""
    sets = [{Fraction(ell, int(L)) for ell in range(int(L) + 1)} for L in depths]
    return sorted(set.intersection(*sets)) if sets else []


def fit_rows(frame: pd.DataFrame, axis: str, *, tol: float = TOLERANCE, metrics: Iterable[str] = JUDGED,
             n_boot: int = 1000) -> pd.DataFrame:
    """One row per (metric, τ, step) of a ladder: ROW_COLUMNS.

    frame: tidy rows x (the axis value: width or depth), seed, depth, step, layer, metric, value, and
    `diverged` (bool per run: it stopped before its last step). Over depth, only the τ shared by every depth
    are rows; over width (one depth), every layer. A row whose rungs lack a step because a run diverged is
    judged `diverged` (the parametrization blew up there); movements are not judged at the reference step."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}; got {axis!r}")
    f = frame[frame["metric"].isin(list(metrics)) & (frame["layer"] >= 0)].copy()
    if f.empty:
        return pd.DataFrame(columns=ROW_COLUMNS)
    xs = sorted(f["x"].unique())
    taus = common_taus(f["depth"].unique())
    keep = {(int(L), int(t * L)): float(t) for L in f["depth"].unique() for t in taus}
    f["tau"] = [keep.get((int(L), int(ell)), np.nan) for L, ell in zip(f["depth"], f["layer"])]
    f = f[np.isfinite(f["tau"])]
    first = int(frame["step"].min())
    blown = frame.groupby("x")["diverged"].any()
    wide = f.pivot_table(index=["metric", "tau", "step", "seed"], columns="x", values="value", aggfunc="mean",
                         observed=True).reindex(columns=xs)      # one pivot: (rows × seeds, rungs)
    rows = []
    for (metric, tau, step), g in wide.groupby(level=["metric", "tau", "step"], sort=True):
        if metric in MOVEMENT and step == first:
            continue
        table = g.to_numpy(float)                                  # (seeds, rungs)
        present = ~np.isnan(table).all(axis=0)
        row = {"axis": axis, "metric": metric, "tau": tau, "step": int(step), "rungs": int(present.sum()),
               "seeds": len(table), "slope": np.nan, "ci_low": np.nan, "ci_high": np.nan}
        bad = [x for x, ok in zip(xs, present) if not ok and blown.get(x, False)]
        if bad:
            rows.append({**row, "judgement": "diverged",
                         "why": f"{axis} {', '.join(map(str, bad))} diverged before step {int(step)}"})
            continue
        with np.errstate(all="ignore"):
            bad = [x for x, col in zip(xs, table.T) if not np.isfinite(col).any() and not np.isnan(col).all()]
        if bad:
            rows.append({**row, "judgement": "diverged", "why": f"non-finite values at {axis} "
                                                               f"{', '.join(map(str, bad))}"})
            continue
        ci = seed_bootstrap(table[:, present], slope_of_means([x for x, ok in zip(xs, present) if ok]),
                            n_boot=n_boot)
        judgement, why = judge_interval(ci, tol)
        rows.append({**row, "slope": ci.value, "ci_low": ci.low, "ci_high": ci.high, "seeds": ci.seeds,
                     "judgement": judgement, "why": why})
    out = pd.DataFrame(rows, columns=ROW_COLUMNS)
    return failing_first(out)


def failing_first(rows: pd.DataFrame) -> pd.DataFrame:
    """Failing rows first (growing and shrinking ones by |slope|, then diverged), then inconclusive, then flat."""
    order = {"grows": 0, "shrinks": 0, "diverged": 1, "inconclusive": 2, "flat": 3}
    key = rows["judgement"].map(order).fillna(4) * 1e3 - rows["slope"].abs().fillna(1e2).clip(upper=1e2)
    return rows.assign(_k=key).sort_values(["_k", "metric", "tau", "step"]).drop(columns="_k").reset_index(drop=True)


def overall(rows: pd.DataFrame) -> dict:
    """The verdict over rows (module docstring) with the counts of each judgement."""
    counts = {k: int(v) for k, v in rows["judgement"].value_counts().items()} if len(rows) else {}
    failing = sum(counts.get(k, 0) for k in FAILS)
    if failing:
        verdict = "inconsistent"
    elif len(rows) and counts.get("flat", 0) >= CONSISTENT_SHARE * len(rows):
        verdict = "consistent"
    else:
        verdict = "inconclusive"
    return {"verdict": verdict, "rows": int(len(rows)), "failing": int(failing), "counts": counts}
