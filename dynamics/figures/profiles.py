"""Curves of one metric across runs: over depth time at a step (finite runs, limit runs with Monte-Carlo
bands), over steps (network scalars), and beside a chance level (the coupling metrics of docs/theory.md §5).
"""
from __future__ import annotations

from typing import Collection

import pandas as pd
import plotly.graph_objects as go

from dynamics.runs.store import STEP, VALUE

from ._style import PALETTE, RUN, STEP_TITLE, TAU, TAU_TITLE, _check_columns, _layout, _metric_title, \
    _run_curves, _scatter


def depth_profile_figure(df: pd.DataFrame, *, metric: str, caption: str = "", log_y: bool = False,
                         title: str | None = None, limit_runs: Collection[str] = ()) -> go.Figure:
    """A per-layer metric over depth time τ = ℓ/L at one step, one curve per run (docs/theory.md §2).

    `df`: columns run, tau, value, optionally stderr (drawn as a ±1 stderr band, for limit runs).
    Runs of different depth share the τ axis, which is what makes them comparable in the L → ∞ limit.
    Runs named in `limit_runs` are drawn dashed.
    """
    _check_columns(df, (RUN, TAU, VALUE), "depth_profile_figure")
    fig = go.Figure(_run_curves(df, TAU, "τ", dashed=limit_runs))
    return _layout(fig, x_title=TAU_TITLE, y_title=_metric_title(metric, caption), log_y=log_y, title=title)


def metric_over_steps_figure(df: pd.DataFrame, *, metric: str, caption: str = "", log_y: bool = False,
                             title: str | None = None) -> go.Figure:
    """A network scalar (loss, grad_norm, ...; layer −1 in the store) over SGD steps, one curve per run.

    `df`: columns run, step, value, optionally stderr.
    """
    _check_columns(df, (RUN, STEP, VALUE), "metric_over_steps_figure")
    fig = go.Figure(_run_curves(df, STEP, STEP_TITLE))
    return _layout(fig, x_title=STEP_TITLE, y_title=_metric_title(metric, caption), log_y=log_y, title=title)


def chance_figure(df: pd.DataFrame, chance: pd.DataFrame | None, *, x: str, metric: str, caption: str = "",
                  log_x: bool = False, log_y: bool = False, title: str | None = None) -> go.Figure:
    """A measured metric per run (solid) with its chance level (dotted, same colour) over `x` (tau or step).

    `df`, `chance`: columns run, x, value. The chance level is the same measurement with an independent
    matrix in place of W (docs/theory.md §5): what projection noise alone gives at this width.
    """
    _check_columns(df, (RUN, x, VALUE), "chance_figure")
    label = "τ" if x == TAU else x
    traces = []
    for k, (run, part) in enumerate(df.groupby(RUN, sort=False)):
        colour, part = PALETTE[k % len(PALETTE)], part.sort_values(x)
        traces.append(_scatter(len(part), "lines+markers")(
            x=part[x], y=part[VALUE], name=str(run), legendgroup=str(run), mode="lines+markers",
            line=dict(color=colour), marker=dict(size=5),
            hovertemplate=f"{run}<br>{label}=%{{x:.4g}}<br>value=%{{y:.4g}}<extra></extra>"))
        ref = None if chance is None else chance[chance[RUN] == run].sort_values(x)
        if ref is not None and not ref.empty:
            traces.append(_scatter(len(ref), "lines")(
                x=ref[x], y=ref[VALUE], name=f"{run} chance", legendgroup=str(run), mode="lines",
                line=dict(color=colour, dash="dot", width=1.5),
                hovertemplate=f"{run} chance<br>{label}=%{{x:.4g}}<br>value=%{{y:.4g}}<extra></extra>"))
    fig = go.Figure(traces)
    return _layout(fig, x_title=TAU_TITLE if x == TAU else STEP_TITLE, y_title=_metric_title(metric, caption),
                   log_x=log_x, log_y=log_y, title=title)
