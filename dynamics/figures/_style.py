"""Shared styling of the figure builders: tidy-frame column names, colours, Monte-Carlo bands, axes, and the
Plotly toolbar configuration (PNG/SVG download). No Streamlit, no I/O; the builders in the sibling modules
stay a few lines each because of the helpers here.
"""
from __future__ import annotations

from typing import Collection

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from dynamics.runs.store import STDERR, VALUE

RUN, TAU = "run", "tau"  # tidy-frame columns the store does not define: run label, depth time ℓ/L
SMOOTH = "smoothed"      # debiased-EMA column beside the raw `value` (figures.reduce.ema_debiased)
TAU_TITLE = "depth time τ = ℓ/L"
STEP_TITLE = "step"
PALETTE = qualitative.Plotly
LIMIT_COLOUR = "#222222"  # limit runs: one dark colour on every chart, whatever else is drawn
PREDICTION = " (SDE / NFD prediction)"  # appended to a limit run's name: the infinite-width, -depth limit
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
    """Axis title: the metric's name (THEORY §2), then its caption on a smaller second line."""
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


BAND_NAME = "±1 stderr (Monte-Carlo)"  # legend entry of a limit run's band


def _band_traces(x: pd.Series, y: pd.Series, err: pd.Series, *, name: str, colour: str,
                 legend: bool = False) -> list[go.Scatter]:
    """value ± stderr as a filled band: an invisible upper edge, then the lower edge filled up to it (in the
    legend as BAND_NAME when `legend`)."""
    common = dict(mode="lines", line=dict(width=0), legendgroup=name, hoverinfo="skip")
    upper = go.Scatter(x=x, y=y + err, name=f"{name} +stderr", showlegend=False, **common)
    lower = go.Scatter(x=x, y=y - err, name=f"{name} {BAND_NAME}" if legend else f"{name} −stderr", fill="tonexty",
                       showlegend=legend, fillcolor=_rgba(colour, 0.2), **common)
    return [upper, lower]


def _run_curves(df: pd.DataFrame, x: str, x_label: str, dashed: Collection[str] = (),
                diverged: Collection[str] = ()) -> list[go.Scatter]:
    """One line per run (sorted along x), preceded by its stderr band when the frame carries one.

    Runs named in `dashed` (limit runs) are drawn dashed without markers, so predictions read apart from data.
    Runs named in `diverged` get "(diverged)" in their name and a large × on their last point.
    """
    traces: list[go.Scatter] = []
    for k, (run, part) in enumerate(df.groupby(RUN, sort=False)):
        part = part.sort_values(x)
        limit = run in dashed
        colour = LIMIT_COLOUR if limit else PALETTE[k % len(PALETTE)]
        if STDERR in part and part[STDERR].notna().any():
            traces += _band_traces(part[x], part[VALUE], part[STDERR].fillna(0.0), name=str(run), colour=colour,
                                   legend=limit)
        mode = "lines" if limit or len(part) > 60 else "lines+markers"
        traces.append(_scatter(len(part), mode)(
            x=part[x], y=part[VALUE], name=f"{run}{PREDICTION if limit else ''}", legendgroup=str(run), mode=mode,
            line=dict(color=colour, dash="dash" if limit else None), marker=dict(size=5),
            hovertemplate=f"{run}<br>{x_label}=%{{x:.4g}}<br>value=%{{y:.4g}}<extra></extra>"))
        if run in diverged and len(part):
            traces[-1].name = f"{run} (diverged)"
            traces.append(go.Scatter(x=part[x].iloc[-1:], y=part[VALUE].iloc[-1:], mode="markers+text",
                                     name=f"{run} diverged here", legendgroup=str(run), showlegend=False,
                                     text=["diverged"], textposition="top center",
                                     marker=dict(symbol="x", size=14, color=colour, line=dict(width=2))))
    return traces


