"""Seeds and configs in every view, as researchers know them from W&B and TensorBoard: a sidebar toggle that draws
runs differing only by seed as one curve (mean ± 1 standard error), a "Colour by" choice of a config field
(width, depth, param, backward, α, …), and, for many runs, a filter of the run picker by field values.

A page calls `controls(PAGE, chosen)` after its run picker (the widgets go to the sidebar, their values to the
URL: ?seeds=True, ?colour=width) and passes every tidy frame it draws through `apply(frame)`; `show_chart`
names and colours the traces with `restyle()`. The picker's filter by field values is dashboard.selection's
(`filter_runs`, called by the picker itself). The reductions are dynamics.figures.groups.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import streamlit as st

from dashboard.selection import GROUPING as _CURRENT, style, varying
from dashboard.state import seed_widget, set_url
from dynamics.figures import RUN, TAU
from dynamics.figures.groups import colours_by, merge_seeds, seed_groups, seed_stem
from dynamics.runs.store import LAYER, STEP

NONE = "(run)"


def controls(page: str, chosen: Sequence) -> None:
    """The sidebar's "Average seeds" toggle (when some chosen runs differ only by seed) and "Colour by" choice
    (when the chosen runs differ in a field); stores this page load's grouping for apply() and restyle()."""
    groups = seed_groups({r.label: r.config for r in chosen}, {r.label: r.kind for r in chosen})
    merged: dict[str, str] = {}
    if groups:
        key = f"{page}.seeds"
        seed_widget(key, "seeds", [False, True], False)
        on = st.sidebar.toggle("Average seeds", key=key, help="runs that differ only by seed as one curve: their "
                               "mean, with a band of ±1 standard error of the mean")
        set_url(seeds=on or None)
        merged = groups if on else {}
    fields = [f for f in varying(chosen) if f != "seed" or not merged]
    colour_field = NONE
    if fields:
        key = f"{page}.colour"
        options = [NONE, *fields]
        seed_widget(key, "colour", options, NONE)
        colour_field = st.sidebar.selectbox("Colour by", options, key=key,
                                            help="one colour per value of a config field (numbers light to dark)")
        set_url(colour=None if colour_field == NONE else colour_field)
    names, colours = style()
    by_label = {r.label: r for r in chosen}
    if colour_field != NONE:
        colours = colours_by({lab: r.config.get(colour_field) for lab, r in by_label.items()})
    out_names, out_colours = {}, {}
    for lab, group in merged.items():  # a group is named and coloured after its first member
        out_colours.setdefault(group, colours.get(lab))
        out_names.setdefault(group, f"{seed_stem(names.get(lab, lab))} · "
                                    f"{sum(g == group for g in merged.values())} seeds")
    st.session_state[_CURRENT] = {"groups": merged, "names": out_names,
                                  "colours": {**(colours if colour_field != NONE else {}), **out_colours}}


def apply(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with each seed group's runs replaced by their mean curve (when "Average seeds" is on)."""
    groups = st.session_state.get(_CURRENT, {}).get("groups") or {}
    if not groups or frame is None or frame.empty or RUN not in frame:
        return frame
    keys = [c for c in (STEP, LAYER, TAU) if c in frame.columns]
    return merge_seeds(frame, groups, keys)


def restyle() -> tuple[dict[str, str], dict[str, str]]:
    """(names, colours) this page load adds to the run style: seed groups' names, and colours by field."""
    cur = st.session_state.get(_CURRENT, {})
    return cur.get("names", {}), {k: v for k, v in cur.get("colours", {}).items() if v}
