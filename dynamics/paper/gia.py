"""Reused vs decoupled backward (the paper's Fig. 2), powered: paired twins and the limit engine's reference.

Twins: for every (setting, depth, seed) one `reused` and one `decoupled` run with the same seed, hence the same
W(0), data and batch order; only the backward pass differs. Per pair the signed relative gaps
    gap_train = (loss_dec − loss_reu) / ½(loss_dec + loss_reu)   (training loss, mean over the last 10% of steps)
    gap_test  = the same with the final test loss
are positive when the decoupled twin is worse. A claim fits the slope of log(mean over seeds of gap) vs log L
with a paired bootstrap over seeds (dynamics.paper.verdicts). `gia_gap` = |gap_test| is kept for old readers.

Limit reference (noise-free in the sense of no finite width): the loss of `--coupling full` and `--coupling
none` limit runs of the full-batch depth-μP setting on depth grids K = 2…64, with common random numbers, and
their signed relative gap per K (points-gia-limit.parquet); the same on the digits images with cross-entropy
(10 outputs, points-gia-limit-xent.parquet).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd

from ..config import RunConfig
from ..runs import store

# profile -> limit-gap sizes: the depth grids, particles, and the steps/train size of the limit setting. Each of
# the 4 replicas holds m = M/4 particles, an exact sample of a width-m net, so m must be well above
# 2·T·P (T = steps + 1, P = inputs): below it the solver's histories are rank-deficient and it diverged here
# (m = 128 and 256 against 2·T·P = 672 at 20 steps and 16 inputs).
LIMIT_SIZES = {"smoke": dict(grids=[2, 4, 8], particles=128, steps=2, train_size=4),
               "cpu": dict(grids=[2, 4, 8, 16, 32, 64], particles=2048, steps=10, train_size=8),
               "gpu": dict(grids=[2, 4, 8, 16, 32, 64, 128], particles=16384, steps=20, train_size=32)}
# the same on the digits images with cross-entropy (C = 10): the backward carries Nb = probes + inputs directions
# per step instead of P, so the histories hold T·(2P + Pp) columns and m = M/4 must stay well above 2·T·(P + Nb)
# (cpu: m = 512 against 2·7·24 = 336; both couplings on all grids: 38 s by dynamics.limit.cost on one quiet thread,
# 455 s measured on the shared 2-core machine at load average 6-8)
LIMIT_XENT_SIZES = {"smoke": dict(grids=[2, 4, 8], particles=512, steps=2, train_size=4),
                    "cpu": dict(grids=[2, 4, 8, 16, 32, 64], particles=2048, steps=6, train_size=8),
                    "gpu": dict(grids=[2, 4, 8, 16, 32, 64, 128], particles=16384, steps=20, train_size=32)}
LIMIT_SETTING = "depth-mup batch=full"
LIMIT_LR = 0.25  # the full-batch twins and their limit reference (the minibatch twins use 0.5)


def settings(s: dict, profile: str, device: str) -> dict[str, RunConfig]:
    """name -> base config (depth, seed and backward are set per run). Minibatch teacher for the three
    parametrizations; full-batch twins (the setting the limit engine can also run); the digits images with
    cross-entropy (a real-data task that needs no download); the gpu profile adds the older variants."""
    base = RunConfig(width=s["gia_width"], steps=s["gia_steps"], train_size=256, batch=64, test_size=256,
                     record_every=s["gia_steps"], record_coupling="off", probes=8, lr=0.5, device=device)
    out = {f"param={p}": dataclasses.replace(base, param=p) for p in ("plain", "mup", "depth-mup")}
    ls = LIMIT_SIZES[profile]  # full-batch twins: the limit reference's setting, at the twins' width
    full = dataclasses.replace(base, train_size=ls["train_size"], batch="full", steps=ls["steps"], lr=LIMIT_LR,
                               record_every=ls["steps"], test_every=ls["steps"], probes=min(8, ls["train_size"]))
    digits = dataclasses.replace(base, task="digits", loss="xent", classes=10, train_size=512, test_size=512)
    for p in ("depth-mup", "mup"):
        out[f"{p} batch=full"] = dataclasses.replace(full, param=p)
        out[f"{p} task=digits"] = dataclasses.replace(digits, param=p)
    if profile == "gpu":
        dm = out["param=depth-mup"]
        out.update({"depth-mup readout=linear": dataclasses.replace(dm, readout="linear"),
                    "depth-mup trained=hidden": dataclasses.replace(dm, trained=("hidden",)),
                    "depth-mup lr=0.1": dataclasses.replace(dm, lr=0.1)})
    if profile == "smoke":
        out = {k: out[k] for k in ("param=plain", "param=depth-mup", "depth-mup batch=full",
                                   "depth-mup task=digits")}
    return out


def _final(run: Path, steps: int) -> tuple[str, float, float]:
    """(status, training loss averaged over the last 10% of steps, final test loss)."""
    status = store.read_meta(run)["status"]
    df = store.read_metrics(run, metrics=["loss", "test_loss"])
    tail = df[(df.metric == "loss") & (df.step > steps - max(1, steps // 10))].value
    test = df[(df.metric == "test_loss") & (df.step == steps)].value
    return status, float(tail.mean()) if len(tail) else math.nan, float(test.iloc[0]) if len(test) else math.nan


def _rel(dec: float, reu: float) -> float:
    return (dec - reu) / (0.5 * (dec + reu)) if math.isfinite(dec) and math.isfinite(reu) else math.nan


def twins(out: Path, s: dict, profile: str, device: str, log, run_or_reuse) -> pd.DataFrame:
    """Train every twin pair and return one row per (setting, depth, seed)."""
    rows = []
    for name, base in settings(s, profile, device).items():
        for depth in s["gia_depths"]:
            for seed in range(s["gia_seeds"]):
                got, ids = {}, {}
                for backward in ("reused", "decoupled"):
                    cfg = dataclasses.replace(base, depth=depth, seed=seed, backward=backward)
                    run = run_or_reuse(cfg, out / "runs", log)
                    got[backward], ids[backward] = _final(run, cfg.steps), run.name
                ok = all(st == "complete" for st, _, _ in got.values())
                (_, lr_, tr_), (_, ld, td) = got["reused"], got["decoupled"]
                gt = _rel(td, tr_) if ok else math.nan
                rows.append({"setting": name, "depth": depth, "seed": seed,
                             "gap_train": _rel(ld, lr_) if ok else math.nan, "gap_test": gt,
                             "gia_gap": abs(gt), "loss_reused": lr_, "loss_decoupled": ld, "test_reused": tr_,
                             "test_decoupled": td, "diverged": not ok, "run_reused": ids["reused"],
                             "run_decoupled": ids["decoupled"]})
    df = pd.DataFrame(rows)
    # a depth enters the fits only if at least 3/4 of its seeds (and 2) trained in both twins: all-diverged
    # depths (e.g. width-only μP at L = 16 with lr 0.5) have no gap, and with half the seeds diverged over 2.5%
    # of seed resamples would hold no trained pair at that depth, leaving the statistic undefined
    good = (~df.diverged).groupby([df.setting, df.depth]).transform("sum")
    df["usable"] = ~df.diverged & (good >= max(2, math.ceil(0.75 * df.seed.nunique())))
    return df


def limit_gap(out: Path, profile: str, device: str, log, run_or_reuse, make_limit) -> pd.DataFrame:
    """Loss of coupling full vs none limit runs over the depth grids K, for the full-batch depth-μP setting
    (its width and depth do not enter the limit; its seed fixes nothing the limit uses but the data)."""
    ls = LIMIT_SIZES[profile]
    like_cfg = RunConfig(param="depth-mup", width=64, depth=2, steps=ls["steps"], train_size=ls["train_size"],
                         batch="full", test_size=0, probes=min(8, ls["train_size"]), record_every=ls["steps"],
                         test_every=ls["steps"], record_coupling="off", lr=LIMIT_LR, device=device)
    return _gap_over_grids(run_or_reuse(like_cfg, out / "runs", log), out, ls, device, make_limit)


def limit_gap_xent(out: Path, profile: str, device: str, log, run_or_reuse, make_limit) -> pd.DataFrame:
    """The same reference on a classification task with cross-entropy: the digits images (C = 10 outputs),
    full batch of LIMIT_XENT_SIZES' train_size images (the limit conditions on every training input, so the
    finite digits twins' minibatches of 512 images are out of reach), depth-μP, lr LIMIT_LR."""
    ls = LIMIT_XENT_SIZES[profile]
    like_cfg = RunConfig(param="depth-mup", task="digits", loss="xent", classes=10, width=64, depth=2,
                         steps=ls["steps"], train_size=ls["train_size"], batch="full", test_size=0,
                         probes=min(8, ls["train_size"]), record_every=ls["steps"], test_every=ls["steps"],
                         record_coupling="off", lr=LIMIT_LR, device=device)
    return _gap_over_grids(run_or_reuse(like_cfg, out / "runs", log), out, ls, device, make_limit)


