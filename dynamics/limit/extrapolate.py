"""`python -m dynamics limit --like RUN --method extrapolate`: the width limit from a ladder of finite runs.

A second route to the width limit, independent of the particle solver (nfd.py): train the setting of RUN at
every width of a ladder (default 256, 512, 1024, 2048) × S seeds (RUN's seed + 0..S−1), and fit, for every
(metric, layer, step) the runs share, the per-width seed means with

    value(n) = a + b/n            (two or three widths)
    value(n) = a + b/n + c/n²     (four or more widths)

by least squares; the intercept `a` is the n → ∞ value. Seed means approach the width limit like 1/n
(docs/theory.md §3: O(n^−1/2) per network, O(1/n) for averages over seeds), hence the model.

The stderr of `a` is the seed noise carried through the fit. `a` is linear in the seed means, a = Σ_w c_w ȳ_w
(c: the first row of the design's pseudo-inverse, the same for every row), so var(a) = Σ_w c_w² σ_w²/S. The
seed variance of a width-n network's value falls like σ²/n (the same CLT that gives the O(n^−1/2)
fluctuation), so σ² is estimated once from all widths, σ̂² = Σ_w n_w s_w² / W (s_w²: the seed variance at width
w, ddof 1), with W·(S − 1) degrees of freedom rather than the S − 1 a per-width estimate would have:

    stderr = σ̂ · √(Σ_w c_w² / n_w / S)

A per-width seed bootstrap was tried first and rejected: with S = 3 seeds it rests on 2 degrees of freedom at
each width and under-covers badly (tests/test_limit_extrapolate.py measures both on synthetic ladders with a
known limit). Where the seed variance does not fall like 1/n, the pooled σ̂² is dominated by the widest
networks, which the extrapolation weights most, so the stderr errs on the large side there. It holds the seed
noise only, not the error of the model (the higher-order terms the fit leaves out). `dof(widths, seeds)`
gives the degrees of freedom for a t interval.

It works for every setting the trainer runs (sp, minibatch SGD, cross-entropy, image tasks: nothing is refused
that `python -m dynamics train` accepts) and fits every metric the runs record except `grad_norm` (a raw-
parameter norm that falls like n^−1/2 under μP, so a + b/n does not describe it; the particle solver leaves it
out too). kernels.parquet and neurons.parquet are extrapolated the same way (values only: their schemas have
no stderr column). The result is the width limit at RUN's own depth (config.depth = RUN's depth), not the
depth-μP continuum.

The ladder's runs are ordinary finite runs under `OUT/<RUN's run_id>_ladder/`, named by
`dynamics.cli.default_run_id(config)` and trained with the sweep machinery (`dynamics.sweep`, local process
pool; `sweep.json` there is its manifest), so a second call, or a call with more widths or seeds, trains only
what is missing: a run whose directory holds the same config with status complete (or diverged: a
divergence is a result and retraining repeats it) is reused, and RUN itself stands for its own (width, seed)
point. The folder holds no run.json, so the dashboard, which lists the runs directly under a folder, does not
show the ladder unless pointed at it.

    from dynamics.limit.extrapolate import extrapolate_like, fit_width_limit
    run_dir = extrapolate_like(Path("runs/my-run"), Path("runs"), widths=(256, 512, 1024, 2048), seeds=3)
    fit = fit_width_limit(frame)   # tidy frame: width, seed, step, layer, metric, value -> ..., value, stderr

torch loads only when the ladder trains (in the sweep's workers) or a device is checked.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..cli import default_run_id, prepare_run_dir
from ..config import ConfigError
from ..runs import store
from ..runs.store import I, J, KIND, LAYER, METRIC, PROBE, QUANTILE, STDERR, STEP, VALUE
from . import LimitError, like_config

__all__ = ["METHODS", "DEFAULT_WIDTHS", "DEFAULT_SEEDS", "SKIPPED_METRICS",
           "parse_widths", "check_ladder", "fit_name", "design", "weights", "dof", "fit_arrays",
           "fit_width_limit", "ladder_folder", "default_name", "extrapolate_like"]

METHODS = ("particles", "extrapolate")
DEFAULT_WIDTHS = (256, 512, 1024, 2048)
DEFAULT_SEEDS = 3
SKIPPED_METRICS = ("grad_norm",)
METRIC_KEYS = (STEP, LAYER, METRIC)
KERNEL_KEYS = (STEP, LAYER, KIND, I, J)
NEURON_KEYS = (STEP, LAYER, PROBE, QUANTILE)
_DONE = ("complete", "diverged")  # dynamics.sweep.DONE, without importing the sweep package at import time

COVERS = ("every setting `python -m dynamics train` runs (any param, sp included; full-batch or minibatch SGD; "
          "MSE or cross-entropy; every task); every metric the ladder records except grad_norm, and the kernels "
          "and neuron quantiles (values only)")
NOT_COVERED = ("grad_norm (a raw-parameter norm: it falls like n^-1/2 under muP, not like a + b/n); the depth "
               "continuum (this is the width limit at the run's own depth); the stderr holds the seed noise only "
               "(pooled over widths under the 1/n variance law), not the error of the model")


# --- input checks: one line each, before anything is written ----------------------------------------------
def parse_widths(text: str) -> tuple[int, ...]:
    """'256,512,1024' -> (256, 512, 1024); LimitError on anything else."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        widths = tuple(int(p) for p in parts)
    except ValueError:
        raise LimitError(f"--widths must be a comma list of integers, e.g. 256,512,1024,2048; got {text!r}") from None
    return widths


