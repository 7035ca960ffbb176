"""How features and gradients move over training: layer × step heatmaps, per-layer curves over steps
(raw line faint under its debiased-EMA smoothing), and quantile fans of single-neuron distributions over
depth time against a limit run's quantiles. Frames arrive already reduced (figures.reduce).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from dynamics.runs.store import LAYER, QUANTILE, STEP, VALUE

from ._style import RUN, SMOOTH, STEP_TITLE, TAU, TAU_TITLE, _check_columns, _layout, _metric_title, \
    _rgba, _scatter

DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def even_centres(c: np.ndarray, tol: float = 0.5, min_cells: int = 64) -> tuple[np.ndarray, bool]:
    """Cell centres as Plotly draws them fastest: evenly spaced when there are more than `min_cells` (cells a
    few pixels wide) and every centre is within `tol` of a cell's width of the even grid from the first to the
    last (e.g. pooled bins of 7 and 6 steps), else unchanged.

    Plotly paints a heatmap whose x and y are evenly spaced (each gap within 1% of the mean) as one image, one
    pixel per cell, scaled up; otherwise it fills every cell's rectangle, ≈5× slower on a 300 × 129 grid.
    Returns (centres, whether they were moved); already-even centres come back unchanged (moved = False).
    """
    c = np.asarray(c, dtype=float)
    if len(c) <= max(min_cells, 2) or not np.all(np.isfinite(c)):
        return c, False
    even = np.linspace(c[0], c[-1], len(c))
    width = (c[-1] - c[0]) / (len(c) - 1)
    gaps = np.diff(c)
    if width <= 0 or np.all(np.abs(gaps - width) <= width / 100):
        return c, False
    return (even, True) if np.max(np.abs(c - even)) <= tol * width else (c, False)


def heatmap_figure(df: pd.DataFrame, *, metric: str, caption: str = "", log_z: bool = False,
                   title: str | None = None) -> go.Figure:
    """A per-layer metric as a heatmap: SGD step across, depth time τ = ℓ/L up (docs/theory.md §2).

    `df`: columns step, tau, value (one run; one row per cell, already pooled to a few hundred cells a side).
    log_z colours by log10(value) (non-positive values become gaps). Nearly even centres (pooled bins) are drawn
    evenly spaced (`even_centres`: each moves by at most half a cell; the hover then says step≈ / τ≈).
    """
    _check_columns(df, (STEP, TAU, VALUE), "heatmap_figure")
    grid = df.pivot_table(index=TAU, columns=STEP, values=VALUE, aggfunc="mean", dropna=False)
    z = grid.to_numpy(dtype=float)
    if log_z:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(z > 0, np.log10(z), np.nan)
    x, x_even = even_centres(grid.columns.to_numpy(float))
    y, y_even = even_centres(grid.index.to_numpy(float))
    fig = go.Figure(go.Heatmap(  # float32 cells: half the bytes sent, far more precision than colours show
        x=x, y=y, z=z.astype(np.float32), colorscale="Viridis",
        colorbar=dict(title=dict(text=f"log10 {metric}" if log_z else metric, side="right")),
        hovertemplate=f"step{'≈' if x_even else '='}%{{x:.0f}}<br>τ{'≈' if y_even else '='}%{{y:.3g}}<br>" +
                      ("log10 " if log_z else "") + f"{metric}=%{{z:.4g}}<extra></extra>"))
    fig = _layout(fig, x_title=STEP_TITLE, y_title=TAU_TITLE, log_y=False, title=title)
    if grid.shape[1] <= 12:  # a few recorded steps: one even column each, labelled by its step (a numeric axis
        fig.update_traces(x=[f"{s:g}" for s in grid.columns.to_numpy(float)])  # would stretch 0, 20 to −10…30)
        fig.update_xaxes(type="category")
    if caption:
        fig.update_layout(annotations=[dict(text=caption, xref="paper", yref="paper", x=0, y=1.0,
                                            yanchor="bottom", showarrow=False, font=dict(size=11))])
    return fig


def layer_curves_figure(df: pd.DataFrame, *, metric: str, caption: str = "", log_x: bool = False,
                        log_y: bool = False, title: str | None = None) -> go.Figure:
    """A per-layer metric over steps, one curve per (run, layer): colour by depth time, dash by run.

    `df`: columns run, layer, tau, step, value, optionally `smoothed` (debiased EMA): then the smoothed line
    is drawn and the raw line stays faint beneath it.
    """
    _check_columns(df, (RUN, LAYER, TAU, STEP, VALUE), "layer_curves_figure")
    smoothed = SMOOTH in df.columns and df[SMOOTH].notna().any()
    traces = []
    for r, (run, by_run) in enumerate(df.groupby(RUN, sort=False)):
        for (layer, tau), part in by_run.groupby([LAYER, TAU], sort=True):
            part = part.sort_values(STEP)
            colour = sample_colorscale("Viridis", [min(max(float(tau), 0.0), 1.0) * 0.9])[0]
            name, dash = f"{run} ℓ={layer} (τ={tau:.3g})", DASHES[r % len(DASHES)]
            kind = _scatter(len(part), "lines")
            hover = f"{name}<br>step=%{{x}}<br>value=%{{y:.4g}}<extra></extra>"
            if smoothed:
                traces.append(kind(x=part[STEP], y=part[VALUE], mode="lines", legendgroup=name, showlegend=False,
                                   name=f"{name} raw", line=dict(color=_rgba(colour, 0.25), width=1, dash=dash),
                                   hoverinfo="skip"))
            traces.append(kind(x=part[STEP], y=part[SMOOTH if smoothed else VALUE], mode="lines", name=name,
                               legendgroup=name, line=dict(color=colour, width=2, dash=dash), hovertemplate=hover))
    fig = go.Figure(traces)
    return _layout(fig, x_title=STEP_TITLE, y_title=_metric_title(metric, caption), log_x=log_x, log_y=log_y,
                   title=title, legend_title="run, layer")


def quantile_fan_figure(df: pd.DataFrame, limit: pd.DataFrame | None = None, *, title: str | None = None,
                        limit_name: str = "limit") -> go.Figure:
    """Quantiles of the single-neuron distribution of h_ℓ over depth time τ (one run, probe and step):
    nested bands between the quantile pairs (q, 1−q), the median as a line. A limit run's quantiles
    (its particles', docs/theory.md §3/§6) are drawn as dashed black lines on top.

    `df`, `limit`: columns tau, quantile, value.
    """
    _check_columns(df, (TAU, QUANTILE, VALUE), "quantile_fan_figure")
    wide = df.pivot_table(index=TAU, columns=QUANTILE, values=VALUE, aggfunc="mean").sort_index()
    qs = [float(q) for q in wide.columns]
    tau = wide.index.to_numpy(float)
    traces = []
    lows = sorted(q for q in qs if q < 0.5 and any(abs(1 - q - h) < 1e-6 for h in qs))
    for q in lows:
        hi = next(c for c in wide.columns if abs(1 - q - float(c)) < 1e-6)
        lo = next(c for c in wide.columns if abs(float(c) - q) < 1e-6)
        name = f"{q:.2g}–{1 - q:.2g}"
        alpha = 0.12 + 0.5 * (q / 0.5) ** 1.5
        traces.append(go.Scatter(x=tau, y=wide[hi], mode="lines", line=dict(width=0), legendgroup=name,
                                 showlegend=False, hoverinfo="skip", name=f"q{1 - q:.2g}"))
        traces.append(go.Scatter(x=tau, y=wide[lo], mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor=_rgba("#1f77b4", alpha), name=f"quantiles {name}", legendgroup=name,
                                 hoverinfo="skip"))
    med = [c for c in wide.columns if abs(float(c) - 0.5) < 1e-6]
    if med:
        traces.append(go.Scatter(x=tau, y=wide[med[0]], mode="lines", name="median", line=dict(color="#1f77b4"),
                                 hovertemplate="τ=%{x:.3g}<br>median=%{y:.4g}<extra></extra>"))
    if limit is not None and not limit.empty:
        _check_columns(limit, (TAU, QUANTILE, VALUE), "quantile_fan_figure (limit)")
        for k, (q, part) in enumerate(limit.groupby(QUANTILE, sort=True)):
            part = part.sort_values(TAU)
            traces.append(go.Scatter(x=part[TAU], y=part[VALUE], mode="lines", name=f"{limit_name} quantiles",
                                     legendgroup="limit", showlegend=k == 0, line=dict(color="black", dash="dash",
                                                                                      width=1.2),
                                     hovertemplate=f"{limit_name} q={float(q):.2g}<br>τ=%{{x:.3g}}<br>"
                                                   "value=%{y:.4g}<extra></extra>"))
    fig = go.Figure(traces)
    return _layout(fig, x_title=TAU_TITLE, y_title="h_ℓ (one neuron)<br><sup>quantiles over neurons</sup>",
                   log_y=False, title=title, legend_title="")
