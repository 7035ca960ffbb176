"""Hosted mode: the switch, the caps and the guards that make the dashboard safe as a shared instance.

Hosted mode is on when the environment says `DYNAMICS_READONLY=1` (the Docker image sets it), else when
`.streamlit/secrets.toml` (or Streamlit Community Cloud's secrets box) holds `[dynamics] readonly = true`
(the switch and the caps live in dashboard.settings; `hosting.hosted()` etc. are the same functions).
(Not config.toml: Streamlit warns about sections it does not know there.) In hosted mode:

- the bundled runs ($DYNAMICS_DATA_DIR), the configured runs folder ($DYNAMICS_RUNS) and the remote-runs
  cache are read-only: `refuse_write(path)` is the one check every write path (train form, uploads) makes;
- the sidebar's runs-folder box is not drawn and `?dir=` is ignored (no stranger points the server at paths);
- the train form trains only into the session's own temporary folder (the upload folder of dashboard.uploads,
  so it is swept by the same TTL), within `train_cap()` (width × depth × steps, default 256×16×200,
  `DYNAMICS_TRAIN_CAP=WxDxS`, `0` turns training off) and with at most `max_jobs()` runs in flight server-wide;
- session folders expire 30 minutes after the session's last page view (`DYNAMICS_UPLOAD_TTL_HOURS`
  overrides) and every page load sweeps them: Streamlit has no session-end hook, so a closed tab's uploads
  live until the TTL (a weakref finalizer on session state did not fire in the load test, so none is used);
- uncaught errors show Streamlit's generic one-line message, never a traceback or a server path
  (`harden()`: client.showErrorDetails = "none", set when this module loads and on every page);
- `banner()` says so at the top of every page, and stops the page with one line when a setting is not
  understood (dashboard.settings.check: e.g. DYNAMICS_READONLY=enabled).

`DYNAMICS_DATA_DIR` may be a URL (file://, or any pyarrow.fs URL such as s3://bucket/sweep): `mirror(url)`
copies the run files once per process into a local cache ($DYNAMICS_CACHE_DIR, else the temp folder's
`dynamics-remote`), refusing more than `DYNAMICS_REMOTE_MAX_MB` (default 500). Only file:// is tested here.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterable

import streamlit as st

from dashboard.settings import (CACHE_ENV, DATA_ENV, DEFAULT_CAP, REMOTE_MB_ENV, REPO, USER_ENV,  # noqa: F401
                                cache_dir, check, hosted, max_jobs, quotas, train_cap, ttl_seconds)

RUN_FILES = {"run.json", "metrics.parquet", "kernels.parquet", "neurons.parquet", "sweep.json"}


class ReadOnlyError(PermissionError):
    """A write that a shared (hosted) instance refuses; the message is one line for st.error."""


class RemoteRunsError(OSError):
    """A remote runs root that cannot be mirrored (too big); an OSError, as callers of data_dir() catch."""


def protected_roots() -> list[Path]:
    """Folders a hosted instance serves and never writes: bundled runs, $DYNAMICS_RUNS, the remote cache."""
    roots = [REPO / "data", cache_dir()]
    for env in (DATA_ENV, USER_ENV):
        value = os.environ.get(env, "").strip()
        if value and "://" not in value:
            roots.append(Path(value).expanduser())
    return [r.resolve() for r in roots]


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def refuse_write(path: str | Path) -> None:
    """Raise ReadOnlyError when hosted mode is on and `path` is (inside) a served, read-only folder."""
    if not hosted():
        return
    p = Path(path).expanduser().resolve()
    for root in protected_roots():
        if _inside(p, root) or _inside(root, p):
            raise ReadOnlyError(f"`{path}` is read-only on this shared instance; runs you train or upload go to "
                                "your session's own temporary folder")


_DETAILS = "client.showErrorDetails"
_HARDENED: list[str] = []  # the value showErrorDetails had before harden() changed it


def harden() -> None:
    """Hosted mode: showErrorDetails "none" (an uncaught error is one generic line in the browser; the
    traceback goes to the server log only). A private instance gets the value it had back."""
    if hosted():
        if not _HARDENED:
            _HARDENED.append(str(st.get_option(_DETAILS)))
        st.set_option(_DETAILS, "none")
    elif _HARDENED:
        st.set_option(_DETAILS, _HARDENED.pop())


def banner() -> None:
    """One line at the top of every page (called by the shared run loader and the Upload page); a setting
    that is not understood stops the page with one line saying which and what it may be."""
    harden()
    if problems := check():
        st.error("This dashboard is not configured correctly: " + "; ".join(problems))
        st.stop()
    if not hosted():
        return
    cap = train_cap()
    train = f"training is capped at {'×'.join(map(str, cap))} (width×depth×steps)" if cap else "training is off"
    st.info(f"**Shared read-only instance.** The runs shown here cannot be changed; your uploads and "
            f"trained runs are visible to your browser session only and deleted {ttl_seconds() / 60:g} minutes "
            f"after your last visit; {train}.", icon=":material/public:")


# --- remote runs roots --------------------------------------------------------------------------
_MIRRORS: dict[str, Path] = {}
_MIRROR_LOCK = threading.Lock()


def mirror(url: str) -> Path:
    """A local read-only copy of the runs under `url` (pyarrow.fs: file://, s3://, gs://, hdfs://), made once
    per process: run.json and the Parquet files of each run, at most $DYNAMICS_REMOTE_MAX_MB (default 500).
    Raises OSError / ValueError with a one-line message (the page shows it)."""
    with _MIRROR_LOCK:
        if url in _MIRRORS and _MIRRORS[url].is_dir():
            return _MIRRORS[url]
        from pyarrow import fs as pafs
        filesystem, base = pafs.FileSystem.from_uri(url)
        base = base.rstrip("/")
        infos = [i for i in filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
                 if i.type == pafs.FileType.File and i.base_name in RUN_FILES]
        limit = float(os.environ.get(REMOTE_MB_ENV, 500)) * 2**20
        total = sum(i.size or 0 for i in infos)
        if total > limit:
            raise RemoteRunsError(f"{url} holds {total / 2**20:.0f} MB of run files, over the {limit / 2**20:g} MB "
                             f"cap (${REMOTE_MB_ENV})")
        dest = cache_dir() / hashlib.sha256(url.encode()).hexdigest()[:16]
        cache_dir().mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".mirror-", dir=cache_dir()))
        try:
            for info in infos:
                rel = info.path[len(base):].lstrip("/")
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with filesystem.open_input_stream(info.path) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _MIRRORS[url] = dest
        return dest


harden()  # before any page draws: errors raised above the first banner() are covered too


def running_jobs(jobs: Iterable[dict]) -> int:
    """How many of these background jobs (records with a "done" flag) are still in flight."""
    return sum(not j.get("done") for j in jobs)


_IN_FLIGHT: list[dict] = []        # every background job this server started: training runs and limit solves
_CLAIM = threading.Lock()          # check-the-cap-and-register is one step across all sessions and both kinds


def cap_refusal(cfg, doing: str, instead: str) -> str | None:
    """The train cap as it binds a job a page starts for a run (a limit solve, a width ladder), in one line: off
    when training is off, the run's depth and steps within train_cap(); None when they allow it. `doing` names
    the job ("solving"), `instead` what to do on one's own machine ("run `python -m dynamics …`")."""
    cap = train_cap()
    if cap is None:
        return f"{doing} from the page is off on this shared instance (training is off)"
    for name, most in (("depth", cap[1]), ("steps", cap[2])):
        if getattr(cfg, name) > most:
            return (f"{name}={getattr(cfg, name)} is above this shared instance's cap {most}; {instead} on your own "
                    "machine")
    return None


def busy() -> bool:
    """Are max_jobs() background jobs (training runs and limit solves together) in flight on this server?"""
    return running_jobs(_IN_FLIGHT) >= max_jobs()


def claim_job(make: Callable[[], dict]) -> dict:
    """Start a background job within the server-wide cap: in hosted mode, refuse (ReadOnlyError) when
    max_jobs() jobs — training runs and limit solves together — are in flight; else call `make()` (which
    prepares the job and returns its record, with a "done" flag) and count it. Check and registration happen
    under one lock, so two visitors clicking at once cannot both pass the cap."""
    with _CLAIM:
        _IN_FLIGHT[:] = [j for j in _IN_FLIGHT if not j.get("done")]
        if hosted() and busy():
            raise ReadOnlyError("the server is busy with another run; try again when it ends")
        job = make()
        _IN_FLIGHT.append(job)
        return job