def check_ladder(widths: Sequence[int], seeds: int) -> tuple[int, ...]:
    """The widths, sorted; LimitError for fewer than 2 widths, a width ≤ 0, a duplicate, or seeds < 2."""
    widths = tuple(widths)
    if any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) for w in widths):
        raise LimitError(f"widths must be integers; got {list(widths)}")
    if len(widths) < 2:
        raise LimitError(f"--method extrapolate needs at least 2 widths to fit a + b/n; got {list(widths)}")
    if min(widths) <= 0:
        raise LimitError(f"widths must be positive; got {list(widths)}")
    if len(set(widths)) < len(widths):
        dup = sorted({w for w in widths if widths.count(w) > 1})
        raise LimitError(f"--widths lists {', '.join(map(str, dup))} twice; give each width once")
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 2:
        raise LimitError(f"--seeds must be at least 2 (the stderr needs a seed variance at each width); "
                         f"got {seeds!r}")
    return tuple(sorted(int(w) for w in widths))


def fit_name(n_widths: int) -> str:
    return "a + b/n" if n_widths <= 3 else "a + b/n + c/n^2"


# --- the fit ------------------------------------------------------------------------------------------------
def design(widths: Sequence[int]) -> np.ndarray:
    """The W × p design matrix in x = min(widths)/n (columns 1, x[, x²]); the intercept is that of 1, 1/n[, 1/n²],
    the scaling only keeps the columns of comparable size."""
    n = np.asarray(widths, dtype=np.float64)
    x = n.min() / n
    return np.stack([x ** k for k in range(2 if len(n) <= 3 else 3)], axis=1)


def weights(widths: Sequence[int]) -> np.ndarray:
    """c (W,): the intercept of the least-squares fit is Σ_w c_w ȳ_w."""
    X = design(widths)
    return np.linalg.lstsq(X, np.eye(len(widths)), rcond=None)[0][0]


def dof(widths: Sequence[int], seeds: int) -> int:
    """Degrees of freedom of the pooled seed variance, W·(S − 1)."""
    return len(widths) * (seeds - 1)


