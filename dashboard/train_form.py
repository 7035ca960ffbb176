"""The sidebar form "Train a small run": width, depth, steps, lr, act, param, backward (sizes capped so a
run takes seconds to minutes on a CPU), trained by dynamics.train.train into the user's runs folder.

The training runs in a background thread (one per run, kept in the module-level `_JOBS`), so it goes on
while the user switches pages or changes views; while one is in flight, a fragment that reruns every
second draws its st.progress bar, and when the run ends the whole page reruns once so the new run appears in the run picker (and the
run folder becomes the sidebar's *Your runs folder*). Errors come back as one line, never a traceback.
In hosted mode (dashboard.hosting) runs go only into the session's own temporary folder (the Upload page's,
so they share its TTL and per-session visibility), within hosting.train_cap() and hosting.max_jobs(); the
check of the running jobs and the registration of the new one happen under one lock (hosting.claim_job,
shared with the Limit page's solver), so two
sessions pressing Train at once cannot both pass the cap.
"""
from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from dashboard import hosting
from dashboard.runs import _USER_DIR, use_user_dir
from dashboard.uploads import register, session_root
from dynamics.config import ACTIVATIONS, BACKWARDS, PARAMS, ConfigError, RunConfig
from dynamics.runs.store import RunFormatError

CAPS = {"width": 512, "depth": 64, "steps": 1000}
_JOBS: dict[str, dict] = {}                 # run_dir -> {"steps", "step", "loss", "done", "status", "error"}
_SESSION_JOBS = "dashboard.train_jobs"       # this session's run_dirs, newest last


def _work(cfg: RunConfig, run_dir: Path, job: dict) -> None:
    try:
        from dynamics.train import train   # torch loads only when someone trains
        train(cfg, run_dir, on_step=lambda step, loss: job.update(step=step, loss=loss))
        from dynamics.runs.store import read_meta
        job["status"] = read_meta(run_dir)["status"]
    except Exception as e:  # noqa: BLE001 (shown on the page as one line)
        job["error"] = f"{type(e).__name__}: {e}"
    finally:
        job["done"] = True


def start(cfg: RunConfig, out: str) -> Path:
    """Start training cfg into a new run directory under `out` in a background thread; returns run_dir."""
    from dynamics.cli import prepare_run_dir
    caps, where, hosted = CAPS, "the form's", hosting.hosted()
    if hosted:
        if hosting.train_cap() is None:
            raise hosting.ReadOnlyError("training from the page is off on this shared instance")
        caps, where = dict(zip(("width", "depth", "steps"), hosting.train_cap())), "this shared instance's"
    hosting.refuse_write(out)
    for name, cap in caps.items():
        if getattr(cfg, name) > cap:
            raise ConfigError(f"{name}={getattr(cfg, name)} is above {where} cap {cap}; "
                              "use `python -m dynamics train` for bigger runs")
    def make() -> dict:
        job = {"steps": cfg.steps, "step": -1, "loss": None, "done": False,
               "run_dir": prepare_run_dir(out, None, cfg, overwrite=False)}
        _JOBS[str(job["run_dir"])] = job
        return job
    job = hosting.claim_job(make)  # the server-wide cap (with limit solves), checked and claimed under one lock
    run_dir = job["run_dir"]
    threading.Thread(target=_work, args=(cfg, run_dir, job), daemon=True, name=f"train {run_dir.name}").start()
    return run_dir


def wait(run_dir: str | Path, timeout: float = 120.0) -> dict:
    """Block until a job ends (tests and scripts); returns its record."""
    for t in threading.enumerate():
        if t.name == f"train {Path(run_dir).name}":
            t.join(timeout)
    return _JOBS[str(run_dir)]


