"""W&B offline runs -> runs: a `wandb/` folder, one `offline-run-*` (or `run-*`) folder of it, or its
`run-<id>.wandb` file, the transaction log that `wandb.init(mode="offline")` writes when there is no network.

The log is read by the wandb package's own reader (an optional requirement: `pip install wandb`, ≥ 0.31): its
`wandb leet inspect --json FILE`, which prints one JSON record per line; we stream them, never parse the binary
log ourselves. Records used: `run` (display name, project, run id, the config), `config` (later config
updates), `history` (one row per `wandb.log`: flattened keys, e.g. `layer_3/h_sq` or `opt.lr`, at
`step.num`) and `exit` (the exit code: 0 complete, else failed). Keys starting with `_` (`_runtime`,
`_timestamp`, `_step`) are W&B bookkeeping; values that are not numbers (media, tables, histograms) and
system metrics (`stats`) are skipped with a note. Each run is named `<project>-<run name>`; the naming rule
of dynamics.runs.formats.split_name maps keys to layers.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .formats import _Parsed
from .import_bounds import Limits
from .import_checks import fail
from .trackers import Columns, Found, config_from, tags_from

__all__ = ["FORMAT", "runs", "MAGIC"]
FORMAT = "wandb-offline"
MAGIC = b":W&B"
_MAX_RUN_FILES = 1000


def _is_log(path: Path) -> bool:
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with open(path, "rb") as fh:
            return fh.read(4) == MAGIC
    except OSError:
        return False


def _logs(folder: Path) -> list[Path]:
    """The `.wandb` logs of a run folder, a wandb/ folder or a folder holding wandb/ (links not followed)."""
    found: list[Path] = []
    for pattern in ("*.wandb", "*/*.wandb", "wandb/*/*.wandb"):
        found += [f for f in sorted(folder.glob(pattern)) if not f.parent.is_symlink() and _is_log(f)]
        if found:
            break
    return found[:_MAX_RUN_FILES + 1]


def runs(path: Path, label: str, limits: Limits) -> list[Found] | None:
    """The runs of W&B offline logs at `path`, or None when it holds none."""
    logs = _logs(path) if path.is_dir() else [path] if _is_log(path) else []
    if not logs:
        return None
    return [Found(_label(f), _label(f).replace("/", "-"), lambda f=f: _read(f, limits)) for f in logs]


def _label(f: Path) -> str:
    """Before reading: the run folder's name (offline-run-<time>-<id>), else the file's (run-<id>)."""
    return f.parent.name if f.parent.name.startswith(("offline-run-", "run-")) else f.stem


def _read(log: Path, limits: Limits) -> _Parsed:
    """One `.wandb` log -> _Parsed, its records streamed from the wandb package's reader."""
    if importlib.util.find_spec("wandb") is None:
        raise fail("reading a W&B offline run needs the wandb package: pip install wandb")
    p = _Parsed(FORMAT)
    cols = Columns(limits)
    run: dict = {}
    config: dict = {}
    bookkeeping: set[str] = set()
    stats, exit_code, rows = 0, None, 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log)],
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        try:
            for raw in proc.stdout:
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                kind = rec.get("type")
                body = rec.get(kind) if isinstance(rec.get(kind), dict) else {}
                if kind == "history":
                    rows += 1
                    item = body.get("item") or {}
                    step = (body.get("step") or {}).get("num", item.get("_step", rows - 1))
                    for k, v in item.items():
                        if str(k).startswith("_"):
                            bookkeeping.add(str(k))
                        else:
                            cols.add(int(step), str(k), v)
                elif kind == "run":
                    run = body
                    config.update(((body.get("config") or {}).get("update")) or {})
                elif kind == "config":
                    config.update(body.get("update") or {})
                elif kind == "stats":
                    stats += 1
                elif kind == "exit":
                    exit_code = body.get("exit_code", 0)
        finally:
            proc.stdout.close()
            code = proc.wait()
        err.seek(0)
        last = (err.read()[-2000:].decode("utf-8", "replace").strip().splitlines() or [""])[-1]
    if code != 0:
        if "No such command" in last:
            raise fail("reading a W&B offline run needs wandb ≥ 0.31 (its `wandb leet inspect`): "
                       "pip install -U wandb")
        raise fail(f"wandb could not read {log.name} (exit {code}: {last[:200]})")
    if not rows:
        raise fail(f"{log.name} holds no history rows (nothing was logged with wandb.log)")
    if bookkeeping:
        p.skip(f"keys {', '.join(sorted(bookkeeping)[:4])}", "W&B bookkeeping")
    if stats:
        p.skip(f"{stats} system-metrics record(s)", "system metrics (CPU, GPU) are not imported")
    if exit_code is None:
        p.skip("exit record", "none: the run was still writing, or it crashed; imported up to its last row")
    project = run.get("project") or "wandb"
    name = run.get("display_name") or run.get("run_id") or log.stem
    p.scalars = cols.scalars(p, lambda i: f"value {i} of {log.name}")
    p.later_wins = ("(key, step)", "logged again at that step: the later row is kept")
    p.meta = {"config": config_from({k: v for k, v in config.items() if k != "_wandb"}, p, "config field"),
              "tags": tags_from({f"tag.{t}": t for t in run.get("tags") or [] if isinstance(t, str)}),
              "tracker": {"name": "wandb", "project": project, "run_name": name, "run_id": run.get("run_id")},
              "status": "failed" if exit_code not in (None, 0) else "complete"}
    p.meta["tracker"]["label"] = f"{project}/{name}"
    p.name = f"{project}-{name}"
    return p
