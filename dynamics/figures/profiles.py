"""Curves of one metric across runs: over depth time at a step (finite runs, limit runs with Monte-Carlo
bands), over steps (network scalars), and beside a chance level (the coupling metrics of docs/theory.md §5).
"""
from __future__ import annotations

from typing import Collection, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from plotly.subplots import make_subplots

from dynamics.runs.store import STDERR, STEP, VALUE

from ._style import LIMIT_COLOUR, PALETTE, PREDICTION, RUN, STEP_TITLE, TAU, TAU_TITLE, _band_traces, \
    _check_columns, _layout, _metric_title, _rgba, _run_curves, _scatter


def depth_profile_figure(df: pd.DataFrame, *, metric: str, caption: str = "", log_y: bool = False,
                         title: str | None = None, limit_runs: Collection[str] = (),
                         diverged: Collection[str] = ()) -> go.Figure:
    """A per-layer metric over depth time τ = ℓ/L at one step, one curve per run (docs/theory.md §2).

    `df`: columns run, tau, value, optionally stderr (drawn as a ±1 stderr band, for limit runs).
    Runs of different depth share the τ axis, which is what makes them comparable in the L → ∞ limit.
    Runs named in `limit_runs` are drawn dashed; runs named in `diverged` are marked so.
    """
    _check_columns(df, (RUN, TAU, VALUE), "depth_profile_figure")
    fig = go.Figure(_run_curves(df, TAU, "τ", dashed=limit_runs, diverged=diverged))
    return _layout(fig, x_title=TAU_TITLE, y_title=_metric_title(metric, caption), log_y=log_y, title=title)


def metric_over_steps_figure(df: pd.DataFrame, *, metric: str, caption: str = "", log_y: bool = False,
                             title: str | None = None, diverged: Collection[str] = ()) -> go.Figure:
    """A network scalar (loss, grad_norm, ...; layer −1 in the store) over SGD steps, one curve per run; a run
    named in `diverged` ends in a large × marked "diverged".

    `df`: columns run, step, value, optionally stderr.
    """
    _check_columns(df, (RUN, STEP, VALUE), "metric_over_steps_figure")
    fig = go.Figure(_run_curves(df, STEP, STEP_TITLE, diverged=diverged))
    return _layout(fig, x_title=STEP_TITLE, y_title=_metric_title(metric, caption), log_y=log_y, title=title)


CHANCE_NAME = "chance level (shaded, in each run's colour)"  # one legend entry for every run's band ...
CHANCE_DOTTED = "chance level (dotted, in each run's colour)"  # ... or, on a log axis, its dotted line


def chance_figure(df: pd.DataFrame, chance: pd.DataFrame | None, *, x: str, metric: str, caption: str = "",
                  log_x: bool = False, log_y: bool = False, title: str | None = None,
                  excess: bool = False) -> go.Figure:
    """A measured metric per run over `x` (tau or step) against its chance level: the same measurement with an
    independent matrix in place of W (docs/theory.md §5), i.e. what projection noise alone gives at this width.

    `df`, `chance`: columns run, x, value. The chance level is a shaded band from 0 up to it in the run's
    colour (a dotted line on a log y axis, where 0 has no place). With `excess`, the curve is measured − chance
    (rows matched on run and x) beside a dotted zero line: an excess far above the band is coupling, one
    inside it is noise.
    """
    _check_columns(df, (RUN, x, VALUE), "chance_figure")
    label = "τ" if x == TAU else x
    traces = []
    for k, (run, part) in enumerate(df.groupby(RUN, sort=False)):
        colour, part = PALETTE[k % len(PALETTE)], part.sort_values(x)
        ref = None if chance is None else chance[chance[RUN] == run].sort_values(x)
        if ref is not None and not ref.empty:
            if log_y:
                traces.append(_scatter(len(ref), "lines")(
                    x=ref[x], y=ref[VALUE], name=CHANCE_DOTTED, legendgroup=str(run), mode="lines",
                    showlegend=not any(t.name == CHANCE_DOTTED for t in traces),  # once for every run
                    line=dict(color=colour, dash="dot", width=1.5),
                    hovertemplate=f"{run} chance<br>{label}=%{{x:.4g}}<br>value=%{{y:.4g}}<extra></extra>"))
            else:
                traces += [go.Scatter(x=ref[x], y=np.zeros(len(ref)), mode="lines", line=dict(width=0),
                                      name=f"{run} chance base", legendgroup=str(run), showlegend=False,
                                      hoverinfo="skip"),
                           go.Scatter(x=ref[x], y=ref[VALUE], mode="lines", line=dict(width=0), fill="tonexty",
                                      fillcolor=_rgba(colour, 0.15), name=CHANCE_NAME, legendgroup=str(run),
                                      showlegend=not any(t.name == CHANCE_NAME for t in traces),  # once
                                      hovertemplate=f"{run} chance<br>{label}=%{{x:.4g}}<br>value=%{{y:.4g}}"
                                                    "<extra></extra>")]
            if excess:
                part = part.merge(ref[[x, VALUE]], on=x, how="inner", suffixes=("", "_chance"))
                part = part.assign(**{VALUE: part[VALUE] - part[f"{VALUE}_chance"]})
        traces.append(_scatter(len(part), "lines+markers")(
            x=part[x], y=part[VALUE], name=str(run), legendgroup=str(run),  # the axis says "− chance"
            mode="lines+markers", line=dict(color=colour), marker=dict(size=5),
            hovertemplate=f"{run}<br>{label}=%{{x:.4g}}<br>{'excess' if excess else 'value'}=%{{y:.4g}}"
                          "<extra></extra>"))
    fig = go.Figure(traces)
    if excess and not log_y:
        fig.add_hline(y=0, line=dict(color="grey", dash="dot", width=1))
    return _layout(fig, x_title=TAU_TITLE if x == TAU else STEP_TITLE,
                   y_title=_metric_title(f"{metric} − chance" if excess else metric, caption),
                   log_x=log_x, log_y=log_y, title=title)


