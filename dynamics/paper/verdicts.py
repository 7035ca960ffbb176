"""A claim of claims.json from a points file: its statistic, 95% interval, the alternative it must exclude, and
the verdict (dynamics.paper.stats.verdict). docs/theory.md §8 lists every claim; this module builds them.

Fields of a claim (schema 1; fields only ever added): id, section, statement, quantity, paper_value, rule,
measured, ci, verdict, why, tol, n_points, points, x, y, where, page, runs, detail, view, and since issue 13:
  method       how `measured` and `ci` are recomputed from the points file (`recompute`):
               "points" (log-log slope of y vs x over the rows, percentile bootstrap over rows, for exact or
               single-seed points), "seed_means" (slope of log(mean over seeds of y) vs log x, paired bootstrap
               over whole seeds), "seed_mean" (mean of y over rows, bootstrap over seeds), "lr_optimum"
               (slope of log η* vs log depth, η* the vertex of a quadratic in log η of the seed-mean loss),
               "joint_fit" (the exponent of err ≈ a·n^−p + b·L^−q, bootstrap over seeds), "mc_slope" (log-log
               slope of limit-run points, parametric bootstrap from their Monte-Carlo stderr: extra["se"] names
               the stderr column, extra["dof"] its degrees of freedom, replicas − 1);
  seed_col     the column that names a seed (resampled whole);
  paper_range  [lo, hi]: the values the paper's statement allows (None for ±∞);
  alternative  {value, side, words}: what the data must exclude before the verdict can be "agrees";
  seeds        seeds resampled; seeds_to_decide: for an inconclusive claim, about how many seeds would decide it
               if the estimate stayed where it is (half-width ∝ 1/√seeds), else None;
  raw          {y, measured, ci} of the same statistic on the raw series when the claim is fitted on the excess
               over chance (y − its chance level), else absent;
  theory       where docs/theory.md explains the claim.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import pandas as pd

from . import stats as S
from .fits import fit_loglog

THEORY_DOC = "docs/theory.md"
RULE_RANGE = {"vanishes": (-math.inf, 0.0), "persists": (0.0, math.inf)}


def paper_range(paper: float | str) -> tuple[float, float]:
    """A rate r -> [r, r]; 'vanishes' -> (−∞, 0); 'persists' -> [0, ∞)."""
    return RULE_RANGE[paper] if isinstance(paper, str) else (float(paper), float(paper))


def select(points: pd.DataFrame, where: dict | None) -> pd.DataFrame:
    sel = points
    for k, v in (where or {}).items():
        sel = sel[sel[k] == v]
    return sel


def interval(points: pd.DataFrame, method: str, x: str, y: str, seed_col: str = "seed",
             extra: dict | None = None) -> S.Interval:
    """The statistic of `method` on the (already filtered) points with its 95% interval."""
    extra = extra or {}
    if method == "points":
        fit = fit_loglog(points[x], points[y])
        return S.Interval(fit.slope, fit.ci_low, fit.ci_high, 0)  # no seeds: no seeds_to_decide
    if method == "seed_means":
        table, xs = S.by_seed(points, x, y, seed_col)
        return S.seed_bootstrap(table, S.slope_of_means(xs))
    if method == "seed_mean":
        table, _ = S.by_seed(points, x, y, seed_col)
        return S.seed_bootstrap(table, S.mean_of)
    if method == "lr_optimum":
        table, cells = S.by_seed(points, [x, "lr"], y, seed_col)    # (seeds, depth × lr)
        return S.seed_bootstrap(table, lr_slope_stat(cells))
    if method == "mc_slope":
        return S.mc_slope(points[x], points[y], points[extra["se"]], dof=extra.get("dof"))
    if method == "joint_fit":
        table, cells = S.by_seed(points, ["width", "depth"], y, seed_col)
        return S.seed_bootstrap(table, joint_stat(cells, extra.get("term", "depth")), n_boot=400)
    raise ValueError(f"unknown method {method!r}")


def lr_slope_stat(cells: list[tuple]) -> Callable[[np.ndarray], float]:
    """On a (seeds, depth × lr) table of final losses: slope of log η*(L) vs log L, η* = stats.lr_optimum of
    the seed-mean loss curve at each depth (the mean over the seeds that did not diverge at that η; an η where
    all diverged is left out of the fit); NaN if some depth's optimum is off the grid."""
    depths = np.array([c[0] for c in cells], float)
    lrs = np.array([c[1] for c in cells], float)
    ds = np.unique(depths)

    def stat(t: np.ndarray) -> float:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmean(np.where(np.isfinite(t), t, np.nan), axis=0)  # diverged seeds left out
        opt = [S.lr_optimum(lrs[depths == d], m[depths == d]) for d in ds]
        return S._loglog_slope(ds, np.array(opt))
    return stat


