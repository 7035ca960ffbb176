"""Claims from sweeps of finite networks: the transpose coupling (fitted on the excess over chance), the
feature–gradient covariance (Fig. 3), reused vs decoupled twins (Fig. 2: minibatch, full batch, digits) and
learning-rate transfer as a contrast depth-μP vs μP (two-layer blocks: dynamics.paper.blocks).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..runs import store
from .common import COUPLING_PAGE, SCALING_PAGE, TRAJ_PAGE, save
from .experiments import PAPER, add_readings, run_experiment, run_or_reuse
from .stats import Alternative
from .verdicts import claim, interval, lr_optima, select

_COUPLING = "5-the-transpose-coupling-and-its-chance-level"


def coupling_claims(out: Path, profile: str, device: str, log) -> list[dict]:
    for name in ("coupling-width", "coupling-depth"):
        run_experiment(name, out, profile=profile, device=device, log=log)
    pw, pd_ = (pd.read_parquet(out / f"points-{n}.parquet") for n in ("coupling-width", "coupling-depth"))
    return coupling_claims_from(pw, pd_) + [_fg_eigmin(out, pw)]


CPL_SPECS = [  # id, quantity fitted, axis, statement
    ("coupling-init-width", "init_coupling_bwd", "width", None),
    ("coupling-init-depth", "init_coupling_bwd", "depth", "at initialisation the coupling is O(1/n) uniformly "
                                                         "in L (no growth with depth)"),
    ("coupling-step1-width", "step1_coupling_fwd_excess", "width", "after the first update the forward "
                                                                   "coupling above chance survives n → ∞"),
    ("coupling-step1-depth", "step1_coupling_fwd_excess", "depth", "after the first update the per-block "
                                                                   "forward coupling above chance is O(L^-2)"),
    ("coupling-step1-depth-stream", "step1_coupling_fwd_stream_excess", "depth", "after the first update the "
     "per-block forward coupling above chance, as a share of the stream ((β²/L)·coupling_fwd), is O(L^-2)"),
    ("coupling-train-depth", "train_coupling_fwd_excess", "depth", "during training the per-block coupling "
                                                                   "above chance is O(L^-2)"),
    ("coupling-train-depth-stream", "train_coupling_fwd_stream_excess", "depth", "during training the per-block "
     "coupling above chance, as a share of the stream ((β²/L)·coupling_fwd), is O(L^-2)"),
    ("coupling-acc-width", "coupling_acc_excess", "width", "the accumulated coupling above chance survives "
                                                           "n → ∞"),
    ("coupling-acc-depth", "coupling_acc_excess", "depth", "under depth-μP the accumulated coupling over layers "
                                                           "(above its chance level) vanishes as L → ∞"),
]
# the other reading shown beside a claim: per-block message -> its stream share; coherent sum -> incoherent sum
_COMPANION = {"step1_coupling_fwd_excess": ("stream", "step1_coupling_fwd_stream_excess"),
              "train_coupling_fwd_excess": ("stream", "train_coupling_fwd_stream_excess"),
              "coupling_acc_excess": ("incoherent", "coupling_acc_inc_excess")}


def coupling_claims_from(pw: pd.DataFrame, pd_: pd.DataFrame) -> list[dict]:
    """The coupling claims from the two sweeps' points alone (no runs read), so `reproduce --rejudge` makes the
    same ones; the points need experiments.add_readings' columns (added here when missing)."""
    pw, pd_ = (p if "coupling_acc_inc" in p else add_readings(p) for p in (pw, pd_))
    files = {"width": ("points-coupling-width.parquet", pw), "depth": ("points-coupling-depth.parquet", pd_)}
    claims = []
    for cid, q, axis, words in CPL_SPECS:
        file, pts = files[axis]
        statement, _, value, alt = PAPER[(q, axis)]
        raw = q[:-len("_excess")] if q.endswith("_excess") else None
        c = claim(cid, "§5", words or statement, pts, file, axis, q, paper=value, alt=alt, page=COUPLING_PAGE,
                  runs=list(pts.run_id), raw_y=raw, theory=_COUPLING,
                  detail=_coupling_detail(pts, q, axis))
        if raw is None:  # fitted raw (the init coupling *is* projection noise): show the excess beside it
            e = interval(pts, "seed_means", axis, f"{q}_excess")
            c["excess"] = {"y": f"{q}_excess", "measured": e.value, "ci": [e.low, e.high]}
        if q in _COMPANION and (axis == "depth" or _COMPANION[q][0] != "stream"):  # at one L: the same slope
            key, col = _COMPANION[q]
            e = interval(pts, "seed_means", axis, col)
            c[key] = {"y": col, "measured": e.value, "ci": [e.low, e.high], "reading": key}
        claims.append(c)
    return claims


