"""Cached loaders for the views of a run, built to stay fast on big runs (hundreds of layers × thousands of
recorded steps × several metrics, ~20 M rows).

One metric of one run is read once into a dense (step × layer) grid with DuckDB (only the rows of that
metric, only the columns step, layer, value[, stderr]); every view is then a slice of that grid, reduced on
the server before it is sent (heatmaps pooled to ≤ 500 × 500 cells, curves min/max-bucketed to a few
thousand points, dynamics.figures.reduce). Two cache levels, both `st.cache_data` keyed by path + file
mtime (so a run that is still training is re-read when it flushes): the grid (path, mtime, metric) and each
view's small frame (…, step or layers or step range, smoothing). The `read_*` functions are the uncached
readers (no Streamlit; the benchmark times them); the run-level functions at the bottom take the picker's
runs, return tidy frames with a `run` column, and messages for runs that cannot be read.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import streamlit as st

from dynamics.figures import RUN, SMOOTH, TAU, bin_grid, ema_debiased, minmax_indices
from dynamics.runs.store import LAYER, METRIC, METRICS, NETWORK_LAYER, NEURONS, PROBE, QUANTILE, STDERR, STEP, \
    VALUE, RunFormatError, read_neurons

# What is sent to the browser: heatmap cells (steps × layers; depth ≤ 128 keeps every layer) and points per
# curve. A Plotly heatmap draws in ≈3.5 µs per cell in headless Chromium here: 300 × 129 cells ≈ 0.14 s.
HEAT_STEPS, HEAT_LAYERS, MAX_POINTS = 300, 129, 2000
# config fields a limit run does not pin down: the finite shape, the seed and bookkeeping
SHAPE_FIELDS = ("width", "depth", "seed", "device", "dtype", "record_every", "test_every", "probes",
                "record_coupling", "coupling_window")


# --- uncached readers ------------------------------------------------------------------------------
def _parquet(path: str, file: str) -> str:
    p = Path(path) / file
    if not p.is_file():
        raise RunFormatError(f"{path} has no {file}; the run has not recorded anything yet")
    return str(p)


_DB: list = []  # one in-memory DuckDB for the process, made on first use
_DB_LOCK = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    """A fresh cursor on the process's one DuckDB (≈2 ms; opening a connection per query took ≈35 ms, most of a
    small run's read). A cursor is a connection of its own for one thread, so sessions can query at once."""
    with _DB_LOCK:
        if not _DB:
            _DB.append(duckdb.connect(config={"threads": max(1, min(4, os.cpu_count() or 1)),
                                              "memory_limit": "1GB"}))
        return _DB[0].cursor()


def _query(sql: str, params: list) -> dict[str, np.ndarray]:
    con = _cursor()
    try:
        return con.execute(sql, params).fetchnumpy()
    except duckdb.Error as e:
        raise RunFormatError(f"{params[0]} is not a readable Parquet file ({str(e).splitlines()[0]})") from None
    finally:
        con.close()


def read_catalog(path: str) -> dict[str, tuple[bool, tuple[int, ...]]]:
    """metric -> (network scalar?, recorded steps), from one grouped scan of metrics.parquet (the step lists
    built by DuckDB: a pandas group-by of every (metric, step) took as long again)."""
    f = _parquet(path, METRICS)
    cols = _query("SELECT metric, min(layer) AS lo, max(layer) AS hi, list(DISTINCT step ORDER BY step) AS steps "
                  "FROM read_parquet(?) GROUP BY metric ORDER BY metric", [f])
    return {str(m): (bool(lo == NETWORK_LAYER and hi == NETWORK_LAYER), tuple(int(s) for s in steps))
            for m, lo, hi, steps in zip(cols[METRIC], cols["lo"], cols["hi"], cols["steps"])}


