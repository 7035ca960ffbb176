"""The Coord check page's loaders and pieces: the ladders among the chosen runs (dynamics.coordcheck.find_ladders:
runs that differ only in width, or only in depth, and seed), each ladder's judged rows (cached on the runs'
paths and file mtimes, so a ladder still training is re-judged when it flushes), the overview of every
ladder's verdict, and the verdict banner. No figures are built here (dynamics.coordcheck.figure).
"""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard import loaders
from dynamics.coordcheck import JUDGED, Ladder, find_ladders, fit_rows, gather, overall
from dynamics.coordcheck.figure import MARKS
from dynamics.runs.store import RunFormatError

HOWTO = ("python -m dynamics coordcheck --widths 64,128,256,512 --depths 4,8,16,32 --seeds 6 --out cc/\n"
         "python -m dynamics coordcheck --param sp --widths 64,128,256,512 --depth 2 --seeds 6 --out cc-sp/")


def ladders(runs) -> list[Ladder]:
    """The ladders among the picker's runs (dashboard.runs.Run), widths first."""
    return find_ladders([r.meta for r in runs])


def _key(ladder: Ladder) -> str:
    """What the cache is keyed on: the ladder and every run's path with the mtime of its files."""
    return json.dumps({"axis": ladder.axis, "fixed": ladder.fixed, "setting": ladder.setting,
                       "runs": sorted((m["path"], loaders.mtime(m["path"])) for m in ladder.runs)},
                      sort_keys=True, default=str)


@st.cache_data(max_entries=32, show_spinner=False)
def _judged(key: str, tol: float, _ladder: Ladder) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """(the ladder's tidy frame of judged metrics, its rows, an error message or None)."""
    try:
        frame = gather(_ladder, metrics=list(JUDGED))
    except RunFormatError as e:
        return pd.DataFrame(), pd.DataFrame(), str(e)
    return frame, fit_rows(frame, _ladder.axis, tol=tol), None


def judged(ladder: Ladder, tol: float) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    return _judged(_key(ladder), tol, ladder)


def overview(all_ladders: list[Ladder], tol: float) -> pd.DataFrame:
    """One row per ladder: its setting, axis, values, seeds, verdict and counts (the page's first table)."""
    out = []
    for lad in all_ladders:
        _, rows, error = judged(lad, tol)
        v = overall(rows) if error is None else {"verdict": "unreadable", "failing": 0, "rows": 0}
        out.append({"ladder": lad.label, "verdict": v["verdict"], "failing rows": v["failing"], "rows": v["rows"],
                    "values": f"{lad.axis}s " + ", ".join(map(str, lad.values)), "seeds": lad.seeds})
    return pd.DataFrame(out)


def banner(ladder: Ladder, rows: pd.DataFrame, tol: float) -> None:
    """The ladder's verdict in one line: red when some row fails, green when every row is flat."""
    v = overall(rows)
    c = v["counts"]
    text = (f"**{v['verdict']}** with depth-μP's Θ(1) over {ladder.axis} {', '.join(map(str, ladder.values))} "
            f"({ladder.seeds} seeds): " + ", ".join(f"{n} {MARKS.get(k, '')} {k}" for k, n in sorted(c.items()))
            + f" of {v['rows']} rows (metric × layer × step; flat = 95% slope interval inside ±{tol:g}).")
    if ladder.seeds < 2:
        text += (" One seed per rung gives no interval, so nothing can be decided: train a ladder with seeds, "
                 "e.g. `python -m dynamics coordcheck --seeds 6 ...`.")
    {"inconsistent": st.error, "consistent": st.success}.get(v["verdict"], st.warning)(text)


def metric_order(rows: pd.DataFrame) -> list[str]:
    """Judged metrics present, those with the most failing rows first."""
    bad = rows.assign(f=rows["judgement"].isin(["grows", "shrinks", "diverged"])).groupby("metric")["f"].sum()
    return sorted(bad.index, key=lambda m: (-int(bad[m]), JUDGED.index(m) if m in JUDGED else 99))


def reset_view(page: str) -> None:
    """on_change of the ladder: forget the metric and steps picked for the previous ladder (and their URL
    values), so the new ladder opens on its own most-failing metric."""
    for param in ("metric", "steps"):
        st.session_state.pop(f"{page}.{param}", None)
        if param in st.query_params:
            del st.query_params[param]