def _coupling_detail(pts: pd.DataFrame, q: str, axis: str) -> str:
    base = q[:-len("_excess")] if q.endswith("_excess") else q
    m = pts.groupby(axis)[[base, f"{base}_chance"]].mean()
    cells = "; ".join(f"{axis} {int(k)}: raw {r[base]:.3g}, chance {r[base + '_chance']:.3g} "
                      f"(excess {(r[base] - r[base + '_chance']) / r[base + '_chance']:+.1%} of chance)"
                      for k, r in m.iterrows())
    return f"seed means ({pts.seed.nunique()} seeds) of {base} and its chance level: {cells}"


def _fg_eigmin(out: Path, runs: pd.DataFrame) -> dict:
    """Fig. 3 on the coupling-width runs (trained, every step recorded): per run the smallest eigenvalue of
    the feature–gradient covariance (metric fg_eigmin), minimised over the steps and layers of training.
    The claim is non-degeneracy uniformly in width; a finite-n sample covariance has its smallest eigenvalue
    biased low (by about (1 − √(2P/n))², Marchenko–Pastur), so it may rise with width towards the limit's."""
    rows = []
    for r in runs.itertuples():
        df = store.read_metrics(out / "runs" / r.run_id, metrics=["fg_eigmin"])
        last = df[df.step == df.step.max()]
        rows.append({"width": r.width, "seed": r.seed, "run_id": r.run_id, "fg_eigmin_min": df.value.min(),
                     "fg_eigmin_final": last.value.min(), "steps": int(df.step.max())})
    pts = pd.DataFrame(rows)
    low = pts.loc[pts.fg_eigmin_min.idxmin()]
    probes = store.read_meta(out / "runs" / low.run_id)["config"]["probes"]
    return claim("fg-eigmin-width", "§7", "the feature–gradient covariance stays non-degenerate during training: "
                 "its smallest eigenvalue is bounded away from 0 uniformly in width (Fig. 3)", pts,
                 save(out, "fg-eigmin", pts), "width", "fg_eigmin_min", paper="persists",
                 alt=Alternative(0.0, "degenerates as n grows (slope < 0)", side="le"), page=TRAJ_PAGE,
                 runs=list(pts.run_id), view={"metric": "fg_eigmin", "view": "Over steps"}, theory="7-claims",
                 detail=f"λ_min of the 2P×2P covariance of [φ(h_ℓ), ĝ_ℓ] over P = {probes} probes, minimised over "
                        f"layers and steps 0..{int(pts.steps.max())}; smallest seen {low.fg_eigmin_min:.3g} "
                        f"(width {int(low.width)}, seed {int(low.seed)})")


def gia_claims(out: Path, profile: str, device: str, log) -> list[dict]:
    """Per setting the slope of the seed-mean signed training-loss gap vs depth; test-loss gap alongside."""
    run_experiment("gia", out, profile=profile, device=device, log=log)
    pts = pd.read_parquet(out / "points-gia.parquet")
    f, claims = "points-gia.parquet", []
    specs = [("gia-depth-mup", "param=depth-mup", "vanishes", "under depth-μP reused and decoupled backward come "
              "together as L grows (Fig. 2, right; minibatch SGD)"),
             ("gia-mup", "param=mup", "persists", "under width-only μP they do not come together as L grows "
              "(Fig. 2, middle)"),
             ("gia-plain", "param=plain", "persists", "in a plain deep net they do not come together as L grows "
              "(Fig. 2, left)"),
             ("gia-fullbatch-depth-mup", "depth-mup batch=full", "vanishes", "under depth-μP, full-batch GD: reused "
              "and decoupled come together as L grows"),
             ("gia-digits-depth-mup", "depth-mup task=digits", "vanishes", "on real images (8×8 digits, "
              "cross-entropy) under depth-μP reused and decoupled come together as L grows"),
             ("gia-digits-mup", "mup task=digits", "persists", "on real images (8×8 digits, cross-entropy) under "
              "width-only μP they do not come together as L grows")]
    for cid, setting, rule, words in specs:
        sel = pts[(pts.setting == setting) & pts.usable]
        if sel.empty:
            continue
        # 'persists' claims are contrasts against depth-μP (statements.STATEMENTS): claim() sets their alternative
        alt = Alternative(0.0, "the gap does not shrink with depth (slope 0)")
        c = claim(cid, "§7", words, pts, f, "depth", "gap_train", paper=rule, alt=alt,
                  where={"setting": setting, "usable": True},
                  page=SCALING_PAGE, runs=list(sel.run_reused) + list(sel.run_decoupled), theory="7-claims",
                  quantity="slope of log(seed mean of the signed relative train-loss gap) vs log depth",
                  detail=_gia_detail(pts, setting))
        test = interval(select(pts, {"setting": setting, "usable": True}), "seed_means", "depth", "gap_test")
        c["test"] = {"y": "gap_test", "measured": test.value, "ci": [test.low, test.high]}
        claims.append(c)
    return claims


