"""A claim of claims.json from a points file: its statistic, 95% interval, the alternative it must exclude, and
the verdict its kind gives (dynamics.paper.kinds). docs/theory.md §7 lists every claim; this module builds them.

Fields of a claim (schema 1; fields only ever added): id, section, statement, quantity, paper_value, rule,
measured, ci, verdict, why, tol, n_points, points, x, y, where, page, runs, detail, view, and since issue 13:
  method       how `measured` and `ci` are recomputed from the points file (`recompute`):
               "points" (log-log slope of y vs x over the rows, percentile bootstrap over rows, for exact or
               single-seed points), "seed_means" (slope of log(mean over seeds of y) vs log x, paired bootstrap
               over whole seeds), "seed_mean" (mean of y over rows, bootstrap over seeds), "lr_optimum"
               (slope of log η* vs log depth, η* the vertex of a quadratic in log η of the seed-mean loss),
               "joint_fit" (the exponent of err ≈ a·n^−p + b·L^−q, profile interval, identification checked by
               a bootstrap over seeds: dynamics.paper.identify), "mc_slope" (log-log slope of limit-run points,
               parametric bootstrap from their Monte-Carlo stderr: extra["se"] names the stderr column,
               extra["dof"] its degrees of freedom, replicas − 1), "contrast" (extra["base"], one of seed_means
               and mc_slope, on the claim's rows minus the same on the rows of its `where` with extra["against"]
               in place; seed_means paired by seed);
  seed_col     the column that names a seed (resampled whole);
  paper_range  [lo, hi]: the values the paper's statement allows (None for ±∞);
  alternative  {value, side, words}: what the data must exclude before the verdict can be "agrees";
  seeds        seeds resampled; seeds_to_decide: for an inconclusive claim, about how many seeds would decide it
               if the estimate stayed where it is (half-width ∝ 1/√seeds), else None;
  raw          {y, measured, ci} of the same statistic on the raw series when the claim is fitted on the excess
               over chance (y − its chance level), else absent;
  theory       where docs/theory.md explains the claim;
and since issue 26:
  kind         rate, bound, persists, vanishes or contrast (dynamics.paper.kinds: which values the paper allows);
               `rule` repeats it for older readers;
  paper_wording the paper's statement the claim encodes, in our words with its place (statements.STATEMENTS);
               paper_group: that statement in a few words, shared by the claims that test it;
  identified   False when the fit is not identified; diagnosis: why, and the design that would identify it;
  reading      {name, words} for a coupling claim: which normalisation it tests (message, stream, coherent,
               incoherent); companions of other readings: stream, incoherent ({y, measured, ci});
  own, reference {where, measured, ci} of a contrast's two settings.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import pandas as pd

from . import identify, kinds as K, stats as S
from .fits import fit_loglog
from .statements import READINGS, STATEMENTS

THEORY_DOC = "docs/theory.md"


def select(points: pd.DataFrame, where: dict | None) -> pd.DataFrame:
    sel = points
    for k, v in (where or {}).items():
        sel = sel[sel[k] == v]
    return sel


def interval(points: pd.DataFrame, method: str, x: str, y: str, seed_col: str = "seed",
             extra: dict | None = None, full: pd.DataFrame | None = None) -> S.Interval:
    """The statistic of `method` on the (already filtered) points with its 95% interval; "contrast" also needs
    the `full` points file to find its reference setting (extra["against"])."""
    extra = extra or {}
    if method == "contrast":
        return _contrast(points, full if full is not None else points, x, y, seed_col, extra)
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
        return identify.joint_interval([c[0] for c in cells], [c[1] for c in cells], table,
                                       extra.get("term", "depth"))
    raise ValueError(f"unknown method {method!r}")


def _contrast(sel: pd.DataFrame, full: pd.DataFrame, x: str, y: str, seed_col: str, extra: dict) -> S.Interval:
    """The statistic of extra["base"] on `sel` minus the same on the reference rows (sel's `where` with
    extra["against"] in place): seed_means pairs the two by seed (a resample draws seeds and keeps both settings'
    rows of each), mc_slope draws both from their own Monte-Carlo errors (independent draws)."""
    against, base = extra["against"], extra.get("base", "seed_means")
    ref = select(full, {**extra.get("where", {}), **against})
    if base == "mc_slope":
        va, da = S.mc_slope_draws(sel[x], sel[y], sel[extra["se"]], dof=extra.get("dof"))
        vb, db = S.mc_slope_draws(ref[x], ref[y], ref[extra["se"]], dof=extra.get("dof"), rng_seed=1)
        return S.percentile_interval(va - vb, da - db)
    if base != "seed_means":
        raise ValueError(f"a contrast of {base!r} is not defined; use seed_means or mc_slope")
    ta = sel.pivot_table(index=seed_col, columns=x, values=y, aggfunc="mean")
    tb = ref.pivot_table(index=seed_col, columns=x, values=y, aggfunc="mean")
    seeds = ta.index.intersection(tb.index)
    k = ta.shape[1]
    fa, fb = S.slope_of_means(list(ta.columns)), S.slope_of_means(list(tb.columns))

    def stat(t: np.ndarray) -> float:
        return fa(t[:, :k]) - fb(t[:, k:])
    stat.batch = lambda ts: fa.batch(ts[:, :, :k]) - fb.batch(ts[:, :, k:])
    table = np.hstack([ta.loc[seeds].to_numpy(float), tb.loc[seeds].to_numpy(float)])
    return S.seed_bootstrap(table, stat)


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


def claim(cid: str, section: str, statement: str, points: pd.DataFrame, file: str, x: str, y: str, *,
          paper: float | str, alt: S.Alternative, method: str = "seed_means", where: dict | None = None,
          page: str, runs: list[str], detail: str = "", view: dict | None = None, tol: float = 0.0,
          raw_y: str | None = None, quantity: str | None = None, seed_col: str = "seed",
          extra: dict | None = None, theory: str = "") -> dict:
    """Build one claim (see the module docstring for its fields). Its kind, value and wording come from
    statements.STATEMENTS when the id is there (else `paper`: a rate, 'vanishes' or 'persists'); a contrast
    is measured as the difference to its reference setting and tested against no difference."""
    st = STATEMENTS.get(cid)
    kind = st.kind if st else (paper if isinstance(paper, str) else "rate")
    value = st.value if st else (None if isinstance(paper, str) else float(paper))
    extra = dict(extra or {})
    quantity = quantity or f"slope of log {y} vs log {x}"
    sel = select(points, where)
    if kind == "contrast":
        own = interval(sel, method, x, y, seed_col, extra, full=points)
        extra = {**extra, "base": method, "against": st.against, "where": where or {}, "base_quantity": quantity}
        ref = select(points, {**(where or {}), **st.against})
        ref_ci = interval(ref, method, x, y, seed_col, extra, full=points)
        method, alt = "contrast", S.Alternative(0.0, "no difference between the settings")
        against = ", ".join(f"{k} = {v}" for k, v in st.against.items())
        quantity = f"difference of the {quantity}: this setting minus {against}"
    ci = interval(sel, method, x, y, seed_col, extra, full=points)
    rng = K.paper_set(kind, value)
    verdict, why = K.judge(kind, ci, value, alt, tol=tol, shown=st.shown if st else "")
    need = S.seeds_to_decide(ci, rng, alt) if verdict == "inconclusive" and ci.identified else None
    out = {"id": cid, "section": section, "statement": statement, "kind": kind,
           "paper_wording": st.wording if st else statement, "paper_group": st.group if st else statement,
           "quantity": quantity,
           "paper_value": value if kind in ("rate", "bound") else None,
           "rule": kind, "measured": ci.value, "ci": [ci.low, ci.high],
           "verdict": verdict, "why": why, "identified": ci.identified, "diagnosis": ci.diagnosis,
           "tol": tol, "n_points": int(len(sel)), "points": file, "x": x, "y": y,
           "where": where or {}, "page": page, "runs": sorted(set(runs)), "detail": detail, "view": view or {},
           "method": method, "seed_col": seed_col, "paper_range": [_inf(rng[0]), _inf(rng[1])],
           "alternative": {"value": alt.value, "side": alt.side, "words": alt.words}, "seeds": ci.seeds,
           "seeds_to_decide": need, "extra": extra,
           "theory": f"{THEORY_DOC}#{theory}" if theory else THEORY_DOC}
    if st and st.reading:
        out["reading"] = {"name": st.reading, "words": READINGS[st.reading]}
    if kind == "contrast":
        out["own"] = {"where": where or {}, "measured": own.value, "ci": [own.low, own.high]}
        out["reference"] = {"where": {**(where or {}), **st.against}, "measured": ref_ci.value,
                            "ci": [ref_ci.low, ref_ci.high]}
    if raw_y:
        r = interval(sel, extra.get("base", method), x, raw_y, seed_col, extra)
        out["raw"] = {"y": raw_y, "measured": r.value, "ci": [r.low, r.high]}
    return out


def _inf(v: float) -> float | None:
    return None if math.isinf(v) else v


def recompute(claim_: dict, points: pd.DataFrame) -> S.Interval:
    """A claim's figure and interval again from its points file (the tests check that they match)."""
    sel = select(points, claim_.get("where"))
    return interval(sel, claim_.get("method", "points"), claim_["x"], claim_["y"], claim_.get("seed_col", "seed"),
                    claim_.get("extra"), full=points)
