"""One run selection per browser session, followed by every page, with short unique names and stable colours.

The sidebar picker of each page (`pick_runs`) starts, when the page is opened, from the URL's ?runs= (a
link or a reload), else from the session's selection (the runs picked on the page before), else from the
page's default: the newest of the user's own runs (their folder, uploads, runs trained from the page) when
there are any, else bundled runs. A run named in the URL that is not found is reported, not silently
replaced. The user's runs lead: runs this session uploaded or trained *replace* the selection when they first
appear, and so do the newest runs of a runs folder the user has just typed into the sidebar; bundled runs can
be added back in the picker. Every change is written back to the session's selection, keeping picks this page
cannot show (e.g. limit runs on the Coupling page). With FILTER_FROM or more candidates the picker gets a filter
by config field values (`filter_runs`); a chosen run that is still training is followed (dashboard.live).

Names and colours are computed over all runs found (`remember`, called by dashboard.runs.load_runs), so a
run has the same short name and colour on every page whatever else is picked: `short_names` drops the name
parts every run of its family shares and a trailing hash when the rest is unique; limit runs are drawn in one
dark colour. `dashboard.widgets.show_chart` applies both to each figure (dynamics.figures.restyle_runs); the
hover text keeps the full name.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import streamlit as st

from dashboard.live import follow
from dashboard.settings import OWN_RUNS, UPLOADED_ROOTS, hosted
from dashboard.state import seed_widget, set_url
from dynamics.figures import LIMIT_COLOUR, PALETTE

SELECTION = "dashboard.selection"      # labels picked in this session, shared by every page
_FOUND = "dashboard.found_runs"        # labels of every run found on the last page load
_STYLE = "dashboard.run_style"         # (short names, colours) by label
_SEEN = "dashboard.seen_run_paths"     # run paths this session has seen (to select new uploads/trained runs once)
_TRAIN_JOBS = "dashboard.train_jobs"   # dashboard.train_form's list of this session's trained run dirs
_FOLDERS = "dashboard.user_folders"    # the user-run folders seen last (a newly typed folder's runs lead once)
_FOLDER_NEW = "dashboard.user_folder_new"  # set by remember() on the page load that first sees a new folder
BUNDLED = ("bundled", "claims")        # run sources that are ours, not the user's
_HASH = re.compile(r"^[0-9a-f]{6,}$")


def short_names(labels: Sequence[str]) -> dict[str, str]:
    """label -> a short unique name: within each family (runs whose names start with the same `_` part),
    the parts all members share are dropped, then hex hashes and the family's first part, each only
    when the name stays unique without it. A name that would collide or be empty stays in full."""
    parts = {lab: lab.split("_") for lab in labels}
    families: dict[str, list[str]] = {}
    for lab in labels:
        families.setdefault(parts[lab][0], []).append(lab)
    out = {}
    for head, members in families.items():
        shared = set.intersection(*(set(parts[m][1:]) for m in members)) if len(members) > 1 else set()
        for m in members:
            out[m] = [head, *[p for p in parts[m][1:] if p not in shared]]
    bare = {m: [t for t in toks if not _HASH.match(t)] for m, toks in out.items()}
    for m, toks in bare.items():
        if len(toks) >= 1 and sum(o == toks for o in bare.values()) == 1:
            out[m] = toks
    names = {m: "_".join(t) for m, t in out.items()}
    for m, toks in out.items():  # the family's own name goes too when what is left is still unique
        if len(toks) > 1 and len(families[toks[0]]) > 1:
            rest = "_".join(toks[1:])
            if rest not in names.values() and sum("_".join(o[1:]) == rest for o in out.values()) == 1:
                names[m] = rest
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    return {m: n if n and counts[n] == 1 else m for m, n in names.items()}


def run_colours(runs: Sequence) -> dict[str, str]:
    """label -> colour: finite runs cycle through the palette in the order found; limit runs are dark grey."""
    out, k = {}, 0
    for r in runs:
        if getattr(r, "kind", "finite") == "limit":
            out[r.label] = LIMIT_COLOUR
        else:
            out[r.label], k = PALETTE[k % len(PALETTE)], k + 1
    return out


def remember(runs: Sequence) -> None:
    """Keep every found run's label, short name and colour for this page load (dashboard.runs.load_runs)."""
    labels = [r.label for r in runs]
    st.session_state[_FOUND] = labels
    st.session_state[_STYLE] = (short_names(labels), run_colours(runs))
    st.session_state.pop(GROUPING, None)  # a page that draws no grouping controls shows none
    _note_folders(runs)


