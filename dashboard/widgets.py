"""Widgets shared by the pages, each one URL-backed (dashboard.state's seed → widget → set_url in one call),
and `show_chart`, which draws a figure with the Plotly toolbar's PNG/SVG download (`image_format`) and
offers the CSV of exactly the data drawn. Keys are "<page>.<param>", so every page keeps its own widget state.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import pandas as pd
import streamlit as st

from dashboard.csv_export import csv_bytes
from dashboard.runs import caption, layered_catalog
from dashboard.state import reopen_when, seed_range, seed_widget, set_url
from dashboard import grouping
from dashboard.selection import style
from dynamics.figures import chart_config, restyle_runs

SMOOTHING = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)


def choose(page: str, param: str, label: str, options: Sequence[Any], default: Any, *,
           widget: Callable = st.selectbox, multi: bool = False, url_default: bool = True, **kw) -> Any:
    """A widget whose value lives in ?param= (removed from the URL when it equals `default` and
    url_default is False, to keep links short)."""
    key = f"{page}.{param}"
    seed_widget(key, param, options, default, multi=multi)
    value = widget(label, options, key=key, **kw)
    set_url(**{param: value if url_default or value != default else None})
    return value


def pick_one(page: str, runs: Sequence, param: str = "hrun"):
    """One of `runs` (a selectbox when there are several; not in the URL when it is the first). Full names: a
    format_func here would break AppTest's replay of the widget."""
    labels = [r.label for r in runs]
    if len(labels) == 1:
        return runs[0]
    label = choose(page, param, "Run", labels, labels[0], url_default=False)
    return runs[labels.index(label)]


def pick_step(page: str, steps: Sequence[int], default: int, where=st, token: Any = None) -> int:
    """A step slider over recorded steps (?step=); no widget when there is one step. With `token` (e.g. the
    shown runs and metric), the slider goes back to `default` when the token changes (state.reopen_when)."""
    if token is not None:
        reopen_when(f"{page}.step", token, default)
    return choose(page, "step", "Step", steps, default, widget=where.select_slider) if len(steps) > 1 else steps[0]


def toggle(page: str, param: str, label: str, where=st) -> bool:
    """A toggle mirrored as ?param=True (absent when off)."""
    key = f"{page}.{param}"
    seed_widget(key, param, [False, True], False)
    value = where.toggle(label, key=key)
    set_url(**{param: value or None})
    return value


def step_range(page: str, steps: Sequence[int], label: str = "Step range") -> tuple[int, int]:
    """A range slider over recorded steps, in the URL as ?steps=lo&steps=hi (absent when it is everything)."""
    key, full = f"{page}.steps", (steps[0], steps[-1])
    seed_range(key, "steps", steps, full)
    value = tuple(st.select_slider(label, steps, key=key)) if len(steps) > 1 else full
    set_url(steps=None if value == full else list(value))
    return value


def metric_choice(page: str, metrics: Sequence[str], default: str, runs: Sequence | None = None) -> str:
    """A metric picker; each name with its caption (`runs`: whose tracker logged a name, dashboard.runs.caption)."""
    runs = list(runs) if runs is not None else None
    return choose(page, "metric", "Metric", list(metrics), default if default in metrics else metrics[0],
                  format_func=lambda m: f"{m}: {caption(m, runs)}" if caption(m, runs) else m)


def layered_metric(page: str, runs: Sequence, default: str) -> tuple[str, list[int]]:
    """The per-layer metric picker over `runs` and that metric's recorded steps; a page whose runs hold no
    per-layer metric says so and stops (runs.layered_catalog)."""
    catalog, layered = layered_catalog(list(runs))
    metric = metric_choice(page, layered, default, runs)
    return metric, list(catalog[metric][1])


def view_tabs(page: str, labels: Sequence[str], param: str = "view") -> list:
    """Lazy tabs, one view each: only the open tab's code runs and only its chart reaches the browser, so a page
    opens with one chart drawn instead of all. The open tab lives in ?view= (absent for the first). Each
    returned tab has `.open`: `if tab.open: with tab: ...`."""
    key = f"{page}.{param}"
    seed_widget(key, param, labels, labels[0])
    tabs = st.tabs(list(labels), key=key, on_change="rerun")
    set_url(**{param: None if st.session_state[key] == labels[0] else st.session_state[key]})
    return tabs


def image_format(page: str) -> str:
    """Sidebar choice of the format the chart toolbar's camera button saves (PNG or SVG)."""
    return st.sidebar.radio("Chart download format", ["png", "svg"], horizontal=True, key=f"{page}.img",
                            help="the camera button in each chart's toolbar saves the chart in this format")


def show_chart(fig, data: pd.DataFrame, name: str, *, key: str, fmt: str = "png") -> None:
    """The figure (its toolbar's camera saves `name`.png or .svg) and a CSV download of `data`, the frame
    drawn, built only when the button is clicked."""
    names, colours = style()
    extra_names, extra_colours = grouping.restyle()  # seed groups' names; colours by a config field
    restyle_runs(fig, {**names, **extra_names}, {**colours, **extra_colours})  # the same on every page
    st.plotly_chart(fig, config=chart_config(name, fmt), key=f"{key}.chart")
    st.download_button("CSV of this chart", lambda: csv_bytes(data), file_name=f"{name}.csv",
                       mime="text/csv", key=f"{key}.csv", on_click="ignore")


def job_outcome(job: dict, failed: str, done: str) -> None:
    """A finished background job (a solve, a ladder): its error; else, once, a rerun of the whole app so the run
    loader lists the new run; then the success line `done`."""
    if job.get("error"):
        st.error(f"{failed}: {job['error']}")
    elif not job.get("shown"):
        job["shown"] = True
        st.rerun(scope="app")  # the run loader rescans and the limit picker lists the new run
    else:
        st.success(done)
