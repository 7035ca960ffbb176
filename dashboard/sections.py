"""Page sections used by more than one page: the quantile fan of single-neuron distributions (against a
limit run), how a limit run is found for a finite run, and the message that says which command makes a
missing limit run. Each reads its widgets (URL-backed), calls the cached loaders and one figure builder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import streamlit as st

from dashboard import hosting, loaders as D
from dashboard.runs import Run
from dashboard.widgets import choose, show_chart
from dynamics.figures import quantile_fan_figure
from dynamics.runs.store import NEURONS, RunFormatError

NONE = "(none)"
# where a limit run names its twin: run.json's "limit" section (dynamics.limit.run) or the top level
LIKE_KEYS = ("like", "like_path", "like_run", "source_run")


def limit_command(run: Run | None) -> str:
    """The command that makes the limit run of `run` (the limit solver's CLI, `python -m dynamics limit`)."""
    if run is None:
        like = "data/<run>"
    else:  # a shared instance shows no server paths: the run's folder name under the user's own runs/
        like = f"runs/{Path(run.path).name}" if hosting.hosted() else _shown_path(run.path)
    return f"python -m dynamics limit --like {like} --out runs/"


def extrapolate_command(run: Run | None) -> str:
    """The command that makes a limit of any run by extrapolation in width (`--method extrapolate`)."""
    return limit_command(run) + " --method extrapolate"


def extrapolate_ladder() -> str:
    """What the default `--method extrapolate` trains and fits, in words (from its own defaults)."""
    from dynamics.limit.extrapolate import DEFAULT_SEEDS, DEFAULT_WIDTHS, fit_name
    w = DEFAULT_WIDTHS
    return (f"trains the setting at widths {min(w)}–{max(w)} × {DEFAULT_SEEDS} seeds "
            f"({len(w) * DEFAULT_SEEDS} runs, less those that exist) and fits {fit_name(len(w))}")


def method_caption(lim: Run) -> str:
    """What the dashed line is, by the method that made the limit run (run.json's limit.method; runs made
    before the method was recorded are particle runs)."""
    sec = lim.meta.get("limit") if isinstance(lim.meta.get("limit"), dict) else {}
    if sec.get("method") == "extrapolate":
        widths = ", ".join(map(str, sec.get("widths", [])))
        return (f"Dashed: `{lim.label}`, the width limit extrapolated from finite runs at n = {widths} × "
                f"{sec.get('seeds', '?')} seeds (fit {sec.get('fit', 'a + b/n')} per metric, layer and step), with "
                "its ±1 stderr band (seed noise through the fit; no allowance for the terms the fit leaves out); "
                "solid: finite runs.")
    parts = [f"{sec['particles']:,} particles" if "particles" in sec else "",
             f"grid K = {sec['grid']}" if "grid" in sec else ""]
    how = ", ".join(p for p in parts if p)
    return (f"Dashed: `{lim.label}`, the SDE / NFD prediction for infinite width and depth from the particle "
            f"solver{f' ({how})' if how else ''}, with its Monte-Carlo ±1 stderr band; solid: finite runs.")


def _shown_path(path: str) -> str:
    """A run path as the user would type it: relative to where streamlit was started when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def own_model(run: Run) -> str:
    """How to name a run of the user's own model (an import or dynamics.record) in a message."""
    src = run.meta.get("source") if isinstance(run.meta.get("source"), dict) else {}
    how = "recorded with dynamics.record" if src.get("format") == "record" else \
        f"imported from {src.get('file') or 'your logs'}"
    return f"`{run.label}` ({how})"


def is_exact(run: Run) -> bool:
    """Whether `run`'s coupling is measured exactly (dynamics.metrics.measured_exactly)."""
    from dynamics.metrics import measured_exactly
    section = run.meta.get("coupling") if isinstance(run.meta.get("coupling"), dict) else {}
    return run.kind == "finite" and bool(section) and measured_exactly(run.config, section.get("window"))


def exact_pair(runs: Sequence[Run]) -> list[str]:
    """The Coupling page's opening runs: the first run (by label) whose coupling is measured exactly, reused
    backward, and its decoupled twin (the same config otherwise) when there is one; [] when none is exact."""
    exact = sorted((r for r in runs if is_exact(r)), key=lambda r: r.label)
    for r in exact:
        if r.config.get("backward") != "reused":
            continue
        twin = [t for t in exact if t.config == {**r.config, "backward": "decoupled"}]
        return [r.label, *[t.label for t in twin[:1]]]
    return [r.label for r in exact[:1]]


def strongest_step(runs: Sequence[Run], metric: str, chance: str | None, steps: Sequence[int]) -> int:
    """The Coupling page's opening step: where `metric` stands furthest above its chance level (mean over blocks
    of measured/chance, first of `runs` that has both; at most 64 of `steps`, evenly spread, are read), so the
    first view shows the coupling where it is; without a chance level, the last step."""
    if not chance or not steps:
        return steps[-1]
    picks = list(steps) if len(steps) <= 64 else [steps[round(k * (len(steps) - 1) / 63)] for k in range(64)]
    for r in runs:
        best, at = 0.0, None
        for step in picks:
            try:
                m = D.profile(r.path, D.mtime(r.path), metric, D.depth_of(r), step)
                c = D.profile(r.path, D.mtime(r.path), chance, D.depth_of(r), step)
            except RunFormatError:
                break
            if len(m) and len(c) and float(c["value"].mean()) > 0:
                ratio = float(m["value"].mean()) / float(c["value"].mean())
                if ratio > best:
                    best, at = ratio, step
        if at is not None:
            return at
    return steps[-1]


def limit_missing(run: Run | None) -> None:
    if run is not None and run.kind == "imported":
        st.info(f"No limit for {own_model(run)}: both limits rebuild a run of our ResNet family from its config "
                "(the particle solver solves it; `--method extrapolate` trains it at several widths), and your "
                "model's config is yours. For your own model, record it at several widths with dynamics.record and "
                "compare the widths on the Coord check and Scaling pages.")
        return
    st.info("No limit runs found. A limit run holds the infinite-width, infinite-depth prediction (the SDE / NFD "
            "limit of docs/theory.md §3, §6) for a finite run's setting, with Monte-Carlo error bars. Make one with the "
            "command below (the limit solver's CLI; if your version of dynamics lacks `limit`, it is not "
            "released yet), then type `runs/` into the sidebar box *Your runs folder*:")
    st.code(limit_command(run), language="bash")
    st.caption("Any run, also one the particle solver refuses (sp, minibatch SGD over many inputs, image tasks), "
               f"gets a limit by extrapolation in width: it {extrapolate_ladder()}:")
    st.code(extrapolate_command(run), language="bash")


def limits(runs: Sequence[Run]) -> list[Run]:
    return [r for r in runs if r.kind == "limit"]


def matched_limit(run: Run, candidates: Sequence[Run]) -> Run | None:
    """The limit run made `--like` this run (run.json names it), else one with the same config apart from
    width, depth, seed and bookkeeping, else None."""
    names = {Path(str(n)).name for n in (run.label, run.meta.get("run_id"), run.path) if n}
    for c in candidates:
        sections = (c.meta, c.meta.get("limit") if isinstance(c.meta.get("limit"), dict) else {})
        if any(Path(str(s[k])).name in names for s in sections for k in LIKE_KEYS if s.get(k)):
            return c
    same = [c for c in candidates if not D.same_setting(run, c)]
    return same[0] if same else None


def quantile_fan(page: str, run: Run, all_runs: Sequence[Run], step: int, fmt: str, against: Run | None = None) -> None:
    """Quantiles of h_ℓ over one neuron at `step` (the nearest recorded), one probe, against a limit run
    (`against`, else one picked here)."""
    try:
        n_steps, probes = D.neuron_index(run.path, D.mtime(run.path, NEURONS))
    except RunFormatError as e:
        st.info(f"`{run.label}` has no single-neuron quantiles ({e}). Runs made by `python -m dynamics train` "
                "record them; imported runs may not.")
        return
    if not n_steps:
        st.info(f"`{run.label}` recorded no single-neuron quantiles yet.")
        return
    at = min(n_steps, key=lambda s: abs(s - step))
    cands = limits(all_runs)
    default = matched_limit(run, cands)
    c1, c2 = st.columns(2)
    probe = choose(page, "probe", "Probe input", [-1, *probes], probes[0], widget=c1.selectbox,
                   url_default=False, format_func=lambda p: "mean over probes" if p < 0 else f"probe {p}")
    lim = against.label if against is not None else choose(
        page, "limit", "Against the limit run", [NONE, *[c.label for c in cands]], default.label if default else NONE,
        widget=c2.selectbox, url_default=False)
    df = D.neurons(run.path, D.mtime(run.path, NEURONS), D.depth_of(run), at, probe)
    ref, note = None, ""
    if lim != NONE:
        lr = next(c for c in cands if c.label == lim)
        try:
            ref = D.neurons(lr.path, D.mtime(lr.path, NEURONS), D.depth_of(lr), at, probe)
            note = "" if len(ref) else f" ({lim} has no quantiles at step {at})"
        except RunFormatError as e:
            note = f" ({lim}: {e})"
    elif not cands:
        st.caption("No limit run to compare with: make one with `" + limit_command(run) + "`.")
    title = f"{run.label}: quantiles of h_ℓ at step {at}" + (f" vs {lim}" if ref is not None and len(ref) else "")
    if at != step:
        st.caption(f"Neuron quantiles are recorded at fewer steps; showing step {at}, the nearest to {step}.")
    if note:
        st.caption(note.strip(" ()"))
    show_chart(quantile_fan_figure(df, ref, title=title, limit_name=lim), df, f"{run.label}_quantiles_step{at}",
               key=f"{page}.fan", fmt=fmt)


def train_command(run: Run) -> str:
    """`python -m dynamics train` with the main settings of `run`, to make it again (e.g. with newer probes)."""
    c = run.config
    flags = " ".join(f"--{k.replace('_', '-')} {c[k]}" for k in ("width", "depth", "act", "param", "backward", "lr",
                                                                 "steps", "seed") if k in c)
    return f"python -m dynamics train {flags} --out runs/"


def other_differences(runs: Sequence[Run], allowed: Sequence[str]) -> list[str]:
    """Config fields, other than `allowed`, whose values differ between `runs`."""
    from dashboard.runs import config_diff
    skip = set(allowed) | {"device", "dtype", "record_every", "test_every"}
    return [c for c in config_diff(list(runs)).columns if c not in skip] if len(runs) > 1 else []


def log_gaps(data, log_y: bool, excess: bool) -> None:
    """On a log axis, say which runs' values cannot be drawn (≤ 0) instead of dropping them silently. `data`:
    run, value[, value_chance]; with `excess` the drawn value is value − value_chance."""
    if not log_y or data.empty:
        return
    from dashboard.selection import style
    names = style()[0]
    y = data["value"] - data["value_chance"] if excess and "value_chance" in data else data["value"]
    notes = []
    for run, bad in (y <= 0).groupby(data["run"], sort=False):
        if bad.any():
            zeros = bool((y[bad.index][bad] == 0).all())
            notes.append(f"`{names.get(run, run)}`: {int(bad.sum())} of {len(bad)} values "
                         f"{'are exactly 0' if zeros else 'are 0 or below'}")
    if notes:
        st.caption("Not drawn on the log axis: " + "; ".join(notes) + ". Exact zeros mean no coupling at all "
                   "(a decoupled run never uses W's transpose); an excess below 0 means under the chance level. "
                   "Switch the log axis off to see them.")
