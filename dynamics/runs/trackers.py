"""What the tracker readers share (dynamics.runs.mlflow, .wandb_offline, .trackio): a run found in a tracker's
files (`Found`), the config made from its params, its tags kept, and the compact columns built key by key.

SQLite files (Trackio, MLflow's SQL store) are opened read-only with untrusted schemas off. A tracker holds
several runs; each becomes one run of ours (dynamics.runs.imports writes them one after another,
reading one at a time). Params become the config where our config can hold them: a text value that reads as an
integer, a number, true/false or null becomes one (MLflow keeps params as text); nested dicts are flattened with
dots (`opt.beta`); a field our config refuses (a long name, a 300-character value, steps = 1e5) is left out
with a note instead of refusing the run. Tags (at most MAX_TAGS, each cut to 500 characters) are kept in
run.json under `tags`; the tracker's own names under `tracker`.
"""
from __future__ import annotations

import math
import sqlite3
from array import array
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .formats import _Parsed, split_name
from .import_checks import RunImportError, check_field, fail, steps
from .scalars import Scalars, keyed

__all__ = ["Found", "Columns", "config_from", "tags_from", "status", "number", "is_sqlite", "connect", "query", "columns",
           "MAX_TAGS"]
MAX_TAGS = 200
_STATUS = {"FINISHED": "complete", "FAILED": "failed", "KILLED": "failed"}


@dataclass
class Found:
    """One run of a tracker: its label (`experiment/run`), a default run name, and how to read it."""
    label: str
    name: str
    read: Callable[[], _Parsed]


def config_from(params: dict[str, Any], p: _Parsed, what: str = "param") -> dict[str, Any]:
    """A tracker's params -> the fields our config can hold (text typed, nested flattened); notes for the rest."""
    out: dict[str, Any] = {}
    left: list[str] = []
    for key, value in _flat(params):
        value = _typed(value)
        try:
            check_field(str(key), value)
        except RunImportError as e:
            left.append(f"{str(key)[:40]} ({str(e)[:80]})")
            continue
        if len(out) >= 199:
            left.append(str(key)[:40])
            continue
        out[str(key)] = value
    if left:
        p.skip(f"{len(left)} {what}(s): {'; '.join(left[:3])}{'; …' if len(left) > 3 else ''}",
               "not a config field this run format holds (kept out of the config)")
    return out


def _flat(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _typed(v: Any) -> Any:
    """Text that reads as an integer, a number, true/false or null -> that value (MLflow keeps params as text)."""
    if not isinstance(v, str):
        return v
    s = v.strip()
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(s)
    except ValueError:
        pass
    try:
        f = float(s)
        return f if math.isfinite(f) else v
    except ValueError:
        return v


def tags_from(tags: dict[str, Any]) -> dict[str, str]:
    """Tags as text (at most MAX_TAGS, each cut to 500 characters), kept in run.json."""
    return {str(k)[:200]: str(v)[:500] for k, v in list(tags.items())[:MAX_TAGS] if v is not None}


def status(tracker_status: str | None) -> str:
    return _STATUS.get(str(tracker_status).upper(), "complete")


def number(v: Any) -> float | None:
    """A logged value as a float: numbers, and the texts trackers write for NaN and ±∞; else None."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v in ("NaN", "nan", "Infinity", "-Infinity", "inf", "-inf"):
        return float(v.replace("Infinity", "inf"))
    return None


class Columns:
    """Values logged key by key (history rows, SQLite rows), gathered as compact columns: 20 bytes a value."""

    def __init__(self, limits) -> None:
        self.index: dict[str, int] = {}
        self.code, self.step, self.value = array("i"), array("q"), array("d")
        self.limits = limits
        self.other: dict[str, int] = {}  # keys with values that are not numbers: how many

    def add(self, step: int, key: str, v: Any) -> None:
        x = number(v)
        if x is None:
            self.other[key] = self.other.get(key, 0) + 1
            return
        code = self.index.get(key)
        if code is None:
            code = self.index[key] = len(self.index)
            if code >= self.limits.max_metrics:
                raise fail(f"more than {self.limits.max_metrics} distinct metric names (limit "
                           f"{self.limits.max_metrics}); a run's metric picker lists them all: log fewer names")
        if len(self.value) >= self.limits.max_rows:
            raise fail(f"too many values: more than {self.limits.max_rows} (limit {self.limits.max_rows} rows)")
        self.code.append(code)
        self.step.append(step)
        self.value.append(x)

    def scalars(self, p: _Parsed, where: Callable[[int], str]) -> Scalars:
        """The gathered values as Scalars (keys by the naming rule); the non-numeric keys noted."""
        if self.other:
            keys = sorted(self.other)
            p.skip(f"{sum(self.other.values())} value(s) of {len(keys)} key(s) ({', '.join(keys[:3])}"
                   f"{', …' if len(keys) > 3 else ''})", "not numbers (media, text or tables are not imported)")
        names = sorted(self.index, key=self.index.get)
        layer_of, metric_of, metrics = keyed(names, split_name)
        code = np.frombuffer(self.code, np.int32) if len(self.code) else np.zeros(0, np.int32)
        step = np.frombuffer(self.step, np.int64) if len(self.step) else np.zeros(0, np.int64)
        step = steps(step, where)
        value = np.frombuffer(self.value, np.float64) if len(self.value) else np.zeros(0, np.float64)
        return Scalars(step, layer_of[code], metric_of[code], value, metrics)


# --- SQLite files (Trackio, MLflow's SQL store) ------------------------------------------------------------
def is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection, with untrusted schemas off (a view or trigger of the file calls no function)."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        con.execute("PRAGMA trusted_schema = OFF")
        con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return con
    except sqlite3.Error:  # a read-only folder without the -wal / -shm files: read the file as it is
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        con.execute("PRAGMA trusted_schema = OFF")
        return con


def query(path: Path, label: str, read: Callable[[sqlite3.Connection, set[str]], Any]) -> Any:
    """read(connection, its tables) on the SQLite file at `path`, read-only, closed after; an SQLite error
    (a damaged or cut file) is one line naming `label`."""
    try:
        con = connect(path)
        try:
            return read(con, {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")})
        finally:
            con.close()
    except sqlite3.Error as e:
        raise fail(f"{label} is not a readable SQLite database ({str(e)[:160]})") from None


def columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
