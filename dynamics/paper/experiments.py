"""The coupling experiments of issue #4: sweeps that test the paper's rates, with fitted slopes and bootstrap
confidence intervals written next to what the paper states.

    python -m dynamics experiment coupling-width|coupling-depth|gia --out DIR [--profile cpu|gpu]

Each experiment writes ordinary runs under DIR/runs/ (a complete run is reused on a rerun, so a killed
experiment resumes) and DIR/summary.parquet with one row per (quantity, setting): the fitted log-log slope
and its 95% bootstrap interval, the paper's rate, and whether the interval is consistent with it. Every
number is computed here from the runs; nothing is typed in.

Coupling histories are exact only when the probes are the whole training set, trained full-batch and
recorded every step (dynamics.probes.CouplingTracker), so the coupling sweeps use that design.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from ..runs import store
from ..cli import default_run_id
from ..config import RunConfig
from .fits import fit_loglog

EXPERIMENTS = ("coupling-width", "coupling-depth", "gia")
PROFILES = ("cpu", "gpu", "smoke")  # smoke: the tests' tiny version

# profile -> sizes; cpu finishes in minutes on 2 cores, gpu is the paper-sized version
_SIZES = {
    "cpu": dict(widths=[128, 256, 512, 1024], depth=8, depths=[4, 8, 16, 32], width=512, seeds=3, steps=10,
                gia_width=128, gia_depths=[2, 4, 8, 16], gia_steps=60, gia_seeds=2),
    "gpu": dict(widths=[256, 512, 1024, 2048, 4096], depth=32, depths=[4, 8, 16, 32, 64], width=2048,
                seeds=5, steps=20, gia_width=128, gia_depths=[2, 4, 8, 16, 32], gia_steps=500, gia_seeds=5),
    "smoke": dict(widths=[32, 64], depth=2, depths=[2, 4], width=32, seeds=2, steps=2,
                  gia_width=16, gia_depths=[2, 4], gia_steps=3, gia_seeds=1),
}

# (quantity, axis) -> (paper's statement, rate or None, how agreement is judged)
PAPER = {
    ("init_coupling_bwd", "width"): ("at initialisation the coupling is a finite-width effect: O(1/n)", -1.0),
    ("init_coupling_bwd", "depth"): ("at initialisation the coupling is O(1/n) uniformly in L (no growth)", 0.0),
    ("train_coupling_fwd", "width"): ("during training a coupling survives n → ∞ (rate 0 in n)", 0.0),
    ("train_coupling_fwd", "depth"): ("per-block coupling during training is O(L^-2)", -2.0),
    ("step1_coupling_fwd", "width"): ("during training a coupling survives n → ∞ (rate 0 in n)", 0.0),
    ("step1_coupling_fwd", "depth"): ("per-block coupling during training is O(L^-2)", -2.0),
    ("coupling_acc", "depth"): ("its accumulated effect over layers vanishes as L → ∞ (negative rate)", None),
    ("coupling_acc", "width"): ("the accumulated coupling survives n → ∞ (rate 0 in n)", 0.0),
    ("step1_coupling_acc", "depth"): ("its accumulated effect over layers vanishes as L → ∞ (negative rate)",
                                      None),
    ("step1_coupling_acc", "width"): ("the accumulated coupling survives n → ∞ (rate 0 in n)", 0.0),
    ("gia_gap", "depth"): ("reused and decoupled backward come together as L grows only under depth-μP", None),
}


COUPLING_QUANTITIES = ["init_coupling_bwd", "step1_coupling_fwd", "train_coupling_fwd", "step1_coupling_acc",
                       "coupling_acc"]


class ExperimentError(ValueError):
    """An experiment cannot run as asked; the message says why."""


def run_or_reuse(cfg: RunConfig, root: Path, log: Callable[[str], None]) -> Path:
    """Train cfg into root/<deterministic id> unless a complete or diverged run is already there."""
    from ..train import train
    run_dir = root / default_run_id(cfg)
    if (run_dir / store.RUN_JSON).exists():
        try:
            if store.read_meta(run_dir)["status"] in ("complete", "diverged"):
                return run_dir
        except store.RunFormatError:
            pass
        import shutil
        shutil.rmtree(run_dir)
    t0 = time.monotonic()
    train(cfg, run_dir)
    log(f"  {run_dir.name}: {store.read_meta(run_dir)['status']} in {time.monotonic() - t0:.1f} s")
    return run_dir


def _coupling_base(profile: str, device: str) -> RunConfig:
    s = _SIZES[profile]
    # probes = the whole training set, full batch, recorded every step: the exact coupling design
    return RunConfig(task="teacher", train_size=8, probes=8, batch="full", test_size=0, steps=s["steps"],
                     record_every=1, lr=0.5, act="relu", device=device)


def _coupling_quantities(run: Path, steps: int) -> dict[str, float]:
    """Per run: the init coupling (mean over blocks), the training coupling after the first update (where
    THEORY §4 puts an O(1) effect) and averaged over steps 1..S, and the accumulated coupling at the top.

    Each step's split conditions on every earlier step, so coupling_fwd at step t is the coupling carried by
    what is *new* in the features at t; late in training that innovation is small, hence the average."""
    names = ["coupling_bwd", "coupling_fwd", "coupling_acc", "coupling_fwd_chance"]
    df = store.read_metrics(run, metrics=names)
    depth = int(df.layer.max())
    m = lambda name, sel: df[(df.metric == name) & sel].value
    train = df.step >= 1
    top = df.layer == depth
    return {"init_coupling_bwd": m("coupling_bwd", df.step == 0).mean(),
            "step1_coupling_fwd": m("coupling_fwd", df.step == 1).mean(),
            "step1_coupling_fwd_chance": m("coupling_fwd_chance", df.step == 1).mean(),
            "train_coupling_fwd": m("coupling_fwd", train).mean(),
            "step1_coupling_acc": m("coupling_acc", (df.step == 1) & top).mean(),
            "coupling_acc": m("coupling_acc", train & top).mean()}


def _coupling_sweep(axis: str, out: Path, profile: str, device: str, log) -> pd.DataFrame:
    s = _SIZES[profile]
    base = _coupling_base(profile, device)
    points = [(w, s["depth"]) for w in s["widths"]] if axis == "width" else [(s["width"], L) for L in s["depths"]]
    rows = []
    for width, depth in points:
        for seed in range(s["seeds"]):
            cfg = dataclasses.replace(base, width=width, depth=depth, seed=seed)
            run = run_or_reuse(cfg, out / "runs", log)
            if store.read_meta(run)["status"] != "complete":
                continue
            rows.append({"width": width, "depth": depth, "seed": seed, "run_id": run.name,
                         **_coupling_quantities(run, cfg.steps)})
    return pd.DataFrame(rows)


def _gia_settings(profile: str, device: str) -> dict[str, RunConfig]:
    s = _SIZES[profile]
    base = RunConfig(width=s["gia_width"], steps=s["gia_steps"], train_size=256, batch=64, test_size=256,
                     record_every=s["gia_steps"], record_coupling="off", probes=8, lr=0.5, device=device)
    settings = {f"param={p}": dataclasses.replace(base, param=p) for p in ("plain", "mup", "depth-mup")}
    dm = dataclasses.replace(base, param="depth-mup")
    settings.update({
        "depth-mup readout=linear": dataclasses.replace(dm, readout="linear"),
        "depth-mup trained=hidden": dataclasses.replace(dm, trained=("hidden",)),
        "depth-mup loss=xent": dataclasses.replace(dm, task="mixture", loss="xent"),
        "depth-mup lr=0.1": dataclasses.replace(dm, lr=0.1),
    })
    if profile == "smoke":
        settings = {k: settings[k] for k in ("param=plain", "param=depth-mup")}
    return settings


def _gia_sweep(out: Path, profile: str, device: str, log) -> pd.DataFrame:
    s, rows = _SIZES[profile], []
    for name, base in _gia_settings(profile, device).items():
        for depth in s["gia_depths"]:
            for seed in range(s["gia_seeds"]):
                loss = {}
                for backward in ("reused", "decoupled"):
                    cfg = dataclasses.replace(base, depth=depth, seed=seed, backward=backward)
                    run = run_or_reuse(cfg, out / "runs", log)
                    meta = store.read_meta(run)
                    df = store.read_metrics(run, metrics=["loss", "test_loss"], steps=[cfg.steps])
                    loss[backward] = (meta["status"], df.set_index("metric").value.to_dict())
                ok = all(st == "complete" for st, _ in loss.values())
                r, d = loss["reused"][1], loss["decoupled"][1]
                gap = abs(r["test_loss"] - d["test_loss"]) / (0.5 * (r["test_loss"] + d["test_loss"])) if ok \
                    else math.nan
                rows.append({"setting": name, "depth": depth, "seed": seed, "gia_gap": gap,
                             "loss_reused": r.get("loss", math.nan), "loss_decoupled": d.get("loss", math.nan),
                             "test_reused": r.get("test_loss", math.nan),
                             "test_decoupled": d.get("test_loss", math.nan), "diverged": not ok})
    return pd.DataFrame(rows)


def _verdict(fit, rate: float | None, quantity: str, setting: str) -> str:
    if not (math.isfinite(fit.ci_low) and math.isfinite(fit.ci_high)):
        return "no interval (needs 3+ distinct x)"
    if rate is not None:
        return "agrees" if fit.contains(rate) else "disagrees"
    if fit.ci_low <= 0 <= fit.ci_high:
        return "inconclusive"  # the interval allows both a shrinking and a non-shrinking quantity
    vanishes = fit.ci_high < 0
    if quantity == "gia_gap" and not setting.startswith("depth-mup") and setting != "param=depth-mup":
        # the paper: without depth-μP the two backward modes do NOT come together as L grows
        return "disagrees" if vanishes else "agrees"
    if quantity in ("coupling_acc", "step1_coupling_acc", "gia_gap"):  # the claim: a vanishing quantity
        return "agrees" if vanishes else "disagrees"
    return "n/a"


def summarise(points: pd.DataFrame, axis: str, quantities: Iterable[str], experiment: str,
              setting_col: str | None = None) -> pd.DataFrame:
    """One row per (quantity, setting): slope of log quantity vs log axis with a bootstrap CI."""
    rows = []
    groups = points.groupby(setting_col) if setting_col else [("default", points)]
    for setting, g in groups:
        for q in quantities:
            ok = g[np.isfinite(g[q]) & (g[q] > 0)]
            statement, rate = PAPER.get((q, axis), ("", None))
            row = {"experiment": experiment, "quantity": q, "axis": axis, "setting": setting,
                   "paper": statement, "paper_rate": np.nan if rate is None else rate,
                   "n_points": len(ok), "excluded": len(g) - len(ok)}
            if ok[axis].nunique() < 2:
                rows.append({**row, "slope": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                             "verdict": "not enough points"})
                continue
            fit = fit_loglog(ok[axis], ok[q])
            rows.append({**row, "slope": fit.slope, "ci_low": fit.ci_low, "ci_high": fit.ci_high,
                         "verdict": _verdict(fit, rate, q, str(setting))})
    return pd.DataFrame(rows)


def run_experiment(name: str, out: Path, *, profile: str = "cpu", device: str = "auto",
                   log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run one experiment into out/ and return (and write) its summary."""
    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    if profile not in PROFILES:
        raise ExperimentError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    out = store.check_writable(Path(out))
    store.check_writable(out / "runs")
    if name == "gia":
        points = _gia_sweep(out, profile, device, log)
        summary = summarise(points, "depth", ["gia_gap"], name, setting_col="setting")
    else:
        axis = name.split("-")[1]
        points = _coupling_sweep(axis, out, profile, device, log)
        summary = summarise(points, axis, COUPLING_QUANTITIES, name)
    import pyarrow as pa
    store.write_parquet_atomic(out / f"points-{name}.parquet", pa.Table.from_pandas(points, preserve_index=False))
    path = out / "summary.parquet"
    old = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    if not old.empty:
        old = old[old.experiment != name]
    merged = pd.concat([old, summary], ignore_index=True)
    store.write_parquet_atomic(path, pa.Table.from_pandas(merged, preserve_index=False))
    return summary
