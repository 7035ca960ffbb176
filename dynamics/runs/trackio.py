"""Trackio's local database -> runs: `<project>.db`, the SQLite file Trackio writes under its folder
($TRACKIO_DIR, else $HF_HOME/trackio, i.e. ~/.cache/huggingface/trackio). Read with Python's sqlite3, read-only,
with untrusted schemas off; trackio itself is not needed.

The schema (trackio/sqlite_storage.py, schema version 2): `metrics(id, run_id, timestamp, run_name, step,
metrics)`, one row per `trackio.log(...)` call, `metrics` a JSON object of key -> value (NaN and ±∞ written as
"NaN", "Infinity", "-Infinity"; media and tables as objects, not imported); `configs(run_id, run_name, config)`,
the run's config as a JSON object (Trackio's own `_Username`, `_Created`, `_Group` are kept in run.json under
`tracker`). Databases written before Trackio 0.24 have no run_id: the run name is the run. Each run becomes a
run named `<project>-<run name>`; a key logged twice at one step keeps the later row. `system_metrics` (CPU,
GPU) is skipped with a note. Rows are read one at a time (a cursor), values kept as compact columns.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .formats import _Parsed
from .import_bounds import Limits
from .import_checks import fail
from .trackers import Columns, Found, columns, config_from, is_sqlite, query, tags_from

__all__ = ["FORMAT", "runs"]
FORMAT = "trackio"


def runs(path: Path, label: str, limits: Limits) -> list[Found] | None:
    """The runs of a Trackio database at `path`, or None when it is not one."""
    if not is_sqlite(path):
        return None

    def find(con, tables):
        if "metrics" not in tables:
            raise fail(f"{label} is an SQLite database without Trackio's metrics table (found tables: "
                       f"{', '.join(sorted(tables)[:6]) or 'none'})")
        cols = columns(con, "metrics")
        if not {"run_name", "step", "metrics"} <= cols:
            raise fail(f"{label}: its metrics table has columns {', '.join(sorted(cols))}; Trackio's has run_name, "
                       f"step, metrics")
        by = "run_id" if "run_id" in cols else "run_name"
        return by, tables, con.execute(f"SELECT {by}, max(run_name) FROM metrics GROUP BY {by} ORDER BY min(id)"
                                       ).fetchmany(limits.max_runs + 1)
    by, tables, found = query(path, label, find)
    project = path.name[:-3] if path.name.endswith(".db") else path.stem
    return [Found(f"{project}/{name}", f"{project}-{name}",
                  lambda key=key, name=name: _read(path, by, key, name, project, tables, limits))
            for key, name in found]


def _read(path: Path, by: str, key, name: str, project: str, tables: set[str], limits: Limits) -> _Parsed:
    p = _Parsed(FORMAT)
    cols = Columns(limits)

    def read(con, _):
        for row, (step, blob) in enumerate(con.execute(f"SELECT step, metrics FROM metrics WHERE {by} = ? "
                                                       f"ORDER BY id", (key,)), 1):
            try:
                values = json.loads(blob)
            except (ValueError, TypeError, RecursionError):
                raise fail(f"row {row} of run {name}: its metrics are not a JSON object") from None
            if not isinstance(values, dict) or isinstance(step, bool) or not isinstance(step, int):
                raise fail(f"row {row} of run {name}: step {step!r} and metrics must be an integer and an object")
            for k, v in values.items():
                cols.add(step, str(k), v)
        system = con.execute(f"SELECT count(*) FROM system_metrics WHERE {by} = ?", (key,)).fetchone()[0] \
            if "system_metrics" in tables and by in columns(con, "system_metrics") else 0
        return (_config(con, by, key) if "configs" in tables else {}), system
    config, system = query(path, path.name, read)
    if system:
        p.skip(f"{system} row(s) of system_metrics", "system metrics (CPU, GPU) are not imported")
    own = {k: v for k, v in config.items() if str(k).startswith("_")}
    p.scalars = cols.scalars(p, lambda i: f"value {i} of run {name}")
    p.later_wins = ("(key, step)", "logged again at that step: the later row is kept")
    p.meta = {"config": config_from({k: v for k, v in config.items() if not str(k).startswith("_")}, p, "config"),
              "tags": tags_from(own), "tracker": {"name": "trackio", "project": project, "run_name": name,
                                                  "run_id": str(key)}}
    return p


def _config(con: sqlite3.Connection, by: str, key) -> dict:
    """The run's config (the latest row), {} when there is none or it is not a JSON object."""
    got = con.execute(f"SELECT config FROM configs WHERE {by} = ? ORDER BY id DESC LIMIT 1", (key,)).fetchone()
    try:
        config = json.loads(got[0]) if got else {}
    except (ValueError, TypeError, RecursionError):
        return {}
    return config if isinstance(config, dict) else {}