def _gia_detail(pts: pd.DataFrame, setting: str) -> str:
    sel = select(pts, {"setting": setting})
    cells = []
    for d, g in sel.groupby("depth"):
        ok = g[~g.diverged]
        if len(ok) < 2:
            cells.append(f"L={int(d)}: {len(g) - len(ok)} of {len(g)} pairs diverged, left out")
            continue
        tr = interval(ok, "seed_mean", "depth", "gap_train")
        te = interval(ok, "seed_mean", "depth", "gap_test")
        cells.append(f"L={int(d)}: train {tr.value:+.3g} [{tr.low:+.3g}, {tr.high:+.3g}], "
                     f"test {te.value:+.3g} [{te.low:+.3g}, {te.high:+.3g}] (losses reused "
                     f"{ok.loss_reused.mean():.3g}, decoupled {ok.loss_decoupled.mean():.3g})")
    return (f"signed relative gap (decoupled − reused)/mean, paired twins (same seed), "
            f"{sel.seed.nunique()} seeds, mean over seeds with 95% interval: " + "; ".join(cells))


def lr_claims(out: Path, s: dict, base: RunConfig, log) -> list[dict]:
    """Full-batch training loss (mean over the last fifth of the steps, where the loss near the edge of stability
    wobbles from step to step) on a log-spaced LR grid for depth-μP and μP, several seeds; the optimum per depth
    is the vertex of a quadratic in log η (stats.lr_optimum) of the seed-mean loss."""
    rows = []
    S = s["lr_steps"]
    cfg1 = dataclasses.replace(base, steps=S, record_every=S, test_every=S, record_coupling="off", train_size=256,
                               batch="full", test_size=0, probes=8)
    for param in ("depth-mup", "mup"):
        for L in s["lr_depths"]:
            for seed in range(s["lr_seeds"]):
                for lr in s["lrs"]:
                    run = run_or_reuse(dataclasses.replace(cfg1, param=param, depth=L, lr=lr, seed=seed),
                                       out / "runs", log)
                    df = store.read_metrics(run, metrics=["loss"])
                    ok = len(df) and store.read_meta(run)["status"] == "complete"
                    tail = df[df.step > S - max(1, S // 5)].value  # edge-of-stability wobble averages out
                    loss = float(tail.mean()) if ok and len(tail) else math.inf
                    last = float(df[df.step == S].value.iloc[0]) if ok and (df.step == S).any() else math.inf
                    rows.append({"param": param, "depth": L, "seed": seed, "lr": lr,
                                 "loss": loss if math.isfinite(loss) else math.inf,
                                 "loss_final": last if math.isfinite(last) else math.inf, "run_id": run.name})
    pl = pd.DataFrame(rows)
    fl = save(out, "lr-transfer", pl)
    mup = interval(select(pl, {"param": "mup"}), "lr_optimum", "depth", "loss")
    opt = {p: lr_optima(select(pl, {"param": p})) for p in ("depth-mup", "mup")}
    ok = {d: v for d, v in opt["mup"].items() if math.isfinite(v)}
    if math.isfinite(mup.value):
        alt = Alternative(mup.value, f"the best LR moves as under width-only μP (slope {mup.value:.3g})")
    elif len(ok) >= 2:  # μP's optimum is undefined at some depth (every η diverged there): fit the others
        slope = float(np.polyfit(np.log(list(ok)), np.log(list(ok.values())), 1)[0])
        alt = Alternative(slope, f"the best LR moves as under width-only μP (slope {slope:.3g} over L = "
                                 f"{', '.join(str(int(d)) for d in ok)}; no optimum on the grid at the other depths)")
    else:
        alt = Alternative(-1.0, "the best LR moves like 1/L")
    words = "; ".join(f"{p}: " + ", ".join(f"L={int(d)} η*={v:.3g}" for d, v in o.items()) for p, o in opt.items())
    c = claim("lr-transfer", "§7", "under depth-μP the best learning rate does not move with depth "
              "(hyperparameter transfer), unlike under width-only μP", pl, fl, "depth", "loss", paper=0.0, alt=alt,
              method="lr_optimum", where={"param": "depth-mup"}, page=SCALING_PAGE,
              runs=list(select(pl, {"param": "depth-mup", "seed": 0}).run_id), theory="7-claims",
              quantity="slope of log η* vs log depth (η*: vertex of a quadratic in log η of the seed-mean loss)",
              detail=f"full-batch training loss averaged over steps {S - max(1, S // 5) + 1}..{S}, "
                     f"lr ∈ {[round(float(v), 4) for v in s['lrs']]}, {s['lr_seeds']} seeds; optima {words}")
    c["contrast"] = {"param": "mup", "measured": alt.value if not math.isfinite(mup.value) else mup.value,
                     "ci": [mup.low, mup.high]}
    return [c]
