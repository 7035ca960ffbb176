"""Server-side reductions that keep views light on big runs: min/max downsampling of curves, debiased EMA
smoothing, and binning of a (step × layer) grid for heatmaps. Plain numpy, no Streamlit, no I/O; the
dashboard's cached loaders call these before anything is sent to the browser.
"""
from __future__ import annotations

import numpy as np


def minmax_indices(y: np.ndarray, max_points: int = 2000) -> np.ndarray:
    """Sorted indices of at most `max_points` entries of y: split y into max_points/2 equal-count buckets
    and keep each bucket's minimum and maximum, so spikes and dips survive the reduction (y without NaN)."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(int)
    size = np.diff(edges)
    width = int(size.max())  # pad every bucket to the largest size with ±inf so argmin/argmax vectorise
    idx = edges[:-1, None] + np.arange(width)[None, :]           # (buckets, width)
    valid = np.arange(width)[None, :] < size[:, None]
    idx = np.where(valid, idx, edges[:-1, None])
    lo = np.where(valid, y[idx], np.inf).argmin(axis=1)
    hi = np.where(valid, y[idx], -np.inf).argmax(axis=1)
    rows = np.arange(buckets)
    return np.unique(np.concatenate([idx[rows, lo], idx[rows, hi]]))


def minmax_downsample(x: np.ndarray, y: np.ndarray, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` of (x, y), x sorted, NaNs dropped: the min/max buckets of `minmax_indices`.
    Series no longer than max_points come back unchanged (NaNs dropped)."""
    x, y = np.asarray(x), np.asarray(y, dtype=float)
    keep = ~np.isnan(y)
    x, y = x[keep], y[keep]
    picks = minmax_indices(y, max_points)
    return x[picks], y[picks]


def ema_debiased(y: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average with bias correction (TensorBoard's smoothing):

        m_t = w·m_{t−1} + (1−w)·y_t,  m_{−1} = 0;   s_t = m_t / (1 − w^{k_t})

    where k_t counts the finite values seen so far, so the first points are not pulled towards zero.
    NaN inputs are skipped (the output there is NaN). weight = 0 returns y.
    """
    y = np.asarray(y, dtype=float)
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1); got {weight}")
    if weight == 0:
        return y.copy()
    out = np.full_like(y, np.nan)
    m, k = 0.0, 0
    for t, v in enumerate(y):
        if np.isnan(v):
            continue
        m = weight * m + (1 - weight) * v
        k += 1
        out[t] = m / (1 - weight ** k)
    return out


def _bin_edges(n: int, max_bins: int) -> np.ndarray:
    """Edges of ceil(n / factor) consecutive-index bins with an integer factor (≤ max_bins bins)."""
    factor = max(1, -(-n // max_bins))
    return np.append(np.arange(0, n, factor), n)


def bin_grid(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, max_rows: int = 500,
             max_cols: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean-pool a (rows × cols) grid (e.g. steps × layers, NaN = not recorded) to at most
    max_rows × max_cols cells by merging runs of consecutive rows / columns.

    Returns (row centres, column centres, pooled values): a centre is the mean coordinate of its bin;
    a cell with no finite value stays NaN. Grids already small enough come back unchanged.
    """
    values = np.asarray(values, dtype=float)
    r_edges, c_edges = _bin_edges(len(rows), max_rows), _bin_edges(len(cols), max_cols)
    if len(r_edges) - 1 == len(rows) and len(c_edges) - 1 == len(cols):
        return np.asarray(rows), np.asarray(cols), values
    finite = np.isfinite(values)
    total = np.add.reduceat(np.add.reduceat(np.where(finite, values, 0.0), r_edges[:-1], axis=0),
                            c_edges[:-1], axis=1)
    count = np.add.reduceat(np.add.reduceat(finite.astype(float), r_edges[:-1], axis=0), c_edges[:-1], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.where(count > 0, total / count, np.nan)
    r_mid = np.add.reduceat(np.asarray(rows, float), r_edges[:-1]) / np.diff(r_edges)
    c_mid = np.add.reduceat(np.asarray(cols, float), c_edges[:-1]) / np.diff(c_edges)
    return r_mid, c_mid, pooled