def lr_optima(points: pd.DataFrame, x: str = "depth", y: str = "loss") -> dict[float, float]:
    """η* per depth from the seed-mean losses (for the detail text and the pages)."""
    finite = points.assign(**{y: points[y].where(np.isfinite(points[y]))})  # diverged -> left out of the mean
    m = finite.groupby([x, "lr"])[y].mean().reset_index()
    return {float(d): S.lr_optimum(g.lr.to_numpy(), g[y].to_numpy()) for d, g in m.groupby(x)}


def joint_stat(cells: list[tuple], term: str) -> Callable[[np.ndarray], float]:
    """On a (seeds, width × depth) table of errors: −p (term 'width') or −q ('depth') of the joint fit of the
    seed means err ≈ a·n^−p + b·L^−q, i.e. the log-log slope each term contributes; NaN when that term's
    coefficient comes out 0 (then its exponent is not identified; q = 0 with b > 0 is a constant floor)."""
    n = np.array([c[0] for c in cells], float)
    L = np.array([c[1] for c in cells], float)

    def stat(t: np.ndarray) -> float:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmean(t, axis=0)
        p, q, a, b = S.joint_power_fit(n, L, m)
        coef = a if term == "width" else b   # a term fitted as 0 has no exponent: undefined, not 0
        return math.nan if coef <= 0 else (-p if term == "width" else -q)
    return stat


def claim(cid: str, section: str, statement: str, points: pd.DataFrame, file: str, x: str, y: str, *,
          paper: float | str, alt: S.Alternative, method: str = "seed_means", where: dict | None = None,
          page: str, runs: list[str], detail: str = "", view: dict | None = None, tol: float = 0.0,
          raw_y: str | None = None, quantity: str | None = None, seed_col: str = "seed",
          extra: dict | None = None, theory: str = "") -> dict:
    """Build one claim (see the module docstring for its fields)."""
    sel = select(points, where)
    ci = interval(sel, method, x, y, seed_col, extra)
    rng = paper_range(paper)
    verdict, why = S.verdict(ci, rng, alt, tol=tol)
    need = S.seeds_to_decide(ci, rng, alt) if verdict == "inconclusive" else None
    out = {"id": cid, "section": section, "statement": statement,
           "quantity": quantity or f"slope of log {y} vs log {x}",
           "paper_value": None if isinstance(paper, str) else float(paper),
           "rule": paper if isinstance(paper, str) else "rate", "measured": ci.value, "ci": [ci.low, ci.high],
           "verdict": verdict, "why": why, "tol": tol, "n_points": int(len(sel)), "points": file, "x": x, "y": y,
           "where": where or {}, "page": page, "runs": sorted(set(runs)), "detail": detail, "view": view or {},
           "method": method, "seed_col": seed_col, "paper_range": [_inf(rng[0]), _inf(rng[1])],
           "alternative": {"value": alt.value, "side": alt.side, "words": alt.words}, "seeds": ci.seeds,
           "seeds_to_decide": need, "extra": extra or {},
           "theory": f"{THEORY_DOC}#{theory}" if theory else THEORY_DOC}
    if raw_y:
        r = interval(sel, method, x, raw_y, seed_col, extra)
        out["raw"] = {"y": raw_y, "measured": r.value, "ci": [r.low, r.high]}
    return out


def _inf(v: float) -> float | None:
    return None if math.isinf(v) else v


def recompute(claim_: dict, points: pd.DataFrame) -> S.Interval:
    """A claim's figure and interval again from its points file (the tests check that they match)."""
    sel = select(points, claim_.get("where"))
    return interval(sel, claim_.get("method", "points"), claim_["x"], claim_["y"], claim_.get("seed_col", "seed"),
                    claim_.get("extra"))
