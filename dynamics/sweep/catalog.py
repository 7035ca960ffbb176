"""The catalogue: SQL (DuckDB) over every run in a folder, e.g. all runs of a sweep, without loading them.

    import dynamics
    cat = dynamics.catalog("runs/sweep1")
    cat.runs                                   # one row per run: status, wall time, config fields as columns
    cat.metric("h_sq", layers=[8], steps=[100], where={"depth": 8, "lr": [0.05, 0.1]})  # tidy + config
    cat.query("SELECT r.width, avg(m.value) FROM metrics m JOIN runs r USING (run_id) "
              "WHERE m.metric = 'loss' AND m.step = 100 GROUP BY r.width")

Views: `runs` (run_id = directory name, kind, status, steps_done, wall_seconds, created, ran_on (the device
it ran on), error, and one column per config field; `trained` and `batch` as text) and `metrics`, `kernels`,
`neurons` (the run's Parquet files, with run_id). DuckDB pushes filters on metric/layer/step and the column
choice down into the Parquet reads; `metric(where=...)` also prunes whole files by first selecting runs.

`runs` comes from an index of run.json files, cached as Parquet and keyed on each file's mtime and size, so
reopening a catalogue of 1,000 runs parses only the run.json files that changed. The cache lives in
$XDG_CACHE_HOME/dynamics/catalog/ (default ~/.cache), one file per folder, not in ROOT: catalogues of
bundled or read-only folders leave no trace there. `refresh()` picks up runs added or changed since. Only
directories that hold run.json count; hidden ones (a sweep's `.NAME.tmp-PID`) never do.
One Catalog is safe to share between threads: each query runs on its own DuckDB cursor.
"""
from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..runs import store
from ..config import RunConfig

__all__ = ["Catalog", "CatalogError", "catalog", "cache_path"]
_META = {"kind": pa.string(), "status": pa.string(), "steps_done": pa.int64(), "wall_seconds": pa.float64(),
         "created": pa.string(), "ran_on": pa.string(), "error": pa.string()}
_TEXT_FIELDS = ("trained", "batch")  # tuple / int-or-"full" in RunConfig: text columns here
_FILES = {"metrics": store.METRICS, "kernels": store.KERNELS, "neurons": store.NEURONS}
_CONFIG_TYPES = {f: (pa.string() if f in _TEXT_FIELDS else pa.int64() if isinstance(v, int)
                     else pa.float64() if isinstance(v, float) else pa.string())
                 for f, v in RunConfig().to_dict().items()}
_INTERNAL = ("_mtime_ns", "_size", "_files")


class CatalogError(ValueError):
    """A catalogue question cannot be answered as asked (unknown column, missing folder)."""


