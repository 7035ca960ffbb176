"""The coordinate check's figures (pure: tidy frames in, Plotly figures out; no Streamlit, no I/O).

`coord_figure`: the classic picture of the μP literature, for width or depth: one panel per step, each
layer's seed-mean statistic against the axis on log-log axes, one line per layer τ, the fitted slope and its
judgement at the end of each line. `slope_figure`: every row's slope with its 95% interval against τ, one
colour per judgement, inside the ±tolerance band that counts as flat.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from ..figures._style import TAU_TITLE, _check_columns
from .judge import TOLERANCE

__all__ = ["seed_means", "coord_figure", "slope_figure", "JUDGEMENT_COLOURS", "MARKS"]

TITLES = {"width": "width n", "depth": "depth L"}
JUDGEMENT_COLOURS = {"flat": "#2ca02c", "inconclusive": "#7f7f7f", "grows": "#d62728", "shrinks": "#d62728",
                     "diverged": "#9467bd"}
MARKS = {"flat": "✓", "inconclusive": "?", "grows": "✗", "shrinks": "✗", "diverged": "✗"}


def seed_means(frame: pd.DataFrame, metric: str, rows: pd.DataFrame) -> pd.DataFrame:
    """A ladder's tidy frame (dynamics.coordcheck.gather) -> the points drawn: x, tau, step, value (mean over
    seeds), seeds; only the (τ, step) that are rows of `rows` (the judged ones)."""
    f = frame[frame["metric"] == metric]
    f = f.assign(tau=(f["layer"] / f["depth"]).round(9))
    r = rows[rows["metric"] == metric]
    keep = set(zip(r["tau"].round(9), r["step"]))
    f = f[[(t, s) in keep for t, s in zip(f["tau"], f["step"])]]
    out = f.groupby(["x", "tau", "step"], as_index=False).agg(value=("value", "mean"), seeds=("seed", "nunique"))
    return out[["x", "tau", "step", "value", "seeds"]]


def _colour(tau: float) -> str:
    return sample_colorscale("Viridis", [0.9 * float(tau)])[0]


def coord_figure(points: pd.DataFrame, rows: pd.DataFrame, *, axis: str, metric: str,
                 steps: list[int] | None = None, title: str | None = None) -> go.Figure:
    """One panel per step (`steps`, default all), log-log `metric` against `axis`, one line per τ (colour:
    τ, dark at the input, light at the top); the text at each line's end is its fitted slope and ✓ flat,
    ✗ failing, ? inconclusive. points: seed_means; rows: judge.fit_rows of the ladder."""
    _check_columns(points, ("x", "tau", "step", "value"), "coord_figure")
    steps = sorted(points["step"].unique()) if steps is None else list(steps)
    r = rows[rows["metric"] == metric].assign(key=lambda d: d["tau"].round(9))
    fig = make_subplots(rows=1, cols=max(1, len(steps)), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[_panel_title(r, s) for s in steps])
    for col, step in enumerate(steps, start=1):
        part = points[points["step"] == step]
        for tau, line in part.groupby("tau", sort=True):
            line = line.sort_values("x")
            row = r[(r["key"] == round(float(tau), 9)) & (r["step"] == step)]
            judgement = row["judgement"].iloc[0] if len(row) else "inconclusive"
            slope = row["slope"].iloc[0] if len(row) else np.nan
            label = f"{MARKS[judgement]} {slope:+.2f}" if np.isfinite(slope) else MARKS[judgement]
            fails = judgement in ("grows", "shrinks", "diverged")
            fig.add_trace(go.Scatter(
                x=line["x"], y=line["value"], mode="lines+markers+text", name=f"τ = {tau:.3g}",
                legendgroup=f"{tau:.6g}", showlegend=col == 1, text=[""] * (len(line) - 1) + [label],
                textposition="middle right", textfont=dict(color=JUDGEMENT_COLOURS[judgement]),
                line=dict(color=_colour(tau), width=3 if fails else 1.5, dash="solid" if fails else "dot"),
                marker=dict(color=_colour(tau), size=7),
                hovertemplate=f"τ = {tau:.3g}, step {step}<br>{axis} = %{{x}}<br>{metric} = %{{y:.4g}}<br>"
                              f"slope {slope:+.3f}: {judgement}<extra></extra>"), row=1, col=col)
    ticks = sorted(v for v in points["x"].unique() if v > 0)
    lo, hi = (np.log10(ticks[0]), np.log10(ticks[-1])) if ticks else (0.0, 1.0)
    span = max(hi - lo, 0.3)  # room on the right for the slope labels at the lines' ends
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[f"{v:g}" for v in ticks], title_text=TITLES.get(axis, axis),
                     range=[lo - 0.06 * span, hi + 0.45 * span])
    pos = points["value"][points["value"] > 0]
    if len(pos):  # at least one decade: flat lines look flat, not like noise magnified to fill the panel
        ylo, yhi = np.log10(pos.min()), np.log10(pos.max())
        mid, half = (ylo + yhi) / 2, max((yhi - ylo) / 2 * 1.1, 0.5)
        fig.update_yaxes(range=[mid - half, mid + half])
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text=metric, col=1)
    fig.update_layout(title=title, template="plotly_white", legend_title_text="layer", margin=dict(t=80),
                      hovermode="closest")
    return fig


def _panel_title(rows: pd.DataFrame, step: int) -> str:
    r = rows[rows["step"] == step]
    bad = int(r["judgement"].isin(["grows", "shrinks", "diverged"]).sum())
    if not len(r):
        return f"step {step}: not judged"
    return f"step {step}: {bad} of {len(r)} layers fail" if bad else f"step {step}: {len(r)} layers, none fail"


def slope_figure(rows: pd.DataFrame, *, metric: str, axis: str, tol: float = TOLERANCE,
                 title: str | None = None) -> go.Figure:
    """Each row's slope (and 95% interval) against τ for one metric, one trace per judgement, a marker shape
    per step; the shaded band is ±tol (an interval inside it: flat), the dotted lines ±1 (a multiplier off by
    √n or √L). rows: judge.fit_rows."""
    _check_columns(rows, ("metric", "tau", "step", "slope", "ci_low", "ci_high", "judgement"), "slope_figure")
    r = rows[rows["metric"] == metric]
    symbols = ["circle", "square", "diamond", "triangle-up", "cross", "x"]
    fig = go.Figure()
    fig.add_hrect(y0=-tol, y1=tol, fillcolor="#2ca02c", opacity=0.12, line_width=0)
    for y in (-1, 1):
        fig.add_hline(y=y, line=dict(color="grey", dash="dot", width=1))
    steps = sorted(r["step"].unique())
    for judgement in ("diverged", "grows", "shrinks", "inconclusive", "flat"):
        part = r[r["judgement"] == judgement]
        if part.empty:
            continue
        ok = np.isfinite(part["slope"].astype(float))
        y = part["slope"].where(ok, 0.0)
        offset = part["step"].map({s: (k - (len(steps) - 1) / 2) * 0.006 for k, s in enumerate(steps)})
        fig.add_trace(go.Scatter(
            x=part["tau"] + offset, y=y, mode="markers", name=f"{MARKS[judgement]} {judgement} ({len(part)})",
            marker=dict(color=JUDGEMENT_COLOURS[judgement], size=9,
                        symbol=[symbols[steps.index(s) % len(symbols)] for s in part["step"]]),
            error_y=dict(type="data", symmetric=False, array=(part["ci_high"] - part["slope"]).fillna(0),
                         arrayminus=(part["slope"] - part["ci_low"]).fillna(0)),
            customdata=np.stack([part["step"], part["tau"]], axis=1),
            hovertemplate="τ = %{customdata[1]:.3g}, step %{customdata[0]}<br>slope %{y:+.3f}<extra>"
                          + judgement + "</extra>"))
    fig.update_layout(title=title or f"{metric}: fitted log-log slope vs {axis} per layer (band: flat, ±{tol:g})",
                      template="plotly_white", xaxis_title=TAU_TITLE, legend_title_text="judgement",
                      yaxis_title=f"slope of log {metric} vs log {axis}")
    return fig
