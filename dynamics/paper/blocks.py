"""Two-layer blocks (docs/theory.md §7): the first internal layer's own feature learning a_learn (the part of its
pre-activation's movement that its weight update drives, ΔW_ℓ,1 φ(h_ℓ−1)/√n) and its whole movement a_move against
depth, from finite nets (several widths at α = 0; every inner-LR exponent α at the base width and at the largest
width) and from the limit engine in the same setting (coupling full, depth grids K, α = 0, 1/2, 1), so the finite
claims are read against the limit at the same K and "does the inner layer's learning collapse as K → ∞ at α = 0,
does α = 1/2 keep it" is answered without width noise. The paper's statement (arXiv 2512.21075v1) is about
a_learn: collapse like 1/√L at α = 0 (L^-1 for the squared norm), kept by the correction α = 1/2; α = 1 is the
contrast (power counting: a_learn ∝ L^(2α−1)). a_move also holds the input-driven part W_ℓ,1(0)Δφ(h_ℓ−1)/√n,
Θ(1) in L, and is kept beside it (blocks-amove, blocks-limit-alpha*).

Limit points (points-blocks-limit.parquet): per (α, K) the mean over blocks of a_move and a_learn at the last
step and their Monte-Carlo standard errors, taken as the mean of the per-block stderrs (the stderr of a mean is at
most the mean of the stderrs, so this errs on the wide side); the claims fit the slope of the log vs log K with
the parametric bootstrap of stats.mc_slope (Student's t with replicas − 1 degrees of freedom).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..runs import store
from .common import LIMIT_PAGE, RUNS_PAGE, TRAJ_PAGE, limit, save
from .experiments import run_or_reuse
from .stats import Alternative
from .verdicts import claim, interval, select

# profile -> the limit's depth grids and particles. Each of the 4 replicas holds m = M/4 particles, which must stay
# well above 2·T·P (T = block_steps + 1, P = 8 inputs) or the solver's histories are rank-deficient: cpu
# 512 against 336, gpu 4096 against 3216. cpu sizes, both α: 137 s by dynamics.limit.cost on one quiet thread
# (a K = 32 solve measured 30 s at load average 5), about 960 s measured on the shared machine at load 6-8.
LIMIT_SIZES = {"smoke": dict(grids=[2, 4, 8], particles=512),
               "cpu": dict(grids=[2, 4, 8, 16, 32], particles=2048),
               "gpu": dict(grids=[2, 4, 8, 16, 32, 64], particles=16384)}
LIMIT_ALPHAS = (0.0, 0.5, 1.0)
REPLICAS = 4  # common.limit's: the stderr has 3 degrees of freedom
_AMOVE_VIEW = {"metric": "a_move", "step": "last", "view": "Over depth"}
_ALEARN_VIEW = {"metric": "a_learn", "step": "last", "view": "Over depth"}
_ALEARN_RUNS_VIEW = {**_ALEARN_VIEW, "colour": "inner_lr_exponent"}  # finite runs: one colour per α
METRICS = ("a_move", "a_learn")
# the real-data variant of the finite a_learn claims (#27: "on a real task too"): no download, minibatch SGD
DIGITS = dict(task="digits", loss="xent", classes=10, train_size=512, batch=64, test_size=0)
_NO_COLLAPSE = Alternative(0.0, "Θ(1) in L: no collapse of the inner layer's own learning")
_COLLAPSED = Alternative(-1.0, "the uncorrected collapse, L^-1 (the power counting at α = 0)")


def blocks_claims(out: Path, s: dict, base: RunConfig, profile: str, log) -> list[dict]:
    """The finite claims (a_move and a_learn vs L at the largest width: α = 0, and a_learn at α = 1/2 and 1) and
    the limit claims (the same vs K)."""
    S = s["block_steps"]
    cfg0 = dataclasses.replace(base, block=2, steps=S, record_every=S, test_every=S, record_coupling="off")
    pa_ = _finite(out, s, cfg0, log)
    fa = save(out, "blocks-amove", pa_)
    pl = _limit(out, s, cfg0, profile, pa_, log)
    fl = save(out, "blocks-limit", pl)
    top = max(s["block_widths"])
    per_w = "; ".join(f"n={w}: {_slope_txt(pa_, {'alpha': 0.0, 'width': w})}" for w in s["block_widths"])
    per_a = "; ".join(f"α={a:g}: {_slope_txt(pa_, {'alpha': a, 'width': s['block_width']})}"
                      for a in sorted(pa_.alpha.unique()))
    sel = select(pa_, {"alpha": 0.0, "width": top})
    fin = sel.groupby("depth").a_move.agg(["mean", "std", "count"])
    lim0 = select(pl, {"alpha": 0.0}).set_index("grid")
    same = "; ".join(f"L=K={int(d)}: {r['mean']:.3g} ± {r['std'] / math.sqrt(r['count']):.2g} vs "
                     f"{lim0.a_move[d]:.3g} ± {lim0.a_move_stderr[d]:.2g}"
                     for d, r in fin.iterrows() if d in lim0.index) or "no common depth"
    claims = [claim("blocks-amove", "§1", "two-layer blocks lose feature learning in the first internal layer as "
                    "L grows (α = 0, no LR correction)", pa_, fa, "depth", "a_move", paper="vanishes",
                    alt=Alternative(0.0, "Θ(1) in L: the part of a_move driven by the Θ(1) movement of the block's "
                                         "input (docs/theory.md §7)"),
                    where={"alpha": 0.0, "width": top}, page=TRAJ_PAGE, runs=list(sel.run_id), theory="7-claims",
                    detail=f"mean a_move over blocks at step {S}, {s['block_seeds']} seeds; slope vs depth at α = 0 "
                           f"per width: {per_w}; per inner-LR exponent at n = {s['block_width']}: {per_a}. "
                           f"Power counting: the weight-update part of a_move scales like L^(2α−1), the "
                           f"input-driven part like L^0. Against the limit at the same depth (α = 0, seed mean ± "
                           f"stderr at n = {top} vs limit ± MC stderr, blocks-limit-alpha0): {same}")]
    ratio = _loss_ratio(pa_, top)
    fr = save(out, "blocks-loss", ratio)
    deep = int(max(s["block_depths"]))
    per_L = "; ".join(f"L={int(d)}: {g.log10_loss_ratio.mean():+.2f} (loss {g.loss_alpha_half.mean():.2g} vs "
                      f"{g.loss_alpha0.mean():.2g})" for d, g in ratio.groupby("depth"))
    claims.append(claim("blocks-loss-alpha-half", "§7", "with two-layer blocks the corrected nets (α = 1/2) reach a "
                        "lower training loss than uncorrected ones (α = 0) at the largest depth", ratio, fr, "depth",
                        "log10_loss_ratio", paper=0.0, method="seed_mean", where={"depth": deep},
                        alt=Alternative(0.0, "the correction changes nothing: the same loss"),
                        page=RUNS_PAGE, runs=list(select(pa_, {"width": top, "depth": deep, "alpha": 0.5}).run_id)
                        + list(select(pa_, {"width": top, "depth": deep, "alpha": 0.0}).run_id),
                        theory="7-claims",  # the Runs page: both settings' loss curves
                        quantity=f"seed mean of log10(loss at α = 1/2 / loss at α = 0) at step {S}, L = {deep}, "
                                 f"n = {top} (paired by seed)",
                        detail=f"training loss at step {S}, n = {top}, {s['block_seeds']} seeds, mean of the paired "
                               f"log10 ratio per depth: {per_L}"))
    digits = dataclasses.replace(cfg0, **DIGITS)
    pd_ = _finite(out, s, digits, log, grid=[(top, a) for a in (0.0, 0.5)])
    fd = save(out, "blocks-digits", pd_)
    return claims + _learn_claims(pa_, fa, s) + _digits_claims(pd_, fd, s) + _limit_claims(pl, fl, s, profile)


def _digits_claims(pd_: pd.DataFrame, file: str, s: dict) -> list[dict]:
    """a_learn vs L on the 8×8 digits images with cross-entropy (minibatch SGD), largest width: α = 0, 1/2."""
    S, top = s["block_steps"], max(s["block_widths"])

    def detail(alpha: float) -> str:
        sel = select(pd_, {"alpha": alpha}).groupby("depth")
        pts = ", ".join(f"L={int(d)}: {g.a_learn.mean():.3g} (a_move {g.a_move.mean():.3g})" for d, g in sel)
        return (f"digits images, cross-entropy over 10 classes, {DIGITS['train_size']} training images in "
                f"minibatches of {DIGITS['batch']}, mean a_learn over blocks at step {S}, {s['block_seeds']} "
                f"seeds, n = {top}: {pts}. Power counting: a_learn ∝ L^(2α−1) = L^{2 * alpha - 1:g}")

    common = dict(page=TRAJ_PAGE, theory="7-claims", view=_ALEARN_RUNS_VIEW)
    return [
        claim("blocks-alearn-digits", "§7", "on real images (8×8 digits, cross-entropy), the first internal layer's "
              "own feature learning collapses like 1/√L at α = 0", pd_, file, "depth", "a_learn", paper=-1.0,
              alt=_NO_COLLAPSE, where={"alpha": 0.0}, runs=list(select(pd_, {"alpha": 0.0}).run_id),
              detail=detail(0.0), **common),
        claim("blocks-alearn-digits-alpha-half", "§7", "on real images (8×8 digits, cross-entropy), the inner rate "
              "× √L (α = 1/2) keeps it as L grows", pd_, file, "depth", "a_learn", paper="persists", alt=_COLLAPSED,
              where={"alpha": 0.5}, runs=list(select(pd_, {"alpha": 0.5}).run_id), detail=detail(0.5),
              **common)]


def _learn_claims(pa_: pd.DataFrame, file: str, s: dict) -> list[dict]:
    """a_learn vs L at the largest width: rate −1 at α = 0, persists at α = 1/2, α = 1 against α = 1/2."""
    S, top = s["block_steps"], max(s["block_widths"])
    widths = sorted(pa_.width.unique())

    def detail(alpha: float) -> str:
        per_w = "; ".join(f"n={w}: {_slope_txt(pa_, {'alpha': alpha, 'width': w}, 'a_learn')}" for w in widths
                          if len(select(pa_, {"alpha": alpha, "width": w})))
        sel = select(pa_, {"alpha": alpha, "width": top}).groupby("depth")
        pts = ", ".join(f"L={int(d)}: {g.a_learn.mean():.3g} (a_move {g.a_move.mean():.3g})" for d, g in sel)
        return (f"mean a_learn over blocks at step {S}, {s['block_seeds']} seeds, n = {top}: {pts}; slope vs depth "
                f"at α = {alpha:g} per width: {per_w}. Power counting: a_learn ∝ L^(2α−1) = L^{2 * alpha - 1:g}")

    def runs(alpha: float) -> list[str]:
        return list(select(pa_, {"alpha": alpha, "width": top}).run_id)

    common = dict(page=TRAJ_PAGE, theory="7-claims", view=_ALEARN_RUNS_VIEW)
    return [
        claim("blocks-alearn", "§7", "two-layer blocks: the first internal layer's own feature learning collapses "
              "like 1/√L (a_learn like 1/L) at α = 0", pa_, file, "depth", "a_learn", paper=-1.0, alt=_NO_COLLAPSE,
              where={"alpha": 0.0, "width": top}, runs=runs(0.0), detail=detail(0.0), **common),
        claim("blocks-alearn-alpha-half", "§7", "the inner rate × √L (α = 1/2) keeps the first internal layer's own "
              "feature learning as L grows", pa_, file, "depth", "a_learn", paper="persists", alt=_COLLAPSED,
              where={"alpha": 0.5, "width": top}, runs=runs(0.5), detail=detail(0.5), **common),
        claim("blocks-alearn-alpha1", "§7", "α = 1 over-corrects: a_learn grows with L faster than at α = 1/2",
              pa_, file, "depth", "a_learn", paper="persists", alt=_COLLAPSED, where={"alpha": 1.0, "width": top},
              runs=runs(1.0) + runs(0.5), detail=detail(1.0), **common)]


def _finite(out: Path, s: dict, cfg0: RunConfig, log, grid: list[tuple[int, float]] | None = None
            ) -> pd.DataFrame:
    """One row per finite run of the (width, α) grid (default: α = 0 at every width, every α at the base and the
    largest width) × depths × seeds: a_move and a_learn at the last step, mean over blocks."""
    rows, S = [], s["block_steps"]
    top = max(s["block_widths"])
    grid = grid or [(w, 0.0) for w in s["block_widths"]] + [(w, a) for w in sorted({s["block_width"], top})
                                                            for a in s["alphas"] if a != 0.0]
    for width, alpha in grid:
        for L in s["block_depths"]:
            for seed in range(s["block_seeds"]):
                cfg = dataclasses.replace(cfg0, width=width, depth=L, inner_lr_exponent=alpha, seed=seed)
                run = run_or_reuse(cfg, out / "runs", log)
                got = store.read_metrics(run, metrics=[*METRICS, "loss"], steps=[S])
                ok = store.read_meta(run)["status"] == "complete"
                rows.append({"alpha": alpha, "width": width, "depth": L, "seed": seed,
                             **{k: float(got[got.metric == k].value.mean()) for k in METRICS},
                             "loss": float(got[got.metric == "loss"].value.mean()) if ok else math.inf,
                             "run_id": run.name})
    return pd.DataFrame(rows)


def _loss_ratio(pa_: pd.DataFrame, top: int) -> pd.DataFrame:
    """Per (depth, seed) at the largest width: log10 of the training loss at α = 1/2 over the same seed's at α = 0
    (same initialisation and data: only the inner rate differs), the paired statistic of blocks-loss-alpha-half."""
    sel = select(pa_, {"width": top})
    t = sel.pivot_table(index=["depth", "seed"], columns="alpha", values="loss")
    if not {0.0, 0.5} <= set(t.columns):
        return pd.DataFrame(columns=["depth", "seed", "log10_loss_ratio", "loss_alpha0", "loss_alpha_half"])
    out = pd.DataFrame({"log10_loss_ratio": np.log10(t[0.5] / t[0.0]), "loss_alpha0": t[0.0],
                        "loss_alpha_half": t[0.5]}).reset_index()
    return out[np.isfinite(out.log10_loss_ratio)]


def _limit(out: Path, s: dict, cfg0: RunConfig, profile: str, finite: pd.DataFrame, log) -> pd.DataFrame:
    """One row per (α, K): the limit's a_move at the last step (mean over blocks) with its MC stderr, beside the
    finite seed mean at width block_width and depth L = K where that run exists. The limit is solved `like` the
    finite run at (block_width, deepest finite depth, α, seed 0): its width and depth do not enter the limit."""
    ls, S, rows = LIMIT_SIZES[profile], s["block_steps"], []
    for alpha in LIMIT_ALPHAS:
        like = run_or_reuse(dataclasses.replace(cfg0, width=s["block_width"], depth=max(s["block_depths"]),
                                                inner_lr_exponent=alpha, seed=0), out / "runs", log)
        fin = select(finite, {"alpha": alpha, "width": s["block_width"]}).groupby("depth")[list(METRICS)].mean()
        for K in ls["grids"]:
            run = limit(like, out / "runs", K, ls["particles"], "full", cfg0.device)
            got = store.read_metrics(run, metrics=[*METRICS, "loss"], steps=[S])
            ms, loss = {k: got[got.metric == k] for k in METRICS}, got[got.metric == "loss"]
            ok = store.read_meta(run)["status"] == "complete" and all(len(m) for m in ms.values()) and len(loss)
            per = {}
            for k, m in ms.items():
                per[k] = float(m.value.mean()) if ok else math.nan
                per[f"{k}_stderr"] = float(m.stderr.mean()) if ok else math.nan
            rows.append({"alpha": alpha, "grid": K, **per,
                         "loss": float(loss.value.iloc[0]) if ok else math.nan,
                         "loss_stderr": float(loss.stderr.iloc[0]) if ok else math.nan,
                         **{f"finite_{k}": float(fin[k].get(K, math.nan)) for k in METRICS},
                         "finite_width": s["block_width"],
                         "run": run.name, "like": like.name, "steps": S, "particles": ls["particles"],
                         "replicas": REPLICAS})
    return pd.DataFrame(rows)


def _limit_claims(pl: pd.DataFrame, file: str, s: dict, profile: str) -> list[dict]:
    ls, S = LIMIT_SIZES[profile], s["block_steps"]

    def common(y: str) -> dict:
        return dict(method="mc_slope", extra={"se": f"{y}_stderr", "dof": REPLICAS - 1}, page=LIMIT_PAGE,
                    theory="7-claims", view=_AMOVE_VIEW if y == "a_move" else _ALEARN_VIEW,
                    quantity=f"slope of log {y} (limit, mean over blocks at step {S}) vs log K")

    def detail(alpha: float, y: str = "a_move") -> str:
        sel = select(pl, {"alpha": alpha})
        pts = ", ".join(f"K={int(r.grid)}: {getattr(r, y):.3g} ± {getattr(r, y + '_stderr'):.2g}"
                        for r in sel.itertuples())
        fin = ", ".join(f"L={int(r.grid)}: {getattr(r, 'finite_' + y):.3g}" for r in sel.itertuples()
                        if np.isfinite(getattr(r, 'finite_' + y)))
        loss = ", ".join(f"K={int(r.grid)}: {r.loss:.2g} ± {r.loss_stderr:.1g}" for r in sel.itertuples())
        return (f"limit runs (coupling full, M = {ls['particles']} in {REPLICAS} replicas) of the finite "
                f"two-layer-block setting, α = {alpha:g}, step {S}: {y} ± MC stderr {pts}; finite seed means at "
                f"n = {s['block_width']}: {fin or 'none at these depths'}; the limit's training loss at step {S} "
                f"(a rise with K means the K^α-scaled inner rate no longer trains stably): {loss}. Interval: "
                f"parametric bootstrap of the points from their MC stderr (t with {REPLICAS - 1} dof), so it holds "
                f"Monte-Carlo error only")

    runs = lambda a: list(select(pl, {"alpha": a}).run) + list(select(pl, {"alpha": a}).like.unique())  # noqa: E731
    c0 = claim("blocks-limit-alpha0", "§7", "in the limit (no width noise) two-layer blocks lose feature learning in "
               "the first internal layer as the depth grid K grows (α = 0, no LR correction)", pl, file, "grid",
               "a_move", paper="vanishes", where={"alpha": 0.0}, runs=runs(0.0), detail=detail(0.0),
               alt=Alternative(0.0, "Θ(1) in K: the part of a_move driven by the Θ(1) movement of the block's input "
                                    "(docs/theory.md §7)"), **common("a_move"))
    # a contrast against α = 0 (statements.STATEMENTS): claim() measures the difference and sets the alternative
    alt = Alternative(0.0, "the correction changes nothing: the slope of α = 0")
    c1 = claim("blocks-limit-alpha1", "§7", "in the limit, multiplying the first internal layer's learning rate by "
               "K (α = 1) keeps its feature learning as K grows", pl, file, "grid", "a_move", paper="persists",
               where={"alpha": 1.0}, runs=runs(1.0), alt=alt,
               detail=detail(1.0) + "; power counting: the weight-update part of a_move grows like K^(2α−1) = K",
               **common("a_move"))
    learn = [
        claim("blocks-limit-alearn-alpha0", "§7", "in the limit, the first internal layer's own feature learning "
              "collapses like 1/√K (a_learn like 1/K) at α = 0", pl, file, "grid", "a_learn", paper=-1.0,
              alt=_NO_COLLAPSE, where={"alpha": 0.0}, runs=runs(0.0), detail=detail(0.0, "a_learn"),
              **common("a_learn")),
        claim("blocks-limit-alearn-alpha-half", "§7", "in the limit, the inner rate × √K (α = 1/2) keeps the first "
              "internal layer's own feature learning as K grows", pl, file, "grid", "a_learn", paper="persists",
              alt=_COLLAPSED, where={"alpha": 0.5}, runs=runs(0.5), detail=detail(0.5, "a_learn"),
              **common("a_learn")),
        claim("blocks-limit-alearn-alpha1", "§7", "in the limit, α = 1 over-corrects: a_learn grows with K faster "
              "than at α = 1/2", pl, file, "grid", "a_learn", paper="persists", alt=_COLLAPSED,
              where={"alpha": 1.0}, runs=runs(1.0) + runs(0.5), detail=detail(1.0, "a_learn"),
              **common("a_learn"))]
    return [c0, c1] + learn


def _slope_txt(pts: pd.DataFrame, where: dict, y: str = "a_move") -> str:
    ci = interval(select(pts, where), "seed_means", "depth", y)
    return f"{ci.value:.3g} [{ci.low:.3g}, {ci.high:.3g}]"
