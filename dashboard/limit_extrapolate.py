"""Extrapolate in width from the page: for a finite run of ours without a matching limit run, the Limit page offers
a button that makes one by `python -m dynamics limit --like RUN --method extrapolate` (dynamics.limit.extrapolate:
train the setting at a ladder of widths × seeds, reusing runs that exist, and fit a + b/n per metric, layer and
step), in a child process with one thread, and shows how many ladder runs are done. It works where the particle
solver cannot (minibatch SGD over many inputs, cross-entropy, image tasks, sp).

Before the button the page states the cost: the ladder's runs still to train and an estimate of their time,
scaled from the run's own wall time as width² (training is matrix products of n × n weights; at small widths
fixed costs dominate, so the estimate is an upper bound there and rough everywhere). The result goes to the
session's folder (dashboard.uploads.session_root: a local dashboard's uploads folder, a hosted session's own),
never beside bundled data.

Hosted caps (dashboard.hosting), as for the train form and the particle solve: off when training is off; the
ladder's widths are the largest four powers of two up to the train cap's width (so the fit extrapolates from
smaller nets than locally: said on the page), the run's depth and steps within the cap, an estimate of at most
HOSTED_SECONDS, one job against the server-wide job cap. Every refusal is one line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Sequence

import streamlit as st

from dashboard import hosting
from dashboard.runs import Run
from dashboard.settings import REPO
from dashboard.uploads import register, session_root
from dashboard.widgets import job_outcome
from dynamics.config import ConfigError, RunConfig
from dynamics.limit.extrapolate import DEFAULT_SEEDS, DEFAULT_WIDTHS, fit_name, ladder_folder

HOSTED_SECONDS = 300                      # the most a shared instance spends on one ladder
_JOBS: dict[str, dict] = {}               # finite run path -> {"total", "folder", "done", "run_dir", "error", ...}
_SESSION = "dashboard.extrapolate_jobs"   # this session's finite run paths, newest last

_CHILD = """
import sys, json
import torch
torch.set_num_threads(1)
from pathlib import Path
from dynamics.limit.extrapolate import extrapolate_like
try:
    run_dir = extrapolate_like(Path(sys.argv[1]), Path(sys.argv[2]), widths=json.loads(sys.argv[3]),
                               seeds=int(sys.argv[4]), workers=1)
    print("done", run_dir, flush=True)
except Exception as e:
    print("error", f"{type(e).__name__}: {e}".replace("\\n", " "), flush=True)
"""


def ladder(cfg: RunConfig) -> tuple[tuple[int, ...], int]:
    """(widths, seeds) of the page's ladder: --method extrapolate's defaults; hosted, the four largest powers of
    two up to the train cap's width."""
    if hosting.hosted() and (cap := hosting.train_cap()) is not None:
        top = 1 << (int(cap[0]).bit_length() - 1)
        return tuple(top >> k for k in (3, 2, 1, 0)), DEFAULT_SEEDS
    return tuple(DEFAULT_WIDTHS), DEFAULT_SEEDS


def _tasks(run: Run, cfg: RunConfig, widths: Sequence[int], seeds: int, out: Path) -> list[tuple[Path, dict]]:
    """(ladder run dir, config) of every ladder point, as extrapolate_like names them."""
    from dynamics.sweep.plan import plan_sweep
    folder = ladder_folder(out, run.meta["run_id"])
    sweep = plan_sweep(cfg, {"width": list(widths), "seed": [cfg.seed + k for k in range(seeds)]}, str(folder),
                       check_data=False)
    return [(folder / t.name, t.config) for t in sweep.tasks]


def _finished(path: Path) -> bool:
    try:
        return json.loads((path / "run.json").read_text()).get("status") in ("complete", "diverged")
    except (OSError, ValueError):
        return False


def to_train(run: Run, cfg: RunConfig, widths: Sequence[int], seeds: int, out: Path) -> list[dict]:
    """Configs of the ladder runs still to train (the run itself and finished ladder runs are reused)."""
    return [c for p, c in _tasks(run, cfg, widths, seeds, out)
            if not _finished(p) and not (c == run.config and run.meta.get("status") == "complete")]


def ladder_seconds(run: Run, configs: Sequence[dict]) -> float | None:
    """Estimated seconds to train `configs`, from the run's own wall time at its width scaled as width²; None
    when the run does not say how long it took."""
    wall, width = run.meta.get("wall_seconds"), run.config.get("width")
    if not wall or not width:
        return None
    return float(sum(float(wall) * (c["width"] / width) ** 2 for c in configs))


def refusal(run: Run, cfg: RunConfig, seconds: float | None) -> str | None:
    """Why this ladder may not start from the page, in one line; None when it may."""
    if not hosting.hosted():
        return None
    if why := hosting.cap_refusal(cfg, "extrapolating",
                                  "run `python -m dynamics limit --like RUN --method extrapolate`"):
        return why
    if seconds is None or seconds > HOSTED_SECONDS:
        return (f"the ladder would take {'an unknown time' if seconds is None else f'about {seconds:.0f} s'}, over "
                f"this shared instance's {HOSTED_SECONDS} s; run it on your own machine")
    if hosting.busy():
        return "the server is busy with another run; try again when it ends"
    return None


