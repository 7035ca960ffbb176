"""Rates and transfer: log-log error vs width or depth with fitted slopes (and their bootstrap intervals,
dynamics.paper.fits) beside the theory's slope, and final loss vs learning rate across depths (μP-style
hyperparameter transfer: under depth-μP the best learning rate should not move with L).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ._style import PALETTE, _check_columns, _layout

ERROR = "error"
TITLES = {"width": "width n", "depth": "depth L", "lr": "learning rate η"}


def _fmt_slope(row: pd.Series) -> str:
    if not np.isfinite(row["slope"]):
        return "no fit"
    ci = f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if np.isfinite(row["ci_low"]) else " (no CI: < 3 points)"
    return f"slope {row['slope']:.2f}{ci}"


def error_scaling_figure(df: pd.DataFrame, fits: pd.DataFrame | None = None, *, x: str, group: str,
                         theory_slope: float | None = -1.0, title: str | None = None,
                         y_title: str = "error vs limit", y: str = ERROR) -> go.Figure:
    """Log-log error against `x` (width or depth), one colour per value of `group` (the other of the two).

    `df`: columns x, group and y (default `error`; any positive quantity, e.g. a metric's mean over blocks).
    `fits` (dynamics.paper.fits.fit_groups, keyed by `group`): a fitted line per
    group with its slope and 95% bootstrap interval in the legend. The theory's slope is drawn dotted
    through the geometric mean of each group's points.
    """
    _check_columns(df, (x, group, y), "error_scaling_figure")
    traces = []
    for k, (g, part) in enumerate(df.groupby(group, sort=True)):
        colour, part = PALETTE[k % len(PALETTE)], part.sort_values(x)
        label = f"{group} = {g}"
        traces.append(go.Scatter(x=part[x], y=part[y], mode="markers", name=label, legendgroup=label,
                                 marker=dict(color=colour, size=9),
                                 hovertemplate=f"{label}<br>{x}=%{{x}}<br>{y}=%{{y:.3g}}<extra></extra>"))
        xs = np.geomspace(part[x].min(), part[x].max(), 20) if part[x].min() > 0 else None
        if xs is None or part[x].nunique() < 2:
            continue
        fit = None if fits is None else fits[fits[group] == g]
        if fit is not None and not fit.empty and np.isfinite(fit["slope"].iloc[0]):
            row = fit.iloc[0]
            traces.append(go.Scatter(x=xs, y=np.exp(row["intercept"]) * xs ** row["slope"], mode="lines",
                                     name=f"fit {label}: {_fmt_slope(row)}", legendgroup=label,
                                     line=dict(color=colour)))
        if theory_slope is not None:
            pos = part[(part[x] > 0) & (part[y] > 0)]
            if len(pos):
                lx, ly = np.log(pos[x]).mean(), np.log(pos[y]).mean()
                traces.append(go.Scatter(x=xs, y=np.exp(ly + theory_slope * (np.log(xs) - lx)), mode="lines",
                                         name=f"theory slope {theory_slope:g}", legendgroup="theory",
                                         showlegend=k == 0, line=dict(color="grey", dash="dot")))
    fig = _layout(go.Figure(traces), x_title=TITLES.get(x, x), y_title=y_title, log_x=True, log_y=True,
                  title=title, legend_title="")
    ticks = sorted(v for v in df[x].unique() if v > 0)  # label the widths / depths run, not log minor ticks
    return fig.update_xaxes(tickvals=ticks, ticktext=[f"{v:g}" for v in ticks])


def lr_transfer_figure(df: pd.DataFrame, *, y: str = "loss", group: str = "depth", log_y: bool = True,
                       title: str | None = None) -> go.Figure:
    """Final loss against learning rate (log x), one curve per `group` value (depth), the best learning
    rate of each curve starred. `df`: columns lr, group, y (NaN/inf = diverged: drawn as an × at the top).
    The y axis is logarithmic only when the losses span more than a factor 3 (else its ticks would repeat)."""
    _check_columns(df, ("lr", group, y), "lr_transfer_figure")
    finite = df[np.isfinite(df[y])]
    top = float(finite[y].max()) * 1.5 if len(finite) else 1.0
    traces = []
    for k, (g, part) in enumerate(df.groupby(group, sort=True)):
        colour, part = PALETTE[k % len(PALETTE)], part.sort_values("lr")
        label, ok = f"{group} = {g}", np.isfinite(part[y])
        traces.append(go.Scatter(x=part["lr"][ok], y=part[y][ok], mode="lines+markers", name=label,
                                 legendgroup=label, line=dict(color=colour),
                                 hovertemplate=f"{label}<br>lr=%{{x:.3g}}<br>{y}=%{{y:.4g}}<extra></extra>"))
        if ok.any():
            best = part[ok].loc[part[y][ok].idxmin()]
            traces.append(go.Scatter(x=[best["lr"]], y=[best[y]], mode="markers", name=f"best lr, {label}",
                                     legendgroup=label, showlegend=False,
                                     marker=dict(symbol="star", size=15, color=colour, line=dict(width=1))))
        if (~ok).any():
            traces.append(go.Scatter(x=part["lr"][~ok], y=[top] * int((~ok).sum()), mode="markers",
                                     name=f"diverged, {label}", legendgroup=label,
                                     marker=dict(symbol="x", size=10, color=colour)))
    fig = go.Figure(traces)
    pos = finite[y][finite[y] > 0]
    log_y = log_y and len(pos) > 0 and float(pos.max()) > 3 * float(pos.min())  # within a factor 3: linear reads better
    fig = _layout(fig, x_title=TITLES["lr"], y_title=y, log_x=True, log_y=log_y, title=title, legend_title="")
    lrs = sorted(v for v in df["lr"].unique() if v > 0)
    if 1 < len(lrs) <= 12:  # label the learning rates tried, not log minor ticks ("0.070.080.090.1")
        fig.update_xaxes(tickvals=lrs, ticktext=[f"{v:.3g}" for v in lrs])  # 0.0533, not 0.0533484
    return fig