def _gap_over_grids(like: Path, out: Path, ls: dict, device: str, make_limit) -> pd.DataFrame:
    """One row per K of ls["grids"]: final loss (and its MC stderr) of the coupling full and none limit runs of
    `like` (same particle seed: common random numbers) and their signed relative gap (none − full)/mean."""
    rows = []
    for K in ls["grids"]:
        loss = {}
        for coupling in ("full", "none"):
            run = make_limit(like, out / "runs", K, ls["particles"], coupling, device)
            df = store.read_metrics(run, metrics=["loss"])
            last = df[df.step == df.step.max()]
            ok = store.read_meta(run)["status"] == "complete" and len(last)
            loss[coupling] = (float(last.value.iloc[0]) if ok else math.nan,
                              float(last.stderr.iloc[0]) if ok and "stderr" in last else math.nan, run.name)
        (lf, sf, rf), (ln, sn, rn) = loss["full"], loss["none"]
        gap = _rel(ln, lf)
        rows.append({"grid": K, "loss_full": lf, "loss_none": ln, "stderr_full": sf, "stderr_none": sn,
                     "gap": gap, "gap_abs": abs(gap), "run_full": rf, "run_none": rn, "like": like.name,
                     "steps": ls["steps"], "particles": ls["particles"]})
    return pd.DataFrame(rows)
