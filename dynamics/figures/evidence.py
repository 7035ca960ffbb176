"""The evidence behind one claim of `python -m dynamics reproduce`: its points (one per run or seed), their
mean at each x, the fitted power law with its 95% interval drawn as a band, and guides for the paper's
value and the alternative it is tested against. Pure: the dashboard reads claims.json and the points file
and passes them here (dashboard.evidence).

Two kinds of statistic:
- "slope": y ∝ x^s on log-log axes. The fitted line has the measured slope s and passes through the
  centroid (mean log x, mean log ȳ) of the per-x means ȳ, which is where a least-squares line on the means
  passes; the band is the fan between the lines of slopes ci_low and ci_high through that centroid, and the
  guides are lines of the paper's and the alternative's slopes through the same centroid.
- "mean": a level (e.g. a signed gap): linear y, the measured value as a horizontal line with its interval
  as a shaded band, the paper's value and the alternative as horizontal guides.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ._style import PALETTE, _check_columns, _layout, _rgba

FIT_COLOUR, PAPER_COLOUR, ALT_COLOUR, OTHER_COLOUR = "#1f77b4", "#2ca02c", "#d62728", "#bbbbbb"


def _means(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    return df.groupby(x, as_index=False)[y].mean().sort_values(x)


def positive_centroid(df: pd.DataFrame, x: str, y: str) -> tuple[float, float] | None:
    """(mean log x, mean log ȳ) over the x whose mean ȳ is positive; None when fewer than one."""
    m = _means(df, x, y)
    m = m[(m[x] > 0) & (m[y] > 0) & np.isfinite(m[y])]
    return (float(np.log(m[x]).mean()), float(np.log(m[y]).mean())) if len(m) else None


def _line(xs: np.ndarray, centre: tuple[float, float], slope: float) -> np.ndarray:
    return np.exp(centre[1] + slope * (np.log(xs) - centre[0]))


def claim_figure(points: pd.DataFrame, *, x: str, y: str, statistic: str = "slope", measured: float | None = None,
                 ci: Sequence[float] | None = None, paper: float | None = None, paper_words: str = "",
                 alternative: float | None = None, alternative_words: str = "",
                 others: pd.DataFrame | None = None, series: Sequence[tuple] = (),
                 title: str | None = None, x_title: str | None = None, y_title: str | None = None) -> go.Figure:
    """The claim's points and fit (see the module docstring for the two statistics).

    `points`: the rows the claim is measured on (its `where` filter applied), columns x, y, optionally
    `diverged` (bool; drawn as ×, not used for the fit) and other columns (shown on hover: run_id, seed).
    `others`: the rest of the points file (other settings), drawn faint. `series`: extra (column, label)
    pairs of the same points drawn beside y, e.g. the raw value and its chance level when y is corrected; a
    third item, a slope, adds that series' own fitted line (through its centroid, like the main fit).
    """
    _check_columns(points, (x, y), "claim_figure")
    log = statistic == "slope"
    diverged = points["diverged"].astype(bool) if "diverged" in points else pd.Series(False, index=points.index)
    ok, bad = points[~diverged], points[diverged]
    traces: list[go.BaseTraceType] = []
    if others is not None and len(others) and y in others:
        traces.append(go.Scatter(x=others[x], y=others[y], mode="markers", name="other settings in the file",
                                 marker=dict(color=OTHER_COLOUR, size=6), hovertemplate=f"{x}=%{{x:.4g}}<br>"
                                 f"{y}=%{{y:.4g}}<extra>other setting</extra>"))
    for k, (col, label, *fit) in enumerate(series):
        if col in ok:
            colour = PALETTE[(k + 2) % len(PALETTE)]
            m = _means(ok, x, col)
            traces.append(go.Scatter(x=m[x], y=m[col], mode="markers" if fit else "lines+markers",
                                     name=f"{label} (mean)", line=dict(color=colour, dash="dot"),
                                     marker=dict(size=7, symbol="diamond", color=colour)))
            centre = positive_centroid(ok, x, col) if log and fit and _finite(fit[0]) else None
            if centre is not None and m[x].nunique() > 1:
                xs = np.geomspace(m[x][m[x] > 0].min(), m[x].max(), 30)
                traces.append(go.Scatter(x=xs, y=_line(xs, centre, fit[0]), mode="lines",
                                         name=f"{label} fit: slope {fit[0]:.3g}", line=dict(color=colour, width=1.5)))
    hover = [c for c in ("run_id", "seed", "lr") if c in ok and c not in (x, y)]
    traces.append(go.Scatter(x=ok[x], y=ok[y], mode="markers", name="points (one per run)",
                             marker=dict(color=_rgba(FIT_COLOUR, 0.45), size=7),
                             customdata=ok[hover].astype(str).to_numpy() if hover else None,
                             hovertemplate=f"{x}=%{{x:.4g}}<br>{y}=%{{y:.4g}}" + "".join(
                                 f"<br>{c}=%{{customdata[{i}]}}" for i, c in enumerate(hover)) + "<extra></extra>"))
    means = _means(ok, x, y)
    if len(means) < len(ok):
        traces.append(go.Scatter(x=means[x], y=means[y], mode="markers", name="mean over seeds",
                                 marker=dict(color=FIT_COLOUR, size=12, symbol="circle-open", line=dict(width=2))))
    if len(bad):
        top = float(np.nanmax(ok[y])) * (1.5 if log else 1.1) if len(ok) and np.isfinite(ok[y]).any() else 1.0
        traces.append(go.Scatter(x=bad[x], y=[top] * len(bad), mode="markers", name="diverged (not fitted)",
                                 marker=dict(color=ALT_COLOUR, size=11, symbol="x")))
    traces += (_slope_guides if log else _level_guides)(ok, x, y, measured, ci, paper, paper_words, alternative,
                                                       alternative_words)
    fig = _layout(go.Figure(traces), x_title=x_title or x, y_title=y_title or y, log_x=log, log_y=log,
                  title=title, legend_title="")
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2, x=0), height=520,
                      margin=dict(b=40))  # below the plot: the chart keeps its width in a half-page column
    numeric = pd.api.types.is_numeric_dtype(points[x])
    ticks = sorted(v for v in pd.concat([points[x], others[x] if others is not None and x in others else
                                         points[x]]).unique() if numeric and (not log or v > 0))
    if not numeric:
        fig.update_xaxes(type="category")
    if 1 < len(ticks) <= 12:  # the x values measured, not log minor ticks
        fig.update_xaxes(tickvals=ticks, ticktext=[f"{v:g}" for v in ticks])
    return fig


def _finite(v) -> bool:
    return v is not None and np.isfinite(v)


def _slope_guides(ok, x, y, measured, ci, paper, paper_words, alt, alt_words) -> list[go.Scatter]:
    centre = positive_centroid(ok, x, y)
    xs_all = ok[x][ok[x] > 0]
    if centre is None or xs_all.nunique() < 2:
        return []
    xs = np.geomspace(xs_all.min(), xs_all.max(), 30)
    out = []
    if ci is not None and len(ci) == 2 and _finite(ci[0]) and _finite(ci[1]):
        a, b = _line(xs, centre, ci[0]), _line(xs, centre, ci[1])
        out += [go.Scatter(x=xs, y=np.maximum(a, b), mode="lines", line=dict(width=0), showlegend=False,
                           hoverinfo="skip", legendgroup="fit"),
                go.Scatter(x=xs, y=np.minimum(a, b), mode="lines", line=dict(width=0), fill="tonexty",
                           fillcolor=_rgba(FIT_COLOUR, 0.18), legendgroup="fit", hoverinfo="skip",
                           name=f"95% interval of the slope [{ci[0]:.3g}, {ci[1]:.3g}]")]
    if _finite(measured):
        out.append(go.Scatter(x=xs, y=_line(xs, centre, measured), mode="lines", legendgroup="fit",
                              name=f"fit: slope {measured:.3g}", line=dict(color=FIT_COLOUR, width=2.5)))
    for value, words, colour, dash, who in ((paper, paper_words, PAPER_COLOUR, "dash", "paper"),
                                            (alt, alt_words, ALT_COLOUR, "dot", "alternative")):
        if _finite(value):
            out.append(go.Scatter(x=xs, y=_line(xs, centre, value), mode="lines",
                                  name=f"{who}: slope {value:g}" + (f" ({words})" if words else ""),
                                  line=dict(color=colour, dash=dash, width=2)))
    return out


def _level_guides(ok, x, y, measured, ci, paper, paper_words, alt, alt_words) -> list[go.Scatter]:
    if not len(ok):
        return []
    if pd.api.types.is_numeric_dtype(ok[x]):
        lo, hi = float(ok[x].min()), float(ok[x].max())
        xs = [lo, hi] if hi > lo else [lo - 0.5, lo + 0.5]
    else:  # categories (e.g. a task or a setting): across all of them
        xs = [ok[x].iloc[0], ok[x].iloc[-1]]
    out = []
    if ci is not None and len(ci) == 2 and _finite(ci[0]) and _finite(ci[1]):
        out += [go.Scatter(x=xs, y=[ci[1]] * 2, mode="lines", line=dict(width=0), showlegend=False,
                           hoverinfo="skip", legendgroup="fit"),
                go.Scatter(x=xs, y=[ci[0]] * 2, mode="lines", line=dict(width=0), fill="tonexty",
                           fillcolor=_rgba(FIT_COLOUR, 0.18), legendgroup="fit", hoverinfo="skip",
                           name=f"95% interval [{ci[0]:.3g}, {ci[1]:.3g}]")]
    if _finite(measured):
        out.append(go.Scatter(x=xs, y=[measured] * 2, mode="lines", name=f"measured {measured:.3g}",
                              legendgroup="fit", line=dict(color=FIT_COLOUR, width=2.5)))
    for value, words, colour, dash, who in ((paper, paper_words, PAPER_COLOUR, "dash", "paper"),
                                            (alt, alt_words, ALT_COLOUR, "dot", "alternative")):
        if _finite(value):
            out.append(go.Scatter(x=xs, y=[value] * 2, mode="lines", line=dict(color=colour, dash=dash, width=2),
                                  name=f"{who}: {value:g}" + (f" ({words})" if words else "")))
    return out