def _work(like: str, out: Path, widths: Sequence[int], seeds: int, job: dict) -> None:
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, like, str(out), json.dumps(list(widths)), str(seeds)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "done":
                job["run_dir"] = rest
            elif kind == "error":
                job["error"] = rest
        err = proc.stderr.read()
        if proc.wait() and not job.get("error"):
            job["error"] = (err.strip().splitlines() or [f"exited with code {proc.returncode}"])[-1]
    except Exception as e:  # noqa: BLE001 (shown on the page as one line)
        job["error"] = f"{type(e).__name__}: {e}"
    finally:
        job["done"] = True


def start(run: Run, cfg: RunConfig, widths: Sequence[int], seeds: int, out: Path) -> None:
    """Start the ladder and the fit in the background (a child process watched by a thread)."""
    tasks = _tasks(run, cfg, widths, seeds, out)

    def make() -> dict:
        job = _JOBS[run.path] = {"label": run.label, "done": False, "paths": [str(p) for p, _ in tasks],
                                 "widths": list(widths), "seeds": seeds}
        return job
    job = hosting.claim_job(make)
    threading.Thread(target=_work, args=(run.path, out, widths, seeds, job), daemon=True,
                     name=f"extrapolate {Path(run.path).name}").start()
    if hosting.hosted():
        register(out)
    jobs = st.session_state.setdefault(_SESSION, [])
    if run.path not in jobs:
        jobs.append(run.path)


def _progress() -> None:
    for path in st.session_state.get(_SESSION, []):
        job = _JOBS.get(path)
        if job is None:
            continue
        if not job["done"]:
            done = sum(_finished(Path(p)) for p in job["paths"])
            st.progress(done / len(job["paths"]), text=f"Extrapolating `{job['label']}` in width: {done} of "
                        f"{len(job['paths'])} ladder runs done (n = {', '.join(map(str, job['widths']))} × "
                        f"{job['seeds']} seeds), then the fit")
        else:
            job_outcome(job, f"The extrapolation of `{job['label']}` failed", f"The width-extrapolated limit of "
                        f"`{job['label']}` is `{Path(job.get('run_dir', '')).name}`; it is in the limit picker.")


def extrapolate_section(page: str, run: Run | None, has_limit: bool) -> None:
    """The Limit page's offer for `run` (the first chosen finite run): this session's ladders in progress, then,
    when `run` has no matching limit, the ladder, its cost and the button."""
    running = any(not _JOBS[p]["done"] for p in st.session_state.get(_SESSION, []) if p in _JOBS)
    (st.fragment(_progress, run_every=2.0) if running else _progress)()
    if run is None or run.kind != "finite" or has_limit:
        return
    job = _JOBS.get(run.path)
    if job is not None and not job["done"]:
        return
    try:
        cfg = RunConfig.from_dict(run.config)
    except (ConfigError, TypeError) as e:
        st.info(f"`{run.label}` has no setting the ladder can rebuild ({e}).")
        return
    widths, seeds = ladder(cfg)
    try:
        out = session_root()
        todo = to_train(run, cfg, widths, seeds, out)
    except (ConfigError, OSError, ValueError, hosting.ReadOnlyError) as e:
        st.info(f"Cannot extrapolate `{run.label}` here: {e}")
        return
    seconds = ladder_seconds(run, todo)
    with st.expander(f"Extrapolate the limit of `{run.label}` in width", expanded=False):
        cost = "its time unknown (the run does not record its wall time)" if seconds is None else (
            f"about {seconds / 60:.1f} min on this machine, scaled from this run's own "
            f"{run.meta['wall_seconds']:.0f} s at n = {run.config['width']} as n² (an upper bound at small widths)")
        st.caption(f"Trains this setting at n = {', '.join(map(str, widths))} × {seeds} seeds "
                   f"({len(todo)} of {len(widths) * seeds} runs still to train; {cost}) and fits "
                   f"{fit_name(len(widths))} per metric, layer and step; the stderr band is the seed noise through the fit. Works for any of "
                   "our runs: minibatch SGD, cross-entropy, image tasks, sp.")
        if hosting.hosted():
            st.caption(f"On this shared instance the ladder stops at the train cap's width {widths[-1]}: the fit "
                       "extrapolates from smaller nets than `--method extrapolate` does on your own machine.")
        if why := refusal(run, cfg, seconds):
            st.warning(f"Cannot extrapolate here: {why}.")
            return
        if st.button("Extrapolate", key=f"{page}.extrapolate"):
            try:
                start(run, cfg, widths, seeds, out)
            except (ConfigError, hosting.ReadOnlyError, OSError) as e:
                st.error(f"Cannot extrapolate: {e}")
            else:
                st.rerun()