def fit_arrays(Y: np.ndarray, widths: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Y (R, W, S): values of R rows at W widths × S seeds (finite). Returns (intercept, stderr), each (R,):
    the least-squares intercept of the seed means (`design`) and the pooled seed-noise stderr (module
    docstring)."""
    Y = np.asarray(Y, dtype=np.float64)
    R, W, S = Y.shape
    if W != len(widths):
        raise ValueError(f"Y has {W} widths but {len(widths)} were given")
    if S < 2:
        raise ValueError(f"the stderr needs at least 2 seeds per width; got {S}")
    n = np.asarray(widths, dtype=np.float64)
    c = weights(widths)
    ybar = Y.mean(axis=2)                                            # (R, W)
    s2 = Y.var(axis=2, ddof=1)                                       # (R, W)
    sigma2 = (s2 * n).mean(axis=1)                                   # σ̂²: the variance of a width-1 network
    return ybar @ c, np.sqrt(sigma2 * float((c ** 2 / n).sum()) / S)


def fit_width_limit(frame: pd.DataFrame, widths: Sequence[int] | None = None, *,
                    keys: Sequence[str] = METRIC_KEYS) -> pd.DataFrame:
    """A tidy frame (width, seed, *keys, value) -> one row per key with the width limit: *keys, value, stderr.

    `widths` picks the widths to fit (default: all in the frame); every width needs the same number of seeds
    (the seed labels may differ). A key is fitted only where every (width, seed) has a finite value (a step
    missing from one run, or a NaN there, drops that key); the count dropped is in `result.attrs["dropped"]`.
    Rows come out sorted by keys."""
    keys = list(keys)
    out_cols = [*keys, VALUE, STDERR]
    missing = [c for c in ("width", "seed", *keys, VALUE) if c not in frame.columns]
    if missing:
        raise ValueError(f"fit_width_limit needs columns width, seed, {', '.join(keys)}, value; "
                         f"missing {', '.join(missing)}")
    if widths is not None:
        want = check_ladder(widths, 2)
        frame = frame[frame["width"].isin(want)]
    if frame.empty:
        res = pd.DataFrame({c: pd.Series(dtype=frame[c].dtype) for c in keys})
        res[VALUE], res[STDERR] = pd.Series(dtype=float), pd.Series(dtype=float)
        res.attrs["dropped"] = 0
        return res[out_cols]
    w_all = frame["width"].to_numpy()
    wv, wi = np.unique(w_all, return_inverse=True)
    if widths is not None and len(wv) < len(want):
        raise ValueError(f"widths {sorted(set(want) - set(wv.tolist()))} have no rows")
    check_ladder(tuple(int(w) for w in wv), 2)
    sv, si = np.unique(frame["seed"].to_numpy(), return_inverse=True)
    present = np.zeros((len(wv), len(sv)), dtype=bool)
    present[wi, si] = True
    counts = present.sum(axis=1)
    if (counts != counts[0]).any():
        raise ValueError("every width needs the same number of seeds; got "
                         + ", ".join(f"{w}: {k}" for w, k in zip(wv.tolist(), counts.tolist())))
    S = int(counts[0])
    if S < 2:
        raise ValueError(f"the stderr needs at least 2 seeds per width; got {S}")
    rank = (np.cumsum(present, axis=1) - 1)[wi, si]                  # the seed's index within its width
    kc = frame.groupby(keys, sort=True, observed=True, dropna=False).ngroup().to_numpy()   # key index
    first = np.unique(kc, return_index=True)[1]
    key_values = {k: frame[k].to_numpy()[first] for k in keys}
    R, W = int(kc.max()) + 1, len(wv)
    cell = (kc * W + wi) * S + rank
    if np.bincount(cell, minlength=R * W * S).max() > 1:
        raise ValueError("a (width, seed) has two rows for the same key; the frame must be tidy")
    Y = np.full(R * W * S, np.nan)
    Y[cell] = frame[VALUE].to_numpy(dtype=np.float64, na_value=np.nan)
    Y = Y.reshape(R, W, S)
    ok = np.isfinite(Y).all(axis=(1, 2))
    a, se = fit_arrays(Y[ok], wv.tolist())
    res = pd.DataFrame({k: v[ok] for k, v in key_values.items()})
    res[VALUE], res[STDERR] = a, se
    res.attrs["dropped"] = int((~ok).sum())
    return res[out_cols]


# --- the ladder and the run -----------------------------------------------------------------------------------
def ladder_folder(out: Path, like_id: str) -> Path:
    """Where the ladder of a run trains: OUT/<its run_id>_ladder (shared by every --widths/--seeds choice)."""
    return Path(out) / store.check_run_id(f"{like_id}_ladder"[-200:].lstrip("._=+-"))


def default_name(like_id: str, widths: Sequence[int], seeds: int) -> str:
    return f"{like_id}_limit-extrapolate-n{'-'.join(map(str, widths))}-s{seeds}"[-200:].lstrip("._=+-")


def _read_config(run_dir: Path) -> tuple[str | None, dict | None]:
    """(status, config) of an existing run directory; (None, None) when there is none or it is unreadable."""
    try:
        meta = store.read_meta(run_dir)
    except store.RunFormatError:
        return None, None
    return meta.get("status"), meta.get("config")


def extrapolate_like(like: Path, out: Path, *, widths: Sequence[int] = DEFAULT_WIDTHS, seeds: int = DEFAULT_SEEDS,
                     name: str | None = None, overwrite: bool = False, progress: bool = False,
                     device: str = "auto", workers: int | None = None) -> Path:
    """Train the width ladder of the run in `like` (what is missing), extrapolate to n → ∞ and write the
    result to out/name as a run of kind limit; returns its directory (module docstring).

    device auto keeps the run's own `device` setting for the ladder; cpu or cuda[:N] trains the ladder there
    (the ladder's configs, and so their names, then say that device, and RUN is reused only if it says the
    same). workers: parallel ladder runs (default: the sweep's, one per core or per GPU when several).
    overwrite replaces an existing limit run of that name, never a ladder run."""
    t0 = time.monotonic()
    widths = check_ladder(widths, seeds)
    like = Path(like)
    meta = store.read_meta(like)
    cfg = like_config(meta, like)
    try:
        base = cfg if device == "auto" else dataclasses.replace(cfg, device=device)
    except ConfigError as e:
        raise LimitError(f"--device: {e}") from None
    if base.device != "auto":
        from ..train import resolve_device  # a missing GPU fails here, not in every ladder run
        resolve_device(base.device)
    run_id = name or default_name(meta["run_id"], widths, seeds)
    if not overwrite:  # a name collision fails before any training; --overwrite replaces only at the end
        prepare_run_dir(str(out), run_id, cfg, False)
    else:
        store.check_run_id(run_id)
    from ..sweep.plan import plan_sweep, run_sweep, unfinished
    folder = ladder_folder(Path(out), meta["run_id"])
    seed_values = [cfg.seed + k for k in range(seeds)]
    sweep = plan_sweep(base, {"width": list(widths), "seed": seed_values}, str(folder))
    points: dict[str, dict[str, Any]] = {}
    reuse_like = meta["kind"] == "finite" and meta.get("status") in _DONE
    for task in sweep.tasks:
        point = {"width": task.config["width"], "seed": task.config["seed"], "run_id": task.name,
                 "path": str(folder / task.name), "reused": False}
        if reuse_like and meta["config"] == task.config:
            point.update(run_id=meta["run_id"], path=str(like), reused=True)
        else:
            status, config = _read_config(folder / task.name)
            if config is not None and config != task.config:
                raise LimitError(f"{folder / task.name} holds a run of another config; move it away, then rerun")
            point["reused"] = status in _DONE
        points[task.name] = point
    sweep.tasks = [t for t in sweep.tasks if points[t.name]["path"] != str(like)]
    manifest = run_sweep(sweep, backend="local", workers=workers, progress=progress)
    if why := unfinished(manifest, folder, "ladder run"):
        raise LimitError(why)
    metas = {p["path"]: store.read_meta(Path(p["path"])) for p in points.values()}
    fits, dropped = {}, {}
    for file, keys in ((store.METRICS, METRIC_KEYS), (store.KERNELS, KERNEL_KEYS), (store.NEURONS, NEURON_KEYS)):
        frame = _gather(points.values(), file)
        if file == store.METRICS:
            frame = frame[~frame[METRIC].isin(SKIPPED_METRICS)]
        fits[file] = fit_width_limit(frame, keys=keys)
        dropped[file] = fits[file].attrs.get("dropped", 0)
    m = fits[store.METRICS]
    diverged = sorted(p for p, mt in metas.items() if mt["status"] == "diverged")
    section: dict[str, Any] = {
        "method": "extrapolate", "widths": list(widths), "seeds": seeds, "seed_values": seed_values,
        "fit": fit_name(len(widths)), "dof": dof(widths, seeds),
        "ladder_folder": str(folder),
        "ladder": [{k: p[k] for k in ("width", "seed", "run_id", "path")} for p in
                   sorted(points.values(), key=lambda p: (p["width"], p["seed"]))],
        "ladder_trained": sum(not p["reused"] for p in points.values()),
        "like": meta["run_id"], "like_path": str(like), "finite_depth": cfg.depth, "finite_width": cfg.width,
        "skipped_metrics": list(SKIPPED_METRICS), "rows_dropped": dropped,
        "stderr": "seed noise through the fit: sigma^2/n pooled over widths (W*(S-1) dof), "
                  "sqrt(sum_w c_w^2 sigma^2 / (n_w S))",
        "covers": COVERS, "not_covered": NOT_COVERED}
    if diverged:
        section["warning"] = (f"{len(diverged)} ladder run(s) diverged (e.g. {diverged[0]}): only the steps "
                              f"before the first divergence are extrapolated")
    first = next(iter(metas.values()))
    run_dir = prepare_run_dir(str(out), run_id, cfg, overwrite)
    # paths relative to the limit run, as the particle solver's like_path: a moved or bundled set keeps no
    # path of the machine that made it
    rel = lambda p: os.path.relpath(p, run_dir)  # noqa: E731
    section["ladder_folder"], section["like_path"] = rel(folder), rel(like)
    for entry in section["ladder"]:
        entry["path"] = rel(entry["path"])
    writer = store.RunWriter(run_dir, {
        "run_id": run_dir.name, "kind": "limit", "config": cfg.to_dict(), "limit": section,
        "probe_ids": list(range(cfg.probes)), "probe_source": "first training inputs",
        "quantiles": first.get("quantiles", []), "versions": first.get("versions", {}),
        "device": first.get("device", ""), "device_name": first.get("device_name", platform.processor()),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "steps_done": int(m[STEP].max()) if len(m) else 0}, stderr=True)
    writer.add(store.METRICS, **{c: m[c].to_numpy() for c in (STEP, LAYER, METRIC, VALUE, STDERR)})
    for file, keys in ((store.KERNELS, KERNEL_KEYS), (store.NEURONS, NEURON_KEYS)):
        f = fits[file]
        writer.add(file, **{c: f[c].to_numpy() for c in (*keys, VALUE)})
    writer.finish("diverged" if diverged else "complete", wall_seconds=round(time.monotonic() - t0, 3))
    return run_dir


def _gather(points, file: str) -> pd.DataFrame:
    """One tidy frame of `file` over the ladder, with width and seed columns."""
    reader = {store.METRICS: store.read_metrics, store.KERNELS: store.read_kernels,
              store.NEURONS: store.read_neurons}[file]
    parts = []
    for p in points:
        df = reader(Path(p["path"]))
        if STDERR in df.columns:
            df = df.drop(columns=STDERR)
        parts.append(df.assign(width=p["width"], seed=p["seed"]))
    return pd.concat(parts, ignore_index=True)