GROUPING = "dashboard.grouping"  # this page load's seed groups and colours (dashboard.grouping.controls)
FIELDS = ("width", "depth", "param", "backward", "inner_lr_exponent", "act", "lr", "block", "loss", "task", "seed",
          "batch", "steps")  # config fields to colour, group and filter by
FILTER_FROM = 8                  # the picker gets a field filter from this many candidate runs on


def _cfg(run) -> dict:
    cfg = getattr(run, "config", None)
    return cfg if isinstance(cfg, dict) else {}


def varying(runs: Sequence, fields: Sequence[str] = FIELDS) -> list[str]:
    """The fields of `fields` whose values differ among `runs`."""
    return [f for f in fields if len({json.dumps(_cfg(r).get(f), sort_keys=True, default=str) for r in runs}) > 1]


def _value_text(v) -> str:
    return "—" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def filter_runs(page: str, runs: Sequence) -> list:
    """For FILTER_FROM or more candidate runs, a sidebar expander with one multiselect per varying field
    (?f_<field>=value); returns the runs whose values are picked in every field (all, when nothing is picked)."""
    if len(runs) < FILTER_FROM:
        return list(runs)
    fields = varying(runs)
    if not fields:
        return list(runs)
    kept = list(runs)
    with st.sidebar.expander("Filter runs by config", expanded=any(st.query_params.get_all(f"f_{f}") for f in fields)):
        for f in fields:
            options = sorted({_value_text(_cfg(r).get(f)) for r in runs},
                             key=lambda t: (0, float(t)) if _is_number(t) else (1, t))
            key = f"{page}.f_{f}"
            seed_widget(key, f"f_{f}", options, [], multi=True)
            picked = st.multiselect(f, options, key=key, placeholder="any")
            set_url(**{f"f_{f}": picked})
            if picked:
                kept = [r for r in kept if _value_text(_cfg(r).get(f)) in picked]
    return kept


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def style() -> tuple[dict[str, str], dict[str, str]]:
    """(short names, colours) by label of the runs found on this page load ({} before any)."""
    return st.session_state.get(_STYLE, ({}, {}))


def _own(run) -> bool:
    """Uploaded or trained in this session."""
    roots = [str(Path(p).resolve()) for p in st.session_state.get(UPLOADED_ROOTS, []) or []]
    trained = {str(Path(p).resolve()) for key in (_TRAIN_JOBS, OWN_RUNS) for p in st.session_state.get(key, []) or []}
    path = str(Path(run.path).resolve())
    return path in trained or any(path.startswith(r + "/") for r in roots)


def arrivals(runs: Sequence) -> list[str]:
    """Labels of this session's uploaded or trained runs seen for the first time (each returned once)."""
    seen = st.session_state.setdefault(_SEEN, set())
    new = [r.label for r in runs if str(r.path) not in seen and _own(r)]
    seen.update(str(r.path) for r in runs)
    return new


def newest_own(runs: Sequence, count: int) -> list[str]:
    """Labels of the user's own runs (not bundled), newest first (run.json `created`), at most `count`."""
    own = [r for r in runs if getattr(r, "source", "user") not in BUNDLED]
    own.sort(key=lambda r: str(r.meta.get("created") or ""), reverse=True)
    return [r.label for r in own[:count]]


BOOKKEEPING = ("device", "record_every", "test_every", "probes", "record_coupling", "coupling_window", "dtype")


