"""Figure builders: tidy DataFrame in, plotly Figure out (no Streamlit, no I/O).

Every builder is named `<noun>_figure(df, *, options) -> go.Figure` and takes a tidy frame whose columns
are named below (`RUN`, `TAU`, and the store's `STEP`, `VALUE`, `STDERR`). Pages build the frame with their
cached loaders, call one builder and show the result; tests call builders on ten-row frames. Shared styling
(colours per run, Monte-Carlo bands, axes) lives in the private helpers at the top, so new builders
(heatmaps, quantile fans, error-vs-L plots) stay a few lines each.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from dynamics.store import STDERR, STEP, VALUE

RUN, TAU = "run", "tau"  # tidy-frame columns the store does not define: run label, depth time ℓ/L
TAU_TITLE = "depth time τ = ℓ/L"
STEP_TITLE = "step"
PALETTE = qualitative.Plotly


# --- shared pieces -------------------------------------------------------------------------------
def _check_columns(df: pd.DataFrame, needed: tuple[str, ...], builder: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{builder}: frame lacks column(s) {', '.join(missing)}; has {', '.join(df.columns)}")


def _metric_title(metric: str, caption: str = "") -> str:
    """Axis title: the metric's name (THEORY §2), then its caption on a smaller second line."""
    return f"{metric}<br><sup>{caption}</sup>" if caption else metric


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[k:k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _band_traces(x: pd.Series, y: pd.Series, err: pd.Series, *, name: str, colour: str) -> list[go.Scatter]:
    """value ± stderr as a filled band: an invisible upper edge, then the lower edge filled up to it."""
    common = dict(mode="lines", line=dict(width=0), legendgroup=name, showlegend=False, hoverinfo="skip")
    upper = go.Scatter(x=x, y=y + err, name=f"{name} +stderr", **common)
    lower = go.Scatter(x=x, y=y - err, name=f"{name} −stderr", fill="tonexty",
                       fillcolor=_rgba(colour, 0.2), **common)
    return [upper, lower]


def _run_curves(df: pd.DataFrame, x: str, x_label: str) -> list[go.Scatter]:
    """One line per run (sorted along x), preceded by its stderr band when the frame carries one."""
    traces: list[go.Scatter] = []
    for k, (run, part) in enumerate(df.groupby(RUN, sort=False)):
        part = part.sort_values(x)
        colour = PALETTE[k % len(PALETTE)]
        if STDERR in part and part[STDERR].notna().any():
            traces += _band_traces(part[x], part[VALUE], part[STDERR].fillna(0.0), name=str(run), colour=colour)
        traces.append(go.Scatter(
            x=part[x], y=part[VALUE], name=str(run), legendgroup=str(run), mode="lines+markers",
            line=dict(color=colour), marker=dict(size=5),
            hovertemplate=f"{run}<br>{x_label}=%{{x:.4g}}<br>value=%{{y:.4g}}<extra></extra>"))
    return traces


def _layout(fig: go.Figure, *, x_title: str, y_title: str, log_y: bool, title: str | None) -> go.Figure:
    fig.update_layout(title=title, legend_title_text=RUN, hovermode="closest",
                      margin=dict(l=70, r=20, t=60 if title else 30, b=50))
    fig.update_xaxes(title_text=x_title)
    # on a log axis within one decade plotly labels ticks by their leading digit only ("9, 8, 7");
    # an explicit tickformat makes it print the values
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear", tickformat=".3~g" if log_y else None)
    return fig


# --- builders --------------------------------------------------------------------------------------
def depth_profile_figure(df: pd.DataFrame, *, metric: str, caption: str = "", log_y: bool = False,
                         title: str | None = None) -> go.Figure:
    """A per-layer metric over depth time τ = ℓ/L at one step, one curve per run (THEORY §2).

    `df`: columns run, tau, value, optionally stderr (drawn as a ±1 stderr band, for limit runs).
    Runs of different depth share the τ axis, which is what makes them comparable in the L → ∞ limit.
    """
    _check_columns(df, (RUN, TAU, VALUE), "depth_profile_figure")
    fig = go.Figure(_run_curves(df, TAU, "τ"))
    return _layout(fig, x_title=TAU_TITLE, y_title=_metric_title(metric, caption), log_y=log_y, title=title)


def metric_over_steps_figure(df: pd.DataFrame, *, metric: str, caption: str = "", log_y: bool = False,
                             title: str | None = None) -> go.Figure:
    """A network scalar (loss, grad_norm, ...; layer −1 in the store) over SGD steps, one curve per run.

    `df`: columns run, step, value, optionally stderr.
    """
    _check_columns(df, (RUN, STEP, VALUE), "metric_over_steps_figure")
    fig = go.Figure(_run_curves(df, STEP, STEP_TITLE))
    return _layout(fig, x_title=STEP_TITLE, y_title=_metric_title(metric, caption), log_y=log_y, title=title)
