"""Shared styling of the figure builders: tidy-frame column names, colours, Monte-Carlo bands, axes, and the
Plotly toolbar configuration (PNG/SVG download). No Streamlit, no I/O; the builders in the sibling modules
stay a few lines each because of the helpers here.
"""
from __future__ import annotations

from typing import Collection

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from dynamics.runs.store import STDERR, VALUE

RUN, TAU = "run", "tau"  # tidy-frame columns the store does not define: run label, depth time ℓ/L
SMOOTH = "smoothed"      # debiased-EMA column beside the raw `value` (figures.reduce.ema_debiased)
TAU_TITLE = "depth time τ = ℓ/L"
STEP_TITLE = "step"
PALETTE = qualitative.Plotly
WEBGL_POINTS = 1000      # a trace drawing more markers than this uses WebGL (Scattergl) ...
WEBGL_LINE_POINTS = 20_000  # ... a lines-only trace only beyond this: one SVG path of a few thousand points
                            # draws ~3× faster than a WebGL context (measured in Chromium, 10 × 2,000 points)


def chart_config(filename: str, fmt: str = "png") -> dict:
    """Plotly config for st.plotly_chart: the toolbar's camera button saves `filename`.png/svg at 2× scale."""
    return {"displaylogo": False, "toImageButtonOptions": {"format": fmt, "filename": filename, "scale": 2}}


def _check_columns(df: pd.DataFrame, needed: tuple[str, ...], builder: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{builder}: frame lacks column(s) {', '.join(missing)}; has {', '.join(df.columns)}")


def _metric_title(metric: str, caption: str = "") -> str:
    """Axis title: the metric's name (docs/theory.md §2), then its caption on a smaller second line."""
    return f"{metric}<br><sup>{caption}</sup>" if caption else metric


def _rgba(hex_colour: str, alpha: float) -> str:
    if hex_colour.startswith("rgb"):
        return hex_colour.replace("rgb(", "rgba(").replace(")", f",{alpha})")
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[k:k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _scatter(n_points: int, mode: str):
    """go.Scattergl for traces with thousands of markers (WebGL keeps them responsive), else go.Scatter."""
    return go.Scattergl if n_points > (WEBGL_POINTS if "markers" in mode else WEBGL_LINE_POINTS) else go.Scatter


def _band_traces(x: pd.Series, y: pd.Series, err: pd.Series, *, name: str, colour: str) -> list[go.Scatter]:
    """value ± stderr as a filled band: an invisible upper edge, then the lower edge filled up to it."""
    common = dict(mode="lines", line=dict(width=0), legendgroup=name, showlegend=False, hoverinfo="skip")
    upper = go.Scatter(x=x, y=y + err, name=f"{name} +stderr", **common)
    lower = go.Scatter(x=x, y=y - err, name=f"{name} −stderr", fill="tonexty",
                       fillcolor=_rgba(colour, 0.2), **common)
    return [upper, lower]


def _run_curves(df: pd.DataFrame, x: str, x_label: str, dashed: Collection[str] = ()) -> list[go.Scatter]:
    """One line per run (sorted along x), preceded by its stderr band when the frame carries one.

    Runs named in `dashed` (limit runs) are drawn dashed without markers, so predictions read apart from data.
    """
    traces: list[go.Scatter] = []
    for k, (run, part) in enumerate(df.groupby(RUN, sort=False)):
        part = part.sort_values(x)
        colour = PALETTE[k % len(PALETTE)]
        if STDERR in part and part[STDERR].notna().any():
            traces += _band_traces(part[x], part[VALUE], part[STDERR].fillna(0.0), name=str(run), colour=colour)
        limit = run in dashed
        mode = "lines" if limit or len(part) > 60 else "lines+markers"
        traces.append(_scatter(len(part), mode)(
            x=part[x], y=part[VALUE], name=str(run), legendgroup=str(run), mode=mode,
            line=dict(color=colour, dash="dash" if limit else None), marker=dict(size=5),
            hovertemplate=f"{run}<br>{x_label}=%{{x:.4g}}<br>value=%{{y:.4g}}<extra></extra>"))
    return traces


def _layout(fig: go.Figure, *, x_title: str, y_title: str, log_y: bool, title: str | None,
            log_x: bool = False, legend_title: str = RUN) -> go.Figure:
    fig.update_layout(title=title, legend_title_text=legend_title, hovermode="closest",
                      margin=dict(l=70, r=20, t=60 if title else 30, b=50))
    # on a log axis within one decade plotly labels ticks by their leading digit only ("9, 8, 7");
    # an explicit tickformat makes it print the values
    fig.update_xaxes(title_text=x_title, type="log" if log_x else "linear", tickformat=".3~g" if log_x else None)
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear", tickformat=".3~g" if log_y else None)
    return fig