def one_field_apart(runs: Sequence, count: int) -> list[str]:
    """A default selection that reads at a glance: the finite run with the most others that differ from it in
    exactly one config field (bookkeeping aside), then those others, at most `count` labels; [] when no two runs
    differ in one field."""
    def fields(r) -> dict:
        return {k: json.dumps(v, sort_keys=True, default=str) for k, v in _cfg(r).items() if k not in BOOKKEEPING}

    finite = [r for r in runs if getattr(r, "kind", "finite") == "finite" and _cfg(r)]
    best: list = []
    for r in finite:
        a = fields(r)
        near = [o for o in finite if o is not r and sum(a.get(k) != v for k, v in fields(o).items()) +
                sum(k not in fields(o) for k in a) == 1]
        if len(near) + 1 > len(best):
            best = [r, *near]
    return [r.label for r in best[:count]] if len(best) > 1 else []


def _note_folders(runs: Sequence) -> None:
    """Flag (for this page load's picker) that the folders holding the user's runs changed after the session's
    first page load: the user typed a folder, or a page pointed the box at one, and its runs should lead."""
    folders = sorted({str(Path(r.path).parent) for r in runs if getattr(r, "source", "") == "user"})
    before = st.session_state.get(_FOLDERS)
    st.session_state[_FOLDERS] = folders
    st.session_state[_FOLDER_NEW] = before is not None and folders != before and bool(folders)


def pick_runs(page: str, runs: Sequence, default_count: int = 3, default: list[str] | None = None) -> list:
    """Sidebar multiselect of `runs` (this page's candidates), mirrored in ?runs= and in the session's
    selection (see the module docstring for the order). Default: `default` (labels) if given, else the newest
    `default_count` of the user's own runs, else (for fewer than all) bundled runs one config field apart
    (one_field_apart), else the first
    `default_count` runs, finite runs before limit runs."""
    runs = filter_runs(page, runs)
    key, labels = f"{page}.runs", [r.label for r in runs]
    if default is None:
        few = default_count < len(runs)  # a page that wants all its runs (Scaling, Coord check) gets them all
        default = newest_own(runs, default_count) or (few and one_field_apart(
            [r for r in runs if getattr(r, "source", "") == "bundled"], default_count)) or [
            r.label for r in sorted(runs, key=lambda r: r.kind == "limit")][:default_count]
    shared = st.session_state.get(SELECTION, [])
    if key not in st.session_state:  # the page was just opened: a link's runs, else the session's, else default
        from_url = st.query_params.get_all("runs")
        gone = [u for u in from_url if u not in st.session_state.get(_FOUND, labels)]
        if gone:
            st.warning(f"Not found: {', '.join(f'`{g}`' for g in gone)} (named in the link). " + (
                "Uploaded runs last only for the browser session that uploaded them: upload them again on the "
                "Upload page." if hosted() else "Type the folder that holds them into the sidebar box *Your runs "
                "folder*, or upload them again on the Upload page."))
        picked = [u for u in from_url if u in labels] or [s for s in shared if s in labels]
        st.session_state[key] = list(dict.fromkeys(picked or default))
    seed_widget(key, "runs", labels, default, multi=True)
    new = [a for a in arrivals(runs) if a in labels]
    if st.session_state.pop(_FOLDER_NEW, False) and not new:
        new = newest_own([r for r in runs if r.source == "user"], default_count)
    if new:  # the user's runs lead: they replace the selection (bundled runs can be added back)
        st.session_state[key] = list(dict.fromkeys(new))
        shared = []
    names = style()[0]
    chosen = st.sidebar.multiselect("Runs", labels, key=key, format_func=lambda lab: names.get(lab, lab),
                                    help="Picked runs follow you to every page. Names drop the parts all runs of "
                                         "a family share; hover a curve for the full name.")
    set_url(runs=chosen)
    found = set(st.session_state.get(_FOUND, labels))
    st.session_state[SELECTION] = chosen + [s for s in shared if s not in labels and s in found]
    by_label = {r.label: r for r in runs}
    picked = [by_label[c] for c in chosen]
    follow(page, picked)  # a chosen run still training redraws the page when it flushes (dashboard.live)
    return picked
