"""Solve from the page: for a finite run without a matching limit run, the Limit page offers a button that
solves one in the background (dynamics.limit.run.limit_like in a child process with one thread, watched by a
thread that reads its progress lines) and writes an ordinary limit run beside the data, with a progress bar;
the page picks it up when it ends.

Particles are chosen from a time budget the user picks and the page states: the largest count whose estimate
(dynamics.limit.cost: work M·K·block·(T·(P+Nb))² over a measured rate, cost ∝ M (T·P)² K) fits the budget;
the grid is the run's depth. In hosted mode (dashboard.hosting) the same caps as the train form hold: off when
training is off, the run's depth and steps within hosting.train_cap() (its width is no cost of the limit),
at most hosting.max_jobs() jobs in flight server-wide (training and solving together), a budget of at most
HOSTED_BUDGET seconds, and the run goes to the session's own folder. Every refusal is one line.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Sequence

import streamlit as st

from dashboard import hosting
from dashboard.runs import Run
from dashboard.sections import extrapolate_command, matched_limit
from dashboard.settings import REPO
from dashboard.uploads import register, session_root
from dashboard.widgets import job_outcome
from dynamics.config import ConfigError, RunConfig
from dynamics.limit.cost import MAX_INPUTS, estimate_seconds, inputs_bound, particles_for_budget

BUDGETS = (10, 30, 60, 120, 300, 600)   # seconds offered
HOSTED_BUDGET = 60                       # the most a shared instance spends on one solve
MOST_PARTICLES = 16384                   # the most particles a page solve uses, whatever the budget
_JOBS: dict[str, dict] = {}              # finite run path -> {"steps", "step", "loss", "done", "status", "error", ...}
_SESSION = "dashboard.limit_jobs"        # this session's finite run paths, newest last


# the solve runs in a child process: its own GIL and one intra-op thread, so neither the server nor other jobs
# slow it down (as a thread of the server's process, with torch's two default threads on a busy 2-core machine,
# a solve estimated at 5 s took 115 s; as a child, about 10 s)
_CHILD = """
import sys
import torch
torch.set_num_threads(1)
from pathlib import Path
from dynamics.limit.run import limit_like
try:
    run_dir = limit_like(Path(sys.argv[1]), Path(sys.argv[2]), particles=int(sys.argv[3]), device="auto",
                         on_step=lambda step, loss: print("step", step, loss, flush=True))
    print("done", run_dir, flush=True)
except Exception as e:
    print("error", f"{type(e).__name__}: {e}".replace("\\n", " "), flush=True)
