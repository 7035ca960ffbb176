"""`python -m dynamics import SRC --out DIR --follow SECONDS`: keep an imported run up to date while its source is
still being written (a TensorBoard log folder or event file, a CSV a logger appends to), so the dashboard's live
view (dashboard.live) redraws it as it grows.

After the first import, every SECONDS the source's files are stat'ed (names, sizes, mtimes; nothing is read);
when they changed, the source is imported again into a hidden sibling folder and each of the new run's files
replaces the old one atomically (os.replace; run.json last), so a reader sees the old run or the new one,
never half of one. Meanwhile run.json says `running` with a heartbeat of this process (dynamics.runs.store
.liveness), refreshed every period; Ctrl-C (or SIGTERM) ends the watch and marks the run `complete`. A source
with several runs (a tracker's store) is refused: follow one run's file or folder.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable

from . import store
from .import_checks import RunImportError


def signature(src: Path) -> tuple:
    """(relative path, size, mtime) of every file under `src` (or of `src` itself): what a writer changes."""
    src = Path(src)
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((str(f.relative_to(src)) if f != src else f.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _mark(run_dir: Path, status: str, every: float) -> None:
    meta = store.read_meta(run_dir)
    meta["status"] = status
    meta["heartbeat"] = {"host": socket.gethostname(), "pid": os.getpid(),
                         "updated": store._now(), "every_seconds": float(every)}
    if status != "running":
        meta.pop("heartbeat")
    meta.setdefault("source", {})["followed"] = True
    store.write_json_atomic(run_dir / store.RUN_JSON, meta)


def _swap(fresh: Path, run_dir: Path) -> None:
    """Replace run_dir's files by fresh's, one atomic rename each, run.json last; files fresh lacks are removed."""
    names = [p.name for p in fresh.iterdir() if p.is_file()]
    for name in sorted(names, key=lambda n: n == store.RUN_JSON):
        os.replace(fresh / name, run_dir / name)
    for p in run_dir.iterdir():
        if p.is_file() and p.name not in names:
            p.unlink()


def follow(src: str | Path, run_dir: Path, reimport: Callable[[Path], Any], every: float,
           stop: Callable[[], bool] | None = None, say: Callable[[str], None] = print) -> int:
    """Watch `src` and re-import it into `run_dir` whenever it changes (module docstring). `reimport(tmp_root)`
    imports the source into tmp_root and returns the Imported; `stop()` ends the loop (tests); returns the number
    of re-imports."""
    src, run_dir = Path(src), Path(run_dir)
    stopped = {"now": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stopped["now"] = True
    try:
        old = signal.signal(signal.SIGTERM, on_signal)
    except ValueError:  # not the main thread (a caller's own loop): Ctrl-C / stop() only
        old = None
    _mark(run_dir, "running", every)
    seen, updates = signature(src), 0
    tmp_root = run_dir.parent / f".follow-{run_dir.name}"
    try:
        while not stopped["now"] and not (stop and stop()):
            time.sleep(every)
            now = signature(src)
            if now != seen:
                shutil.rmtree(tmp_root, ignore_errors=True)
                try:
                    res = reimport(tmp_root)
                except RunImportError as e:  # e.g. a record cut mid-write: try again next period
                    say(f"not updated yet: {e}")
                else:
                    _mark(res.run_dir, "running", every)  # never `complete` in between, for a live reader
                    _swap(res.run_dir, run_dir)
                    updates += 1
                    seen = now
                    say(f"updated: {run_dir} ({res.summary['steps']} steps, up to step {res.summary['step_range'][1]})")
                finally:
                    shutil.rmtree(tmp_root, ignore_errors=True)
            _mark(run_dir, "running", every)
    except KeyboardInterrupt:
        pass
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        shutil.rmtree(tmp_root, ignore_errors=True)
        _mark(run_dir, "complete", every)
    return updates
