"""The coupling experiments of issue #4 and the reused-vs-decoupled twins (dynamics.paper.gia): sweeps that test
the paper's rates, with fitted slopes and bootstrap
confidence intervals written next to what the paper states.

    python -m dynamics experiment coupling-width|coupling-depth|gia --out DIR [--profile cpu|gpu]

Each experiment writes ordinary runs under DIR/runs/ (a complete run is reused on a rerun, so a killed
experiment resumes), DIR/points-<name>.parquet (one row per run or twin pair) and DIR/summary.parquet with one
row per (quantity, setting): the slope of log(seed mean) vs log size, its 95% paired seed-bootstrap interval,
the paper's value, the alternative it is tested against, and the verdict (dynamics.paper.stats.verdict).
Coupling quantities come raw, as their chance level (`_chance`) and as the excess over it (`_excess`); the
training-time ones are fitted on the excess. Every number is computed here from the runs; nothing is typed in.

Coupling histories are exact only when the probes are the whole training set, trained full-batch and
recorded every step (dynamics.probes.CouplingTracker), so the coupling sweeps use that design.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from ..runs import store
from ..cli import default_run_id
from ..config import RunConfig
from . import gia
from . import verdicts as V
from .stats import Alternative
from .kinds import judge

EXPERIMENTS = ("coupling-width", "coupling-depth", "gia")
PROFILES = ("cpu", "gpu", "smoke")  # smoke: the tests' tiny version

# profile -> sizes; cpu finishes in minutes on 2 cores, gpu is the paper-sized version. The coupling sweeps
# use enough seeds for a width-slope interval of the excess narrower than ±0.3 (issue 13).
_SIZES = {
    "cpu": dict(widths=[128, 256, 512, 1024], depth=8, depths=[4, 8, 16, 32], width=512, seeds=8, steps=10,
                gia_width=128, gia_depths=[2, 4, 8, 16], gia_steps=120, gia_seeds=8),
    "gpu": dict(widths=[256, 512, 1024, 2048, 4096], depth=32, depths=[4, 8, 16, 32, 64], width=2048,
                seeds=8, steps=20, gia_width=128, gia_depths=[2, 4, 8, 16, 32], gia_steps=500, gia_seeds=8),
    "smoke": dict(widths=[32, 64], depth=2, depths=[2, 4], width=32, seeds=2, steps=2,
                  gia_width=16, gia_depths=[2, 4], gia_steps=3, gia_seeds=2),
}

_NO_DECAY = Alternative(0.0, "no change with the swept size (slope 0)")
_FINITE = Alternative(-1.0, "a finite-width effect that falls like 1/n, as at initialisation")
_PER_BLOCK = Alternative(-1.0, "O(1/L) per block, i.e. O(1) summed over depth (the power counting)")
_GROWS = Alternative(0.0, "no decay: the quantity does not shrink (slope ≥ 0)", side="ge")
_STREAM_PER_BLOCK = Alternative(-1.0, "an O(1/L) share of the stream per block, i.e. O(1) summed over the L blocks")
# (quantity, axis) -> (paper's statement, its kind (dynamics.paper.kinds), the rate or bound of a rate/bound
# (else None), the alternative)
PAPER = {
    ("init_coupling_bwd", "width"): ("at initialisation the coupling is a finite-width effect: O(1/n)", "rate",
                                     -1.0, _NO_DECAY),
    ("init_coupling_bwd", "depth"): ("at initialisation the coupling is O(1/n) uniformly in L (no growth)", "bound",
                                     0.0, Alternative(0.5, "growth like √L")),
    ("train_coupling_fwd_excess", "width"): ("during training a coupling survives n → ∞", "persists", None,
                                             _FINITE),
    ("train_coupling_fwd_excess", "depth"): ("per-block coupling during training is O(L^-2)", "bound", -2.0,
                                             _PER_BLOCK),
    ("step1_coupling_fwd_excess", "width"): ("during training a coupling survives n → ∞", "persists", None,
                                             _FINITE),
    ("step1_coupling_fwd_excess", "depth"): ("per-block coupling during training is O(L^-2)", "bound", -2.0,
                                             _PER_BLOCK),
    ("coupling_acc_excess", "depth"): ("its accumulated effect over layers vanishes as L → ∞", "vanishes", None,
                                       _GROWS),
    ("coupling_acc_excess", "width"): ("the accumulated coupling survives n → ∞", "persists", None, _FINITE),
    ("step1_coupling_acc_excess", "depth"): ("its accumulated effect over layers vanishes as L → ∞", "vanishes",
                                             None, _GROWS),
    ("step1_coupling_acc_excess", "width"): ("the accumulated coupling survives n → ∞", "persists", None, _FINITE),
    ("step1_coupling_fwd_stream_excess", "depth"): ("per-block coupling during training is O(L^-2) as a share of "
                                                    "the stream", "bound", -2.0, _STREAM_PER_BLOCK),
    ("train_coupling_fwd_stream_excess", "depth"): ("per-block coupling during training is O(L^-2) as a share of "
                                                    "the stream", "bound", -2.0, _STREAM_PER_BLOCK),
    ("gap_train", "depth"): ("reused and decoupled backward come together as L grows only under depth-μP",
                             "vanishes", None, _GROWS),
}

# raw series, their chance levels (same name + _chance) and excess (+ _excess) are all in the points files
COUPLING_RAW = ["init_coupling_bwd", "step1_coupling_fwd", "train_coupling_fwd", "step1_coupling_acc",
                "coupling_acc"]
# what the summary fits: the init coupling raw (it *is* projection noise, the claim is about that level), the
# training-time couplings as excess over chance (docs/theory.md: the raw split mixes an O(1/n) floor with the signal)
COUPLING_QUANTITIES = ["init_coupling_bwd", "step1_coupling_fwd_excess", "train_coupling_fwd_excess",
                       "step1_coupling_acc_excess", "coupling_acc_excess"]


def add_readings(points: pd.DataFrame) -> pd.DataFrame:
    """The coupling in its other normalisations (statements.READINGS), each raw, `_chance` and `_excess`:
    `<q>_stream` = (β²/L)·q for the per-block q = step1_coupling_fwd, train_coupling_fwd (its share of the residual
    stream), and the incoherent accumulated sums `step1_coupling_acc_inc` = β²·step1_coupling_fwd and
    `coupling_acc_inc` = β²·train_coupling_fwd, i.e. (β²/L)·Σ_k coupling_fwd(k) at the top (the mean over blocks is
    Σ_k/L); coupling_acc is the coherent one. β: the points' `beta` column, else RunConfig's default (the sweeps
    leave it). The chance level of the incoherent sum equals coupling_acc's (docs/theory.md §5)."""
    out = points.copy()
    if out.empty:
        return out
    b2 = out["beta"] ** 2 if "beta" in out else RunConfig.__dataclass_fields__["beta"].default ** 2
    for suf in ("", "_chance", "_excess"):
        for q in ("step1_coupling_fwd", "train_coupling_fwd"):
            out[f"{q}_stream{suf}"] = b2 / out.depth * out[q + suf]
        out[f"step1_coupling_acc_inc{suf}"] = b2 * out[f"step1_coupling_fwd{suf}"]
        out[f"coupling_acc_inc{suf}"] = b2 * out[f"train_coupling_fwd{suf}"]
    return out


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
    docs/theory.md §4 puts an O(1) effect) and averaged over steps 1..S, and the accumulated coupling at the top;
    each with its chance level (`_chance`, the same split with an independent matrix) and the excess over it
    (`_excess` = raw − chance, which may be negative for one seed).

    Each step's split conditions on every earlier step, so coupling_fwd at step t is the coupling carried by
    what is *new* in the features at t; late in training that innovation is small, hence the average."""
    names = ["coupling_bwd", "coupling_fwd", "coupling_acc", "coupling_fwd_chance", "coupling_bwd_chance",
             "coupling_acc_chance"]
    df = store.read_metrics(run, metrics=names)
    depth = int(df.layer.max())
    m = lambda name, sel: df[(df.metric == name) & sel].value
    train, top, one = df.step >= 1, df.layer == depth, df.step == 1
    out = {}
    for q, metric, sel in (("init_coupling_bwd", "coupling_bwd", df.step == 0),
                           ("step1_coupling_fwd", "coupling_fwd", one), ("train_coupling_fwd", "coupling_fwd", train),
                           ("step1_coupling_acc", "coupling_acc", one & top), ("coupling_acc", "coupling_acc", train & top)):
        raw, chance = m(metric, sel).mean(), m(f"{metric}_chance", sel).mean()
        out.update({q: raw, f"{q}_chance": chance, f"{q}_excess": raw - chance})
    return out


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
            rows.append({"width": width, "depth": depth, "seed": seed, "beta": cfg.beta, "run_id": run.name,
                         **_coupling_quantities(run, cfg.steps)})
    return add_readings(pd.DataFrame(rows))


def summarise(points: pd.DataFrame, axis: str, quantities: Iterable[str], experiment: str,
              setting_col: str | None = None) -> pd.DataFrame:
    """One row per (quantity, setting): the slope of log(mean over seeds of the quantity) vs log axis with a
    paired seed-bootstrap interval (a points bootstrap when there is no seed column), and the verdict of
    its kind (dynamics.paper.kinds) against PAPER's value and alternative."""
    rows = []
    groups = points.groupby(setting_col) if setting_col else [("default", points)]
    method = "seed_means" if "seed" in points.columns else "points"
    for setting, g in groups:
        for q in quantities:
            statement, kind, value, alt = PAPER.get((q, axis), ("", None, None, _NO_DECAY))
            ok = g[np.isfinite(g[q])]
            row = {"experiment": experiment, "quantity": q, "axis": axis, "setting": setting, "paper": statement,
                   "kind": kind or "", "paper_rate": value if value is not None else np.nan, "alternative": alt.words,
                   "n_points": len(ok), "excluded": len(g) - len(ok)}
            ci = V.interval(ok, method, axis, q)
            if kind is None:
                verdict, why = "n/a", "no statement of the paper for this quantity and axis"
            else:
                verdict, why = judge(kind, ci, value, alt)
            rows.append({**row, "slope": ci.value, "ci_low": ci.low, "ci_high": ci.high, "verdict": verdict,
                         "why": why})
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
        points = gia.twins(out, _SIZES[profile], profile, device, log, run_or_reuse)
    else:
        points = _coupling_sweep(name.split("-")[1], out, profile, device, log)
    summary = summary_of(name, points)
    import pyarrow as pa
    store.write_parquet_atomic(out / f"points-{name}.parquet", pa.Table.from_pandas(points, preserve_index=False))
    write_summary(out, name, summary)
    return summary


def summary_of(name: str, points: pd.DataFrame) -> pd.DataFrame:
    """The summary rows of experiment `name` from its points (summarise with that experiment's quantities)."""
    if name == "gia":
        return summarise(points, "depth", ["gap_train"], name, setting_col="setting")
    return summarise(points, name.split("-")[1], COUPLING_QUANTITIES, name)


def write_summary(out: Path, name: str, summary: pd.DataFrame) -> None:
    """Replace experiment `name`'s rows of out/summary.parquet by `summary`."""
    import pyarrow as pa
    path = out / "summary.parquet"
    old = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    if not old.empty:
        old = old[old.experiment != name]
    merged = pd.concat([old, summary], ignore_index=True)
    store.write_parquet_atomic(path, pa.Table.from_pandas(merged, preserve_index=False))