def _dense(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(a, return_inverse=True) for integers, in O(n) when their range is modest (no sort)."""
    a = np.asarray(a, dtype=np.int64)
    if not len(a):
        return a, a
    lo, hi = int(a.min()), int(a.max())
    if hi - lo > 50_000_000:
        return np.unique(a, return_inverse=True)
    present = np.zeros(hi - lo + 1, dtype=bool)
    present[a - lo] = True
    rank = np.cumsum(present) - 1
    return np.flatnonzero(present) + lo, rank[a - lo]


def read_grid(path: str, metric: str) -> dict[str, Any]:
    """One metric as dense arrays: steps (S,), layers (Lp,), value (S, Lp) and stderr (S, Lp) or None;
    NaN where a (step, layer) was not recorded."""
    f = _parquet(path, METRICS)
    try:
        has_se = STDERR in pq.read_schema(f).names
    except Exception as e:  # noqa: BLE001 (arrow raises several types for a damaged footer)
        raise RunFormatError(f"{f} is not a readable Parquet file ({e})") from None
    cols = _query(f"SELECT step, layer, value{', stderr' if has_se else ''} FROM read_parquet(?) "
                  "WHERE metric = ?", [f, metric])
    steps, si = _dense(cols[STEP])
    layers, li = _dense(cols[LAYER])
    grids = {}
    for c in (VALUE, STDERR) if has_se else (VALUE,):
        g = np.full((len(steps), len(layers)), np.nan)
        g[si, li] = np.asarray(cols[c], dtype=float)
        grids[c] = g
    return {"steps": steps.astype(np.int64), "layers": layers.astype(np.int64), VALUE: grids[VALUE],
            STDERR: grids.get(STDERR)}


# --- cached: the grid, then each view's reduced frame ------------------------------------------------
def mtime(path: str, file: str = METRICS) -> int:
    try:
        return (Path(path) / file).stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_data(max_entries=256, show_spinner=False)
def catalog(path: str, mtime_ns: int) -> dict[str, tuple[bool, tuple[int, ...]]]:
    return read_catalog(path)


@st.cache_data(max_entries=8, show_spinner="Reading the run…")
def grid(path: str, mtime_ns: int, metric: str) -> dict[str, Any]:
    return read_grid(path, metric)


def _tau(layers: np.ndarray, depth: int) -> np.ndarray:
    return layers / max(depth, 1)


@st.cache_data(max_entries=64, show_spinner=False)
def profile(path: str, mtime_ns: int, metric: str, depth: int, step: int) -> pd.DataFrame:
    """One step's row of the grid: layer, tau, value[, stderr] (empty when the step was not recorded)."""
    g = grid(path, mtime_ns, metric)
    k = np.searchsorted(g["steps"], step)
    if k >= len(g["steps"]) or g["steps"][k] != step:
        return pd.DataFrame(columns=[LAYER, TAU, VALUE])
    df = pd.DataFrame({LAYER: g["layers"], TAU: _tau(g["layers"], depth), VALUE: g[VALUE][k]})
    if g[STDERR] is not None:
        df[STDERR] = g[STDERR][k]
    df = df[df[LAYER] >= 0]  # a network scalar of the same name (another run's meaning) is not a layer
    return df.dropna(subset=[VALUE]).reset_index(drop=True)


@st.cache_data(max_entries=32, show_spinner=False)
def heatmap(path: str, mtime_ns: int, metric: str, depth: int, step_range: tuple[int, int],
            max_steps: int = HEAT_STEPS, max_layers: int = HEAT_LAYERS) -> pd.DataFrame:
    """The (step × layer) grid within step_range, mean-pooled to ≤ max_steps × max_layers cells: step, tau,
    value. df.attrs["pooled"] = (recorded steps, layers) when pooling merged any."""
    g = grid(path, mtime_ns, metric)
    rows = (g["steps"] >= step_range[0]) & (g["steps"] <= step_range[1])
    cols = g["layers"] >= 0  # layers only: never a network scalar's row
    s, l, z = bin_grid(g[VALUE][rows][:, cols], g["steps"][rows], g["layers"][cols], max_steps, max_layers)
    ss, ll = np.meshgrid(s, l, indexing="ij")
    df = pd.DataFrame({STEP: ss.ravel(), TAU: _tau(ll.ravel(), depth), VALUE: z.ravel()})
    if z.shape != (int(rows.sum()), int(cols.sum())):
        df.attrs["pooled"] = (int(rows.sum()), int(cols.sum()))
    return df


@st.cache_data(max_entries=32, show_spinner=False)
def series(path: str, mtime_ns: int, metric: str, depth: int, layers: tuple[int, ...],
           step_range: tuple[int, int], smooth: float, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Chosen layers over steps within step_range: layer, tau, step, value[, smoothed]. Smoothing (debiased
    EMA) runs on every recorded step; then raw and smoothed are min/max-bucketed to ≤ max_points each."""
    g = grid(path, mtime_ns, metric)
    rows = (g["steps"] >= step_range[0]) & (g["steps"] <= step_range[1])
    steps, parts = g["steps"][rows], []
    for layer in layers:
        k = np.searchsorted(g["layers"], layer)
        if k >= len(g["layers"]) or g["layers"][k] != layer:
            continue
        y = g[VALUE][rows, k]
        ok = ~np.isnan(y)
        xs, ys = steps[ok], y[ok]
        idx = minmax_indices(ys, max_points)
        part = pd.DataFrame({LAYER: layer, TAU: layer / max(depth, 1), STEP: xs[idx], VALUE: ys[idx]})
        if g[STDERR] is not None:  # a limit run's Monte-Carlo error, for its band
            part[STDERR] = g[STDERR][rows, k][ok][idx]
        if smooth > 0:  # smooth at full resolution, then sample where the raw line was kept
            part[SMOOTH] = ema_debiased(ys, smooth)[idx]
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[LAYER, TAU, STEP, VALUE])


@st.cache_data(max_entries=32, show_spinner=False)
def neurons(path: str, mtime_ns: int, depth: int, step: int, probe: int) -> pd.DataFrame:
    """Quantiles of the single-neuron distribution at one step for one probe: layer, tau, quantile, value."""
    df = read_neurons(path, steps=[step])
    df = df[df[PROBE] == probe] if probe >= 0 else df.groupby([LAYER, QUANTILE], as_index=False)[VALUE].mean()
    return df.assign(**{TAU: df[LAYER] / max(depth, 1)})[[LAYER, TAU, QUANTILE, VALUE]].reset_index(drop=True)


@st.cache_data(max_entries=64, show_spinner=False)
def neuron_index(path: str, mtime_ns: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(recorded steps, probes) of neurons.parquet."""
    f = _parquet(path, NEURONS)
    cols = _query("SELECT DISTINCT step, probe FROM read_parquet(?)", [f])
    return tuple(sorted({int(s) for s in cols[STEP]})), tuple(sorted({int(p) for p in cols[PROBE]}))


# --- over the picker's runs ----------------------------------------------------------------------------
def depth_of(run) -> int:
    return int(run.config.get("depth") or 1)


def _over_runs(runs: Sequence, load) -> tuple[pd.DataFrame, list[str]]:
    parts, errors = [], []
    for r in runs:
        try:
            df = load(r)
        except RunFormatError as e:
            errors.append(f"`{r.label}`: {e}")
            continue
        if len(df):
            parts.append(df.assign(**{RUN: r.label}))
    if not parts:
        return pd.DataFrame(columns=[RUN, LAYER, TAU, STEP, VALUE]), errors
    out = pd.concat(parts, ignore_index=True)
    return out[[RUN, *[c for c in out.columns if c != RUN]]], errors


def profiles(runs: Sequence, metric: str, step: int) -> tuple[pd.DataFrame, list[str]]:
    """run, layer, tau, value[, stderr] of `metric` at `step` for every run that recorded it."""
    return _over_runs(runs, lambda r: profile(r.path, mtime(r.path), metric, depth_of(r), step))


def curves(runs: Sequence, metric: str, taus: Sequence[float], step_range: tuple[int, int],
           smooth: float) -> tuple[pd.DataFrame, list[str]]:
    """run, layer, tau, step, value[, smoothed] for the layer nearest each τ in each run."""
    def load(r):
        L = depth_of(r)
        layers = tuple(sorted({int(round(t * L)) for t in taus}))
        return series(r.path, mtime(r.path), metric, L, layers, tuple(step_range), smooth)
    return _over_runs(runs, load)


def same_setting(run, ref) -> list[str]:
    """Config fields (outside SHAPE_FIELDS) in which `run` differs from the limit run `ref`; [] = same setting."""
    return [k for k, v in run.config.items() if k not in SHAPE_FIELDS and k in ref.config and ref.config[k] != v]


def limit_errors(runs: Sequence, ref, metric: str, step: int) -> tuple[pd.DataFrame, list[str]]:
    """Finite-vs-limit error of `metric` at `step` per (width, depth): the profile averaged over the runs
    (seeds) sharing width and depth, against the limit run `ref` (dynamics.paper.fits.profile_error).
    Only runs whose config matches the limit's apart from SHAPE_FIELDS count; the others come back as
    messages. Columns width, depth, error, seeds."""
    from dynamics.paper.fits import profile_error
    other = {r.label: same_setting(r, ref) for r in runs}
    errors = ["from the error panels (their setting differs from the limit run's): " + ", ".join(
        f"`{k}` ({', '.join(v)})" for k, v in other.items() if v)] if any(other.values()) else []
    runs = [r for r in runs if not other[r.label]]
    prof, more = profiles([*runs, ref], metric, step)
    errors += more
    lim = prof[prof[RUN] == ref.label]
    if lim.empty:
        return pd.DataFrame(columns=["width", "depth", "error", "seeds"]), errors
    shape = {r.label: (int(r.config.get("width") or 0), depth_of(r)) for r in runs}
    fin = prof[prof[RUN] != ref.label].assign(
        width=lambda d: d[RUN].map(lambda x: shape[x][0]), depth=lambda d: d[RUN].map(lambda x: shape[x][1]))
    rows = []
    for (w, L), part in fin.groupby(["width", "depth"], sort=True):
        mean = part.groupby(TAU, as_index=False)[VALUE].mean()
        rows.append({"width": w, "depth": L, "seeds": part[RUN].nunique(),
                     "error": profile_error(mean[TAU], mean[VALUE], lim[TAU], lim[VALUE])})
    return pd.DataFrame(rows, columns=["width", "depth", "error", "seeds"]), errors


def _grids(runs: Sequence, metric: str, errors: list[str]):
    """(run, its grid of `metric`) for each run that reads; an unreadable run adds its line to `errors`."""
    for r in runs:
        try:
            yield r, grid(r.path, mtime(r.path), metric)
        except RunFormatError as e:
            errors.append(f"`{r.label}`: {e}")


def final_values(runs: Sequence, metric: str, last: float = 0.1) -> tuple[pd.DataFrame, list[str]]:
    """A network scalar at the end of each run: the mean over the last `last` fraction of its recorded
    steps (at least one). Diverged runs get inf. Columns run, lr, width, depth, seed, status, `metric`."""
    rows, errors = [], []
    for r, g in _grids(runs, metric, errors):
        y = g[VALUE][:, 0] if g[VALUE].size else np.array([])
        y = y[np.isfinite(y)]
        status = r.meta.get("status")
        value = float("inf") if status == "diverged" else (
            float(y[-max(1, int(np.ceil(last * len(y)))):].mean()) if len(y) else float("nan"))
        rows.append({RUN: r.label, "lr": r.config.get("lr"), "width": r.config.get("width"),
                     "depth": r.config.get("depth"), "seed": r.config.get("seed"), "status": status, metric: value})
    return pd.DataFrame(rows, columns=[RUN, "lr", "width", "depth", "seed", "status", metric]), errors


def depth_means(runs: Sequence, metric: str, fields: Sequence[str] = ()) -> tuple[pd.DataFrame, list[str]]:
    """A per-layer metric reduced to one number per run: its mean over the recorded layers at the run's last
    recorded step of it (the Scaling page's "against depth" view). Columns run, depth, width, seed, step, value
    and each of `fields` from the run's config; runs without the metric are left out."""
    rows, errors = [], []
    for r, g in _grids(runs, metric, errors):
        vals = g[VALUE]
        done = np.flatnonzero(np.isfinite(vals).any(axis=1)) if vals.size else []
        if not len(done):
            continue
        last = int(done[-1])
        rows.append({RUN: r.label, "depth": depth_of(r), "width": r.config.get("width"), "seed": r.config.get("seed"),
                     STEP: int(g["steps"][last]), VALUE: float(np.nanmean(vals[last])),
                     **{f: r.config.get(f) for f in fields if f not in ("depth", "width", "seed")}})
    cols = [RUN, "depth", "width", "seed", STEP, VALUE, *[f for f in fields if f not in ("depth", "width", "seed")]]
    return pd.DataFrame(rows, columns=cols), errors


TRANSFER_FREE = ("lr", "depth", "seed", "device", "dtype", "record_every", "test_every", "probes",
                 "record_coupling", "coupling_window")


def family(runs: Sequence, free: Sequence[str], spread: Sequence[str]) -> tuple[list, int]:
    """The runs that form one family: the same config apart from the `free` fields, the family with the most
    distinct combinations of the `spread` fields. Returns (runs, families found)."""
    import json
    fams: dict[str, list] = {}
    for r in runs:
        key = json.dumps({k: v for k, v in r.config.items() if k not in free}, sort_keys=True, default=str)
        fams.setdefault(key, []).append(r)
    if not fams:
        return [], 0
    best = max(fams.values(), key=lambda fam: len({tuple(r.config.get(f) for f in spread) for r in fam}))
    return best, len(fams)


def transfer_family(runs: Sequence) -> tuple[list, int]:
    """The runs that form one learning-rate-transfer family: same config apart from TRANSFER_FREE (lr, depth,
    seed, bookkeeping), the family with the most distinct (depth, lr) pairs. Returns (runs, families found)."""
    return family(runs, TRANSFER_FREE, ("depth", "lr"))


@st.cache_data(max_entries=256, show_spinner=False)
def recorded_layers(path: str, mtime_ns: int) -> tuple[int, ...]:
    """The layer indices ≥ 0 that metrics.parquet holds: pages build their depth lists from these, never from
    the config's claimed depth (a run claiming depth 10¹² must not make a page loop over 10¹² layers)."""
    cols = _query("SELECT DISTINCT layer FROM read_parquet(?) WHERE layer >= 0 ORDER BY layer",
                  [_parquet(path, METRICS)])
    return tuple(int(v) for v in cols[LAYER])


def tau_grid(runs: Sequence, first: int = 0) -> list[float]:
    """Depth times τ = ℓ/L (rounded to 4 places) of the layers ℓ ≥ first that the runs recorded; runs whose
    metrics cannot be read add none."""
    grid = set()
    for r in runs:
        try:
            layers = recorded_layers(r.path, mtime(r.path))
        except RunFormatError:
            continue
        grid.update(round(ell / depth_of(r), 4) for ell in layers if ell >= first)
    return sorted(grid)