"""


def _work(like: str, out: Path, particles: int, job: dict) -> None:
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, like, str(out), str(particles)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "step":
                step, loss = rest.split()
                job.update(step=int(step), loss=float(loss))
            elif kind == "done":
                job["run_dir"] = rest
            elif kind == "error":
                job["error"] = rest
        err = proc.stderr.read()
        if proc.wait() and not job.get("error"):
            job["error"] = (err.strip().splitlines() or [f"the solver exited with code {proc.returncode}"])[-1]
        if job.get("run_dir"):
            from dynamics.runs.store import read_meta
            job["status"] = read_meta(job["run_dir"])["status"]
    except Exception as e:  # noqa: BLE001 (shown on the page as one line)
        job["error"] = f"{type(e).__name__}: {e}"
    finally:
        job["done"] = True


def plan(cfg: RunConfig, budget: float) -> tuple[int, float]:
    """(particles, estimated seconds) for cfg's limit on its own depth grid within `budget` seconds;
    particles 0 when not even 16 per replica fit."""
    m = particles_for_budget(cfg, budget, most=MOST_PARTICLES)
    return m, (estimate_seconds(cfg, m) if m else estimate_seconds(cfg, 128))


def refusal(cfg: RunConfig, budget: float) -> str | None:
    """Why this solve may not start from the page, in one line; None when it may."""
    if (seen := inputs_bound(cfg)) > MAX_INPUTS:
        return (f"the limit conditions on every input it sees and this run sees about {seen} (train_size "
                f"{cfg.train_size}, batch {cfg.batch}, {cfg.steps} steps; at most {MAX_INPUTS}); train a run with a "
                "smaller train_size or fewer steps to compare it with the limit")
    if cfg.param == "sp":
        return "param sp has no particle limit (its width limit is the lazy kernel regime); pick a μP run"
    if hosting.hosted():
        if why := hosting.cap_refusal(cfg, "solving", "solve it with `python -m dynamics limit --like RUN --out "
                                                     "runs/`"):
            return why
        if budget > HOSTED_BUDGET:
            return f"this shared instance spends at most {HOSTED_BUDGET} s on a solve; pick a smaller budget"
        if hosting.busy():
            return "the server is busy with another run; try again when it ends"
    return None


def start(run: Run, cfg: RunConfig, particles: int) -> None:
    """Start the solve of `run`'s limit in the background (a child process, watched by a thread), writing beside
    the run (hosted: the session's folder). Raises ReadOnlyError / ConfigError with one line."""
    hosted = hosting.hosted()
    out = session_root() if hosted else Path(run.path).parent
    hosting.refuse_write(out)
    def make() -> dict:
        job = _JOBS[run.path] = {"steps": cfg.steps, "step": -1, "loss": None, "done": False,
                                 "particles": particles, "label": run.label}
        return job
    job = hosting.claim_job(make)  # one check-and-claim with the train form: two clicks cannot both pass the cap
    threading.Thread(target=_work, args=(run.path, out, particles, job), daemon=True,
                     name=f"limit {Path(run.path).name}").start()
    if hosted:
        register(out)
    jobs = st.session_state.setdefault(_SESSION, [])
    if run.path not in jobs:
        jobs.append(run.path)


def wait(run_path: str, timeout: float = 120.0) -> dict:
    """Block until the solve of `run_path`'s limit ends (tests and scripts); returns its record."""
    for t in threading.enumerate():
        if t.name == f"limit {Path(run_path).name}":
            t.join(timeout)
    return _JOBS[run_path]


def solve_missing(page: str, run: Run | None, lims: Sequence[Run]) -> None:
    """The Limit page's section: this session's solves in progress, and for `run` (the first chosen finite
    run) without a matching limit run, the budget, the plan it gives and the Solve button."""
    running = any(not _JOBS[p]["done"] for p in st.session_state.get(_SESSION, []) if p in _JOBS)
    (st.fragment(_progress, run_every=1.0) if running else _progress)()
    if run is None or run.kind != "finite" or (lims and matched_limit(run, lims)):
        return
    job = _JOBS.get(run.path)
    if job is not None and not job["done"]:
        return
    with st.expander(f"Solve the limit of `{run.label}` here", expanded=True):
        try:
            cfg = RunConfig.from_dict(run.config)
        except (ConfigError, TypeError) as e:
            st.info(f"`{run.label}` has no setting the limit can rebuild ({e}).")
            return
        options = [b for b in BUDGETS if not hosting.hosted() or b <= HOSTED_BUDGET]
        budget = st.select_slider("time budget (s)", options, 30, key=f"{page}.limit_budget")
        why = refusal(cfg, budget)
        particles, est = plan(cfg, budget)
        if why is None and not particles:
            why = (f"this setting (T·P = {(cfg.steps + 1) * inputs_bound(cfg)}, K = {cfg.depth}) needs about "
                   f"{est:.0f} s even with 128 particles; pick a larger budget or run `python -m dynamics limit`")
        if why:
            st.warning(f"Cannot solve here: {why}. Any run gets a limit by extrapolation in width instead: "
                       f"*Extrapolate the limit … in width* below, or `{extrapolate_command(run)}`.")
            return
        where = "your session's temporary folder" if hosting.hosted() else f"`{Path(run.path).parent}`"
        st.caption(f"Solves the infinite-width limit of this setting on a {cfg.depth}-block grid with {particles} "
                   f"particles (8 replicas, for error bars) in about {max(1, round(est))} s on one CPU thread (CUDA when "
                   f"present), within the {budget} s budget; cost grows like particles × (steps·inputs)² × depth. "
                   f"The limit run is written to {where}.")
        if st.button("Solve", key=f"{page}.limit_solve"):
            try:
                start(run, cfg, particles)
            except (ConfigError, hosting.ReadOnlyError, OSError) as e:
                st.error(f"Cannot solve: {e}")
            else:
                st.rerun()


def _progress() -> None:
    for path in st.session_state.get(_SESSION, []):
        job = _JOBS.get(path)
        if job is None:
            continue
        name = job["label"]
        if not job["done"]:
            frac = (job["step"] + 1) / (job["steps"] + 1)
            loss = "" if job["loss"] is None else f", loss {job['loss']:.4g}"
            st.progress(min(max(frac, 0.0), 1.0), text=f"Solving the limit of `{name}` with {job['particles']} "
                                                       f"particles: step {max(job['step'], 0)}/{job['steps']}{loss}")
        else:
            job_outcome(job, f"The limit of `{name}` failed", f"The limit of `{name}` is "
                        f"`{Path(job.get('run_dir', '')).name}` ({job.get('status')}); it is in the limit picker.")