def _layout(fig: go.Figure, *, x_title: str, y_title: str, log_y: bool, title: str | None,
            log_x: bool = False, legend_title: str = RUN) -> go.Figure:
    fig.update_layout(title=title, legend_title_text=legend_title, hovermode="closest",
                      margin=dict(l=70, r=20, t=60 if title else 30, b=50))
    # on a log axis within one decade plotly labels ticks by their leading digit only ("9, 8, 7");
    # an explicit tickformat makes it print the values
    # exponentformat "e": dimensionless values read 5e-5, never with SI prefixes ("50µ", "800p")
    fig.update_xaxes(title_text=x_title, type="log" if log_x else "linear", exponentformat="e")
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear", exponentformat="e")
    for axis, on, update in (("x", log_x, fig.update_xaxes), ("y", log_y, fig.update_yaxes)):
        ticks = log_ticks(_values(fig, axis)) if on else []
        if ticks:  # plotly would label every minor tick of a log axis (overlapping) or only its leading digit
            update(tickvals=ticks, ticktext=tick_text(ticks))
    return fig


def tick_text(ticks: list[float]) -> list[str]:
    """Plain labels ("0.0292", "5e-05"; never SI prefixes) with the fewest significant digits (≥ 3) that keep
    every label distinct."""
    for digits in range(3, 8):
        text = [f"{t:.{digits}g}" for t in ticks]
        if len(set(text)) == len(text):
            return text
    return [f"{t:.8g}" for t in ticks]


def _values(fig: go.Figure, axis: str) -> np.ndarray:
    parts = []
    for t in fig.data:
        v = getattr(t, axis, None)
        if v is not None and t.type in ("scatter", "scattergl"):
            parts.append(np.asarray(v, dtype=float).ravel())
    return np.concatenate(parts) if parts else np.zeros(0)


def log_ticks(values: np.ndarray, max_ticks: int = 8) -> list[float]:
    """Readable ticks for a log axis over the positive finite `values`: 1-2-5 per decade over a wide range
    (thinned to ≤ max_ticks), 1-2-3-5 over one or two decades, and about five evenly spaced round numbers
    within a decade. [] when there are no positive values."""
    v = values[np.isfinite(values) & (values > 0)]
    if not len(v):
        return []
    lo, hi = float(v.min()), float(v.max())
    decades = np.log10(hi) - np.log10(lo)
    if decades < 0.7:  # within a decade: round linear steps
        step = 10 ** np.floor(np.log10((hi - lo) / 4 or hi))
        for mult in (1, 2, 5, 10):
            if (hi - lo) / (step * mult) <= 6:
                step *= mult
                break
        ticks = np.arange(np.floor(lo / step) * step, hi + step * 1.01, step)
        return [float(f"{t:.6g}") for t in ticks if t > 0]
    mantissas = (1, 2, 3, 5) if decades < 2 else (1, 2, 5)
    ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
             for m in mantissas]
    ticks = [float(f"{t:.6g}") for t in ticks if lo / 1.5 <= t <= hi * 1.5]
    for drop in ("3", "2", "5"):  # too many: thin the mantissas 3, then 2, then 5, then every other decade
        if len(ticks) > max_ticks:
            ticks = [t for t in ticks if not f"{t:.0e}".startswith(drop)]
    while len(ticks) > max_ticks:
        ticks = ticks[::2]
    return ticks


def restyle_runs(fig: go.Figure, names: dict[str, str], colours: dict[str, str]) -> go.Figure:
    """Give each run's traces its short name and its colour, the same on every chart (the dashboard computes
    both over all runs found). A trace belongs to a run when its legendgroup (else its name) is the run's
    label; its name's leading label is replaced by the short name ("<label> chance" -> "<short> chance"),
    its line, marker and fill take the run's colour. Hover texts keep the full label. Returns `fig`."""
    by_length = sorted(names, key=len, reverse=True)
    for t in fig.data:
        run = getattr(t, "legendgroup", None) or getattr(t, "name", None)
        if run not in names and run not in colours:  # e.g. "<label> ℓ=3 (τ=0.5)": only the name is shortened
            prefix = next((lab for lab in by_length if t.name and t.name.startswith(lab + " ")), None)
            if prefix:
                t.name = names[prefix] + t.name[len(prefix):]
            continue
        if t.name and t.name.startswith(run) and run in names:
            t.name = names[run] + t.name[len(run):]
        colour = colours.get(run)
        if colour is None or t.type not in ("scatter", "scattergl"):
            continue
        if t.line is not None and t.line.width != 0:
            t.line.color = colour
        if t.marker is not None:
            t.marker.color = colour
        if t.fill in ("tonexty", "toself", "tozeroy"):
            t.fillcolor = _rgba(colour, 0.2)
    return fig