def train_form(page: str) -> None:
    """The sidebar expander with the form and the progress of this session's runs. Lazy: the form is built only
    while the expander is open (opening it reruns the page) or a run of this session is in flight, so a page
    that is only read sends about 14 fewer elements (a cold Trajectories page drew its first chart ≈0.15 s
    sooner without them, median of 8 interleaved pairs)."""
    box = st.sidebar.expander("Train a small run", expanded=bool(st.session_state.get(_SESSION_JOBS)),
                              key=f"{page}.train_open", on_change="rerun")
    if not (box.open or _in_flight()):
        return
    with box:
        with st.form(f"{page}.train_form"):
            c1, c2 = st.columns(2)
            width = c1.select_slider("width n", [16, 32, 64, 128, 256, 512], 64)
            depth = c2.select_slider("depth L", [2, 4, 8, 16, 32, 64], 8)
            steps = c1.number_input("steps", 1, CAPS["steps"], 50)
            lr = c2.number_input("lr η", 1e-4, 10.0, 0.5, format="%.4g")
            act = c1.selectbox("act", ACTIVATIONS, index=ACTIVATIONS.index("relu"))
            param = st.selectbox("param", PARAMS)  # full width: "depth-mup" is cut to "deptl" in a half column
            backward = st.radio("backward", BACKWARDS, horizontal=True)
            if hosted := hosting.hosted():
                cap = hosting.train_cap()
                st.caption(f"Shared instance: at most {'×'.join(map(str, cap))} (width×depth×steps), into your "
                           "session's temporary folder." if cap else "Training is off on this shared instance.")
            out = st.text_input("into folder", "" if hosted else st.session_state.get(_USER_DIR) or "runs/",
                                placeholder="your session's temporary folder" if hosted else "runs/")
            submitted = st.form_submit_button("Train")
        if submitted:
            try:
                out = _hosted_out(out) if hosted else out
                cfg = RunConfig(width=int(width), depth=int(depth), steps=int(steps), lr=float(lr), act=act,
                                param=param, backward=backward, record_every=max(1, int(steps) // 20),
                                test_every=max(1, int(steps) // 20), device="cpu")
                run_dir = start(cfg, out.strip() or "runs/")
            except (ConfigError, RunFormatError, hosting.ReadOnlyError) as e:
                st.error(f"Cannot train: {e}")
            else:
                st.session_state.setdefault(_SESSION_JOBS, []).append(str(run_dir))
                if hosted:
                    register(Path(out))  # the session folder joins this session's run roots
                else:
                    use_user_dir(out.strip() or "runs/")
        # poll only while this session has a run in flight (the form may have just started one): an idle page
        # must not rerun every second
        (st.fragment(_progress, run_every=1.0) if _in_flight() else _progress)()


def _in_flight() -> bool:
    """Whether a run this session started is still training."""
    return any(not _JOBS[d]["done"] for d in st.session_state.get(_SESSION_JOBS, []) if d in _JOBS)


def _hosted_out(typed: str) -> str:
    """Hosted mode: the session's own folder; a typed folder is refused (served runs: as read-only)."""
    own = session_root()
    if typed.strip() and Path(typed.strip()).expanduser().resolve() != own.resolve():
        hosting.refuse_write(typed.strip())
        raise hosting.ReadOnlyError(f"only your session's temporary folder is writable on this shared "
                                    f"instance; leave *into folder* empty (`{typed.strip()}` was given)")
    return str(own)


def _progress() -> None:
    for run_dir in st.session_state.get(_SESSION_JOBS, []):
        job, name = _JOBS.get(run_dir), Path(run_dir).name
        if job is None:
            continue
        if not job["done"]:
            frac = (job["step"] + 1) / (job["steps"] + 1)
            loss = "" if job["loss"] is None else f", loss {job['loss']:.4g}"
            st.progress(min(max(frac, 0.0), 1.0), text=f"`{name}`: step {max(job['step'], 0)}/{job['steps']}{loss}")
        elif job.get("error"):
            st.error(f"`{name}` failed: {job['error']}")
        else:
            st.success(f"`{name}`: {job.get('status')}; it is in the run picker.")
            if not job.get("shown"):
                job["shown"] = True
                st.rerun(scope="app")  # the picker rescans and lists the new run
