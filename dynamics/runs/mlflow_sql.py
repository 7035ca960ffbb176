"""MLflow's SQLite store -> runs: `mlflow.db`, what MLflow 3 writes by default (`sqlite:///mlflow.db`), read
with Python's sqlite3, read-only (dynamics.runs.trackers.connect); no mlflow package needed.

The tables (mlflow/store/tracking/dbmodels/models.py): `experiments(experiment_id, name, lifecycle_stage)`,
`runs(run_uuid, name, status, lifecycle_stage, experiment_id)`, `metrics(key, value, timestamp, run_uuid,
step, is_nan)` (NaN is stored as 0 with is_nan, ±∞ as ±1.797e308, read back as NaN and ±∞), `params(key,
value, run_uuid)` and `tags(key, value, run_uuid)`. The same rules as the file store (dynamics.runs.mlflow):
one run per active run, named `<experiment>-<run name>`; params become the config, tags are kept; a value
logged again at a step keeps the later one (by timestamp). Rows are read one at a time (a cursor).
"""
from __future__ import annotations

from pathlib import Path

from .formats import _Parsed
from .import_bounds import Limits
from .import_checks import fail
from .trackers import Columns, Found, columns, config_from, is_sqlite, query, status, tags_from

__all__ = ["FORMAT", "runs"]
FORMAT = "mlflow"
_NEEDED = {"experiments", "runs", "metrics", "params", "tags"}
_FLOAT_MAX = 1.7976931348623157e308


def runs(path: Path, label: str, limits: Limits) -> list[Found] | None:
    """The runs of an MLflow SQLite store at `path`, or None when it is not one."""
    if not is_sqlite(path):
        return None

    def find(con, tables):
        if not _NEEDED <= tables or "run_uuid" not in columns(con, "metrics"):
            return None
        return con.execute("SELECT r.run_uuid, r.name, e.name FROM runs r LEFT JOIN experiments e ON "
                           "r.experiment_id = e.experiment_id WHERE r.lifecycle_stage IS NOT 'deleted' "
                           "ORDER BY r.start_time, r.run_uuid").fetchmany(limits.max_runs + 1)
    if (found := query(path, label, find)) is None:
        return None
    return [Found(f"{exp or 'mlflow'}/{name or rid}", f"{exp or 'mlflow'}-{name or rid}",
                  lambda rid=rid, name=name, exp=exp: _read(path, rid, name or rid, exp or "mlflow", limits))
            for rid, name, exp in found]


def _read(path: Path, rid: str, name: str, exp: str, limits: Limits) -> _Parsed:
    p = _Parsed(FORMAT)
    cols = Columns(limits)

    def read(con, _):
        for key, step, value, is_nan in con.execute("SELECT key, step, value, is_nan FROM metrics WHERE "
                                                    "run_uuid = ? ORDER BY timestamp, rowid", (rid,)):
            if isinstance(step, bool) or not isinstance(step, int):
                raise fail(f"run {name}: metric {str(key)[:60]!r} has the step {step!r}, not an integer")
            v = float("nan") if is_nan else value
            cols.add(step, str(key), float("inf") if v == _FLOAT_MAX else -float("inf") if v == -_FLOAT_MAX else v)
        return (dict(con.execute("SELECT key, value FROM params WHERE run_uuid = ? ORDER BY key", (rid,))),
                dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ? ORDER BY key", (rid,))),
                con.execute("SELECT status FROM runs WHERE run_uuid = ?", (rid,)).fetchone()[0])
    params, tags, state = query(path, path.name, read)
    if not cols.value:
        raise fail("no metrics (the run logged none)")
    p.scalars = cols.scalars(p, lambda i: f"value {i} of run {name}")
    p.later_wins = ("(key, step)", "logged again at that step: the later is kept")
    p.meta = {"config": config_from(params, p), "tags": tags_from(tags), "status": status(state),
              "tracker": {"name": "mlflow", "experiment": exp, "run_name": name, "run_id": rid}}
    return p
