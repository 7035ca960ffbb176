"""Live runs: while a chosen run is still being written (ours, or a dynamics.record run: status `running` with a live
heartbeat, dynamics.runs.store.liveness), the page redraws by itself when the run flushes, without a reload.

A small fragment (`follow`) runs every LIVE_SECONDS (HOSTED_LIVE_SECONDS on a shared instance) and only stats the
chosen live runs' files (run.json, metrics.parquet: a few syscalls, no read); when one changed since its last
look, it reruns the whole app, and the cached loaders (keyed on file mtimes) read the new rows. So the cost to the
server is one stat per live run per period, plus one page rerun per flush of a live run (a trainer flushes every
100 records or 30 s). Nothing is scheduled when no chosen run is live.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import streamlit as st

from dashboard import hosting
from dynamics.runs.store import METRICS, RUN_JSON, liveness

LIVE_SECONDS = 5.0
HOSTED_LIVE_SECONDS = 15.0
_SEEN = "dashboard.live_seen"   # page -> the file signature of its live runs at the last look


def live_runs(runs: Sequence) -> list:
    """The runs among `runs` that are still being written (finite or imported, status running, heartbeat alive)."""
    return [r for r in runs if liveness(r.meta) == "running"]


def signature(paths: Sequence[str]) -> tuple:
    """(path, mtime of run.json, mtime and size of metrics.parquet) of each run: what a flush changes."""
    out = []
    for p in paths:
        row = [p]
        for name in (RUN_JSON, METRICS):
            try:
                st_ = (Path(p) / name).stat()
                row += [st_.st_mtime_ns, st_.st_size]
            except OSError:
                row += [0, 0]
        out.append(tuple(row))
    return tuple(out)


def changed(page: str, paths: Sequence[str]) -> bool:
    """Whether the live runs' files changed since this page last looked (the first look only records them)."""
    seen = st.session_state.setdefault(_SEEN, {})
    now = signature(paths)
    before, seen[page] = seen.get(page), now
    return before is not None and before != now


def follow(page: str, chosen: Sequence) -> None:
    """Redraw the page when a chosen live run flushes (module docstring); a caption says which runs are followed."""
    live = live_runs(chosen)
    if not live:
        st.session_state.get(_SEEN, {}).pop(page, None)
        return
    paths = [r.path for r in live]
    every = HOSTED_LIVE_SECONDS if hosting.hosted() else LIVE_SECONDS
    changed(page, paths)  # this run's look: the fragment compares against it

    @st.fragment(run_every=every)
    def _watch() -> None:
        if changed(page, paths):
            st.rerun(scope="app")
    st.sidebar.caption(f"Live: {', '.join(f'`{r.label}`' for r in live)} still training; the page redraws when "
                       f"{'it flushes' if len(live) == 1 else 'one flushes'} (checked every {every:g} s).")
    with st.sidebar:
        _watch()