def limit_steps_figure(df: pd.DataFrame, *, taus: Sequence[float], metric: str, caption: str = "",
                       limit_runs: Collection[str] = (), log_y: bool = False, title: str | None = None) -> go.Figure:
    """Finite runs against the limit over training: one panel per depth time τ, `metric` over steps in each;
    finite runs solid, limit runs (the SDE / NFD prediction) dashed with their ±1 stderr Monte-Carlo band.

    `df`: columns run, tau, step, value, optionally stderr; each row goes to the panel of the nearest of `taus`
    (a run of depth L contributes its layer nearest τ·L). Legend: each run once, the band once.
    """
    _check_columns(df, (RUN, TAU, STEP, VALUE), "limit_steps_figure")
    taus = list(taus) or sorted(df[TAU].unique())
    fig = make_subplots(rows=1, cols=len(taus), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"τ ≈ {t:.3g}" for t in taus])
    panel = np.abs(df[TAU].to_numpy(float)[:, None] - np.asarray(taus, float)[None, :]).argmin(axis=1) \
        if len(df) else np.zeros(0, int)
    shown: set[str] = set()
    for k, (run, part) in enumerate(df.assign(_panel=panel).groupby(RUN, sort=False)):
        limit = run in limit_runs
        colour = LIMIT_COLOUR if limit else PALETTE[k % len(PALETTE)]
        for p, cell in part.groupby("_panel", sort=True):
            cell = cell.sort_values(STEP)
            if STDERR in cell and cell[STDERR].notna().any():  # a limit's Monte-Carlo error, or a seed mean's
                for t in _band_traces(cell[STEP], cell[VALUE], cell[STDERR].fillna(0.0), name=str(run),
                                      colour=colour, legend=limit and f"{run} band" not in shown):
                    fig.add_trace(t, row=1, col=int(p) + 1)
                shown.add(f"{run} band")
            fig.add_trace(go.Scatter(
                x=cell[STEP], y=cell[VALUE], mode="lines" if limit or len(cell) > 60 else "lines+markers",
                name=f"{run}{PREDICTION if limit else ''}", legendgroup=str(run), showlegend=run not in shown,
                line=dict(color=colour, dash="dash" if limit else None), marker=dict(size=5),
                hovertemplate=f"{run}<br>τ={taus[int(p)]:.3g}<br>step=%{{x}}<br>value=%{{y:.4g}}<extra></extra>"),
                row=1, col=int(p) + 1)
            shown.add(run)
    _layout(fig, x_title="", y_title=_metric_title(metric, caption), log_y=log_y, title=title)
    fig.update_xaxes(title_text=STEP_TITLE)
    fig.update_yaxes(title_text=None)
    return fig.update_yaxes(title_text=_metric_title(metric, caption), row=1, col=1)