class Catalog:
    """DuckDB views over the runs under `root`; see the module docstring."""

    def __init__(self, root: str | Path, *, cache: bool | str | Path = True):
        """cache: True (the default place, see cache_path), False (no cache), or the index file to use."""
        import duckdb
        self.root = Path(root)
        if not self.root.is_dir():
            raise CatalogError(f"{self.root} is not a folder; pass the folder that holds the run directories")
        self._cache = cache_path(self.root) if cache is True else Path(cache) if cache else None
        self.con = duckdb.connect()
        self.con.execute("SET GLOBAL parquet_metadata_cache = true")  # warm queries: footers read once
        self._index: pa.Table | None = None
        self.refresh()

    # --- the run index ----------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Rescan root; re-read only changed run.json files; rebuild the views. True when anything changed."""
        seen = _scan(self.root)
        old = self._index if self._index is not None else self._load_cache()
        rows_old = {r["run_id"]: r for r in old.to_pylist()} if old is not None else {}
        rows, changed = [], old is None or len(rows_old) != len(seen)
        for run_id, (mtime, size, files) in seen.items():
            r = rows_old.get(run_id)
            if r is None or r["_mtime_ns"] != mtime or r["_size"] != size or r["_files"] != files:
                r, changed = _row(self.root / run_id, mtime, size, files), True
            rows.append(r)
        if not changed and self._index is not None:
            return False
        self._index = _table(rows)
        if changed and self._cache is not None:
            try:
                self._cache.parent.mkdir(parents=True, exist_ok=True)
                store.write_parquet_atomic(self._cache, self._index)
            except OSError:  # no writable cache folder: keep the index in memory only
                pass
        self._build_views()
        return True

    def _load_cache(self) -> pa.Table | None:
        if self._cache is None or not self._cache.is_file():
            return None
        try:
            t = pq.read_table(self._cache)
        except (pa.ArrowInvalid, OSError):
            return None
        return t if set(_INTERNAL) <= set(t.column_names) else None

    def _build_views(self) -> None:
        t = self._index
        self.con.execute("DROP TABLE IF EXISTS runs")
        self.con.register("_runs_arrow", t.drop_columns(list(_INTERNAL)))
        self.con.execute("CREATE TABLE runs AS SELECT * FROM _runs_arrow")
        self.con.unregister("_runs_arrow")
        for view, file in _FILES.items():
            has = [rid for rid, fs in zip(t.column("run_id").to_pylist(), t.column("_files").to_pylist())
                   if view[0] in fs]
            self.con.execute(f"CREATE OR REPLACE VIEW {view} AS {self._scan_sql(file, has)}")
            if view == "metrics":
                self._with_metrics = set(has)
        self.config_columns = [c for c in t.column_names if c in _CONFIG_TYPES or c.startswith("config.")]
        df = t.select(self.config_columns).to_pandas() if t.num_rows else pd.DataFrame()
        self.varying = [c for c in self.config_columns if t.num_rows and df[c].astype(str).nunique() > 1]

    def _scan_sql(self, file: str, run_ids: Sequence[str]) -> str:
        """SELECT over the given runs' `file` with run_id from the path; an empty relation when none."""
        if not run_ids:
            schema = store.METRICS_SCHEMA if file == store.METRICS else store._SCHEMAS[file]
            cols = ", ".join(f"NULL::{'VARCHAR' if pa.types.is_dictionary(f.type) else _duck(f.type)} AS {f.name}"
                             for f in schema)
            return f"SELECT NULL::VARCHAR AS run_id, {cols} WHERE false"
        paths = ", ".join(_quote(str(self.root / r / file)) for r in run_ids)
        stem = file.replace(".", r"\.")
        return (f"SELECT regexp_extract(filename, '([^/\\\\]+)[/\\\\]{stem}$', 1) AS run_id, * EXCLUDE (filename) "
                f"FROM read_parquet([{paths}], filename = true, union_by_name = true)")

    # --- questions --------------------------------------------------------------------------------
    @property
    def runs(self) -> pd.DataFrame:
        """One row per run (see the module docstring for the columns)."""
        return self.query("SELECT * FROM runs ORDER BY run_id")

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Any DuckDB SQL over the views runs, metrics, kernels, neurons -> DataFrame."""
        cur = self.con.cursor()
        try:
            return cur.execute(sql, params).df()
        finally:
            cur.close()

    def metric(self, name: str | Iterable[str], layers: int | Iterable[int] | None = None,
               steps: int | Iterable[int] | None = None, where: Mapping[str, Any] | None = None,
               config: Sequence[str] | None = None) -> pd.DataFrame:
        """Tidy rows (run_id, step, layer, metric, value[, stderr]) of the runs matching `where`
        ({field: value or [values]}), joined with config columns: `config`, or by default the fields that
        differ between the runs of this catalogue (a sweep's grid keys)."""
        cond, params = self._where(where)
        ids = [r[0] for r in self.con.cursor().execute(
            f"SELECT run_id FROM runs WHERE {cond} ORDER BY run_id", params).fetchall()]
        ids = [r for r in ids if r in self._with_metrics]
        cols = list(self.varying if config is None else config)
        self._check_columns(cols)
        filters, fparams = [], []
        for col, values in (("metric", name), ("layer", layers), ("step", steps)):
            if values is None:
                continue
            values = [values] if isinstance(values, (str, numbers.Integral)) else list(values)
            filters.append(f"{col} IN ({', '.join('?' * len(values))})")
            fparams += [int(v) if isinstance(v, numbers.Integral) else v for v in values]  # numpy ints too
        sql = (f"SELECT m.*{''.join(f', r.{_ident(c)}' for c in cols)} "
               f"FROM ({self._scan_sql(store.METRICS, ids)}) m JOIN runs r USING (run_id)"
               f"{' WHERE ' + ' AND '.join(filters) if filters else ''} ORDER BY run_id, metric, layer, step")
        return self.query(sql, fparams)

    def _where(self, where: Mapping[str, Any] | None) -> tuple[str, list]:
        if not where:
            return "true", []
        self._check_columns(list(where))
        parts, params = [], []
        for col, v in where.items():
            if v is None:
                parts.append(f"{_ident(col)} IS NULL")
            elif isinstance(v, (list, tuple, set, frozenset)):
                v = list(v)
                parts.append(f"{_ident(col)} IN ({', '.join('?' * len(v))})" if v else "false")
                params += v
            else:
                parts.append(f"{_ident(col)} = ?")
                params.append(v)
        return " AND ".join(parts), params

    def _check_columns(self, cols: Iterable[str]) -> None:
        known = [c for c in self._index.column_names if c not in _INTERNAL]
        bad = [c for c in cols if c not in known]
        if bad:
            raise CatalogError(f"unknown run column(s) {', '.join(bad)}; the runs view has {', '.join(known)}")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({str(self.root)!r}, {self._index.num_rows} runs)"


def catalog(root: str | Path, *, cache: bool | str | Path = True) -> Catalog:
    """Open the catalogue of the runs under `root` (a sweep's --out); see the module docstring."""
    return Catalog(root, cache=cache)


def cache_path(root: str | Path) -> Path:
    """Where the run index of `root` is cached: $XDG_CACHE_HOME/dynamics/catalog/<hash of the path>.parquet."""
    import hashlib
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return base / "dynamics" / "catalog" / f"{key}.parquet"


# --- helpers --------------------------------------------------------------------------------------------
def _scan(root: Path) -> dict[str, tuple[int, int, str]]:
    """run_id -> (run.json mtime_ns, size, initials of the Parquet files present) for each run directory."""
    out = {}
    with os.scandir(root) as it:
        for d in sorted(it, key=lambda e: e.name):
            if d.name.startswith(".") or not d.is_dir():
                continue
            try:
                st = os.stat(os.path.join(d.path, store.RUN_JSON))
            except OSError:
                continue
            files = "".join(v[0] for v, f in _FILES.items() if os.path.exists(os.path.join(d.path, f)))
            out[d.name] = (st.st_mtime_ns, st.st_size, files)
    return out


def _row(run_dir: Path, mtime: int, size: int, files: str) -> dict[str, Any]:
    row: dict[str, Any] = {"run_id": run_dir.name, "_mtime_ns": mtime, "_size": size, "_files": files}
    try:
        meta = store.read_meta(run_dir)
    except store.RunFormatError as e:
        return {**row, "status": "unreadable", "error": str(e)}
    row.update({k: meta.get(k) for k in _META if k != "ran_on"}, ran_on=meta.get("device"))
    for k, v in meta["config"].items():
        key = k if k in _CONFIG_TYPES else f"config.{k}"  # fields unknown to this version stay visible
        row[key] = (",".join(map(str, v)) if isinstance(v, list) else str(v)) if k in _TEXT_FIELDS else (
            json.dumps(v) if isinstance(v, (list, dict)) else v)
    return row


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    extra = sorted({k for r in rows for k in r} - set(_CONFIG_TYPES) - set(_META) - {"run_id", *_INTERNAL})
    types_ = {"run_id": pa.string(), "_mtime_ns": pa.int64(), "_size": pa.int64(), "_files": pa.string(),
              **_META, **_CONFIG_TYPES}
    cols = {}
    for name in ["run_id", *_META, *_CONFIG_TYPES, *extra, *_INTERNAL]:
        values = [r.get(name) for r in rows]
        typ = types_.get(name)
        try:
            cols[name] = pa.array(values, typ) if typ is not None else pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # e.g. an imported run's odd value
            cols[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(cols)


def _duck(t: pa.DataType) -> str:
    return {pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.float32(): "FLOAT"}.get(t, "DOUBLE")


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'
