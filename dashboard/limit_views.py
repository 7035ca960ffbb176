"""The Limit page's views, each reading its own URL-backed widgets: finite runs against the limit run (the
SDE / NFD prediction) over training steps at chosen depth times, over depth at a step, and the error panels
against width and depth. Also the page's defaults: the metrics a limit run has, and the step and metric at
which finite runs and the limit differ most visibly.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import streamlit as st

from dashboard import grouping as G, loaders as D, runs as R, widgets as W
from dynamics.figures import RUN, depth_profile_figure, error_scaling_figure, limit_steps_figure
from dynamics.runs.store import VALUE

PREFERRED = ("h_move", "g_move", "h_sq", "g_sq")  # movement first: at initialisation finite and limit agree


def limit_metrics(chosen: Sequence, ref) -> tuple[dict[str, list[int]], list[str]]:
    """Per-layer metrics the limit run has (and at least one chosen run): metric -> steps both recorded."""
    lim, errors = R.metric_catalog([ref])
    fin, more = R.metric_catalog(list(chosen))
    out = {m: sorted(set(steps) & set(fin[m][1])) for m, (net, steps) in lim.items()
           if not net and m in fin and not fin[m][0]}
    return {m: s for m, s in out.items() if s}, errors + more


def visible_gap(chosen: Sequence, ref, metric: str, step: int) -> float:
    """RMS over τ and runs of (finite − limit) at `step`, relative to the limit's RMS (0 when unknown)."""
    prof, _ = D.profiles([*chosen, ref], metric, step)
    lim = prof[prof[RUN] == ref.label].sort_values("tau")
    if lim.empty:
        return 0.0
    scale = float(np.sqrt(np.mean(lim[VALUE] ** 2))) or 1.0
    gaps = [np.interp(part["tau"], lim["tau"], lim[VALUE]) - part[VALUE]
            for run, part in prof[prof[RUN] != ref.label].groupby(RUN)]
    return float(np.sqrt(np.mean(np.concatenate(gaps) ** 2))) / scale if gaps else 0.0


def default_view(chosen: Sequence, ref, catalog: dict[str, list[int]]) -> tuple[str, int]:
    """The first of PREFERRED (else any metric) whose finite-vs-limit gap at its last shared step is over 5%;
    its last shared step."""
    order = [m for m in PREFERRED if m in catalog] + [m for m in catalog if m not in PREFERRED]
    for m in order[:4]:
        if visible_gap(chosen, ref, m, catalog[m][-1]) > 0.05:
            return m, catalog[m][-1]
    return order[0], catalog[order[0]][-1]


def over_steps(page: str, chosen: Sequence, ref, metric: str, log_y: bool, fmt: str) -> None:
    """Panels at chosen depth times: finite runs solid, the limit dashed with its ±1 stderr band, over steps."""
    grid = D.tau_grid([*chosen, ref]) or [0.0]
    near = list(dict.fromkeys(min(grid, key=lambda g: abs(g - t)) for t in (0.25, 0.5, 1.0)))
    taus = W.choose(page, "tau", "Depth times τ (one panel each; the nearest layer of each run)", grid, near,
                    widget=st.multiselect, multi=True, format_func=lambda t: f"τ={t:g}") or near
    steps = G.apply(D.curves([*chosen, ref], metric, taus, (0, 2**62), 0.0)[0])
    W.show_chart(limit_steps_figure(steps, taus=taus, metric=metric, caption=R.caption(metric), log_y=log_y,
                                    limit_runs={ref.label}, title=f"{metric} over steps: finite runs vs the "
                                    "SDE / NFD prediction"), steps, f"{metric}_vs_limit_over_steps",
                 key=f"{page}.steps", fmt=fmt)


def over_depth(page: str, chosen: Sequence, ref, metric: str, steps: list[int], default_step: int, log_y: bool,
               fmt: str) -> None:
    step = W.choose(page, "step", "Step", steps, default_step, widget=st.select_slider) if len(steps) > 1 \
        else steps[0]
    prof, errors = D.profiles([*chosen, ref], metric, step)
    prof = G.apply(prof)
    R.show_problems(errors)
    W.show_chart(depth_profile_figure(prof, metric=metric, caption=R.caption(metric), log_y=log_y,
                                      title=f"{metric} over depth at step {step}", limit_runs={ref.label}),
                 prof, f"{metric}_vs_limit_step{step}", key=f"{page}.overlay", fmt=fmt)


def error_panels(page: str, chosen: Sequence, ref, metric: str, steps: list[int], default_step: int,
                 fmt: str) -> None:
    """Finite-vs-limit error against width n and depth L at a step (dashboard.loaders.limit_errors)."""
    step = W.choose(page, "step", "Step", steps, default_step, widget=st.select_slider) if len(steps) > 1 \
        else steps[0]
    err, errors = D.limit_errors(chosen, ref, metric, step)
    R.show_problems(errors)
    if err["width"].nunique() < 2 and err["depth"].nunique() < 2:
        st.info("Pick finite runs at two or more widths or depths (same setting otherwise) to see the error "
                "shrink; fitted slopes and confidence intervals are on the Scaling page.")
        return
    for col, (x, group) in zip(st.columns(2), (("width", "depth"), ("depth", "width"))):
        with col:
            if err[x].nunique() < 2:
                st.caption(f"Only one {x} among the chosen runs: no error-vs-{x} panel.")
                continue
            W.show_chart(error_scaling_figure(err, x=x, group=group, title=f"error vs {x} at step {step}",
                                              y_title=f"RMS error of {metric} vs limit"),
                         err, f"{metric}_error_vs_{x}_step{step}", key=f"{page}.err_{x}", fmt=fmt)
