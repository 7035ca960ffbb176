"""The claims at a glance: a forest plot of claims.json, one row per claim with its own x-axis (the claims measure
slopes, exponents and differences on very different scales), grouped under the paper's statement each tests.

Per row: the paper's value or range (green: a rate or bound as a line, a half-line as a band to the axis' edge),
the alternative the data must exclude (red dotted line), and the claim's estimate with its 95% interval coloured by
verdict (an open marker: not identified; a cross: no interval). Pure: `claims_frame(claims)` turns claims.json's
entries into a tidy frame, `claims_forest_figure(frame)` draws it; the dashboard calls both (dashboard.claims).
"""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from ._style import _check_columns, _rgba

__all__ = ["VERDICT_COLOURS", "claims_frame", "claims_forest_figure", "setting_text"]

VERDICT_COLOURS = {"agrees": "#2ca02c", "disagrees": "#d62728", "inconclusive": "#ff7f0e"}
PAPER_COLOUR, ALT_COLOUR = "#2ca02c", "#d62728"
COLUMNS = ("id", "group", "kind", "setting", "verdict", "measured", "low", "high", "paper_low", "paper_high",
           "alternative", "identified")
ROW_PX, TICK_PX, HEAD_PX = 50, 24, 24  # a claim's row: its plot and, below it, its own x-axis' tick labels


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else math.nan


def setting_text(claim: dict) -> str:
    """The claim's setting in a few words: its `where` filter, and a coupling claim's reading."""
    where = ", ".join(f"{v}" if k == "setting" else f"{k} {v}" for k, v in (claim.get("where") or {}).items()
                      if k != "usable")
    reading = (claim.get("reading") or {}).get("name", "")
    return "; ".join(p for p in (where, reading and f"{reading} reading") if p) or "—"


def claims_frame(claims: list[dict]) -> pd.DataFrame:
    """One row per claim (columns COLUMNS) from claims.json's entries; missing numbers are NaN, a claim without
    a group is its own group (its statement)."""
    rows = []
    for c in claims:
        ci = list(c.get("ci") or [None, None]) + [None, None]
        rng = list(c.get("paper_range") or [c.get("paper_value"), c.get("paper_value")]) + [None, None]
        kind = c.get("kind") or c.get("rule") or ""
        lo, hi = _num(rng[0]), _num(rng[1])
        if kind in ("bound", "vanishes") and rng[0] is None:
            lo = -math.inf
        if kind in ("persists", "contrast") and rng[1] is None:
            hi = math.inf
        rows.append({"id": str(c.get("id", "")), "group": c.get("paper_group") or c.get("statement", ""),
                     "kind": kind, "setting": setting_text(c), "verdict": c.get("verdict", ""),
                     "measured": _num(c.get("measured")), "low": _num(ci[0]), "high": _num(ci[1]),
                     "paper_low": lo, "paper_high": hi,
                     "alternative": _num((c.get("alternative") or {}).get("value")
                                         if isinstance(c.get("alternative"), dict) else c.get("alternative")),
                     "identified": bool(c.get("identified", True))})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _span(r) -> tuple[float, float]:
    """The row's x range: every finite number it draws, padded by a fifth (at least ±0.25)."""
    vals = [v for v in (r.measured, r.low, r.high, r.paper_low, r.paper_high, r.alternative) if math.isfinite(v)]
    if not vals:
        return -1.0, 1.0
    lo, hi = min(vals), max(vals)
    pad = max(0.2 * (hi - lo), 0.25)
    return lo - pad, hi + pad


def claims_forest_figure(df: pd.DataFrame, *, title: str | None = "The paper's statements as measured here"
                         ) -> go.Figure:
    """The forest plot of the module docstring from claims_frame's frame, in its order, grouped by `group` (first
    appearance). One row of axes per group header and per claim, stacked by their y domains; claim rows are
    labelled by id, kind and setting."""
    _check_columns(df, COLUMNS, "claims_forest_figure")
    groups = list(dict.fromkeys(df.group))
    layout = []
    for g in groups:
        layout.append(("head", g))
        layout += [("claim", r) for r in df[df.group == g].itertuples()]
    heights = [HEAD_PX if k == "head" else ROW_PX for k, _ in layout]
    traces, axes, notes, shown = [], {}, [], set()  # plain dicts, validated once by go.Figure (5× faster)
    edges = [1 - sum(heights[:i]) / sum(heights) for i in range(len(heights) + 1)]  # row i: edges[i]..edges[i-1]
    ticks = TICK_PX / sum(heights)

    def add(trace: dict, ax: str, legend: str | None = None) -> None:
        trace.update(type="scatter", xaxis=f"x{ax}", yaxis=f"y{ax}",
                     showlegend=legend is not None and legend not in shown)
        if legend:
            trace.update(legendgroup=legend)
            shown.add(legend)
        traces.append(trace)
    j = 0  # claims so far: the row's axes are x, y for the first, x2, y2 for the second, ...
    for i, (k, item) in enumerate(layout, start=1):
        if k == "head":
            notes.append(dict(text=f"<b>{item}</b>", x=0, xref="paper", y=(edges[i] + edges[i - 1]) / 2,
                              yref="paper", xanchor="left", yanchor="middle", showarrow=False, font=dict(size=12)))
            continue
        r, j = item, j + 1
        ax = "" if j == 1 else str(j)
        lo, hi = _span(r)
        label = f"{r.id} · {r.kind} · {r.setting}" if r.setting != "—" else f"{r.id} · {r.kind}"
        paper = _paper(r, lo, hi)
        if paper is not None:
            add(paper, ax, "paper's value or range")
        if math.isfinite(r.alternative):
            add(dict(x=[r.alternative] * 2, y=[-0.4, 0.4], mode="lines", name="alternative",
                     line=dict(color=ALT_COLOUR, dash="dot", width=1.5), hoverinfo="skip"), ax, "alternative")
        colour = VERDICT_COLOURS.get(r.verdict, "#7f7f7f")
        has_ci = math.isfinite(r.low) and math.isfinite(r.high)
        if has_ci:
            add(dict(x=[r.low, r.high], y=[0, 0], mode="lines", line=dict(color=colour, width=3),
                     name=f"{r.id} interval", hoverinfo="skip"), ax)
        symbol = "x" if not has_ci else ("circle-open" if not r.identified else "circle")
        ci = f"[{r.low:.3g}, {r.high:.3g}]" if has_ci else "no interval"
        est = f"{r.measured:.3g}" if math.isfinite(r.measured) else "no estimate"
        name = r.verdict + ("" if r.identified else " (not identified)") + ("" if has_ci else " (no interval)")
        add(dict(x=[r.measured if math.isfinite(r.measured) else (lo + hi) / 2], y=[0], mode="markers",
                 name=name, marker=dict(color=colour, size=10, symbol=symbol, line=dict(width=2, color=colour)),
                 hovertemplate=f"{r.id}: {est} {ci}<br>{r.verdict}<extra></extra>"), ax, name)
        axes[f"xaxis{ax}"] = dict(range=[lo, hi], showgrid=False, zeroline=False, ticks="outside",
                                  tickfont=dict(size=9), nticks=6, anchor=f"y{ax}")
        axes[f"yaxis{ax}"] = dict(range=[-0.6, 0.6], tickvals=[0], ticktext=[label], showgrid=False, zeroline=False,
                                  tickfont=dict(size=11), anchor=f"x{ax}",
                                  domain=[edges[i] + ticks, edges[i - 1]])
    top = 100 if title else 50
    legend = dict(orientation="h", yanchor="bottom", y=1.0, x=0, xanchor="left", font=dict(size=11))
    return go.Figure(data=traces, layout=dict(title=dict(text=title, y=0.995, yanchor="top"),
                                              height=sum(heights) + top + 20, hovermode="closest",
                                              margin=dict(l=330, r=20, t=top, b=20), annotations=notes,
                                              plot_bgcolor="white", legend=legend, **axes))


def _paper(r, lo: float, hi: float) -> dict | None:
    """The paper's value (a line) or range (a band, clipped to the row's x range) on one row; None if it has none."""
    a, b = r.paper_low, r.paper_high
    if not (math.isfinite(a) or math.isfinite(b)):
        return None
    if a == b:
        xs, ys, fill = [a, a], [-0.4, 0.4], None
    else:
        a, b = max(a, lo), min(b, hi)  # a half-line runs to the row's edge
        xs, ys, fill = [a, b, b, a, a], [-0.4, -0.4, 0.4, 0.4, -0.4], "toself"
    return dict(x=xs, y=ys, mode="lines", fill=fill, fillcolor=_rgba(PAPER_COLOUR, 0.15),
                line=dict(color=PAPER_COLOUR, width=1.5, dash="dash"), name="paper's value or range", hoverinfo="skip")
