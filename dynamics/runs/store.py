"""The run format (docs/training.md, "The run format"): write atomically, read only what is asked for, validate.

A run is a directory holding `run.json` (metadata and the full config), `metrics.parquet`
(step, layer, metric, value[, stderr]), `kernels.parquet` (step, layer, kind, i, j, value) and
`neurons.parquet` (step, layer, probe, quantile, value). Column names are the constants below, shared by
the writer, the reader, the importers and the figure builders. Every file is written to a temporary name
in the same directory and renamed, so a reader never sees half a file; a run killed midway keeps
`status: running` and the steps flushed so far stay readable; its heartbeat (host, pid, last update) lets
`liveness` show it as `stale` rather than running.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
KINDS = ("finite", "limit", "imported")
STATUSES = ("running", "complete", "diverged", "failed")

# column names: the one place they are spelled
STEP, LAYER, METRIC, VALUE, STDERR = "step", "layer", "metric", "value", "stderr"
KIND, I, J = "kind", "i", "j"
PROBE, QUANTILE = "probe", "quantile"
NETWORK_LAYER = -1  # layer value of network scalars (loss, probe_loss, grad_norm)

RUN_JSON, METRICS, KERNELS, NEURONS = "run.json", "metrics.parquet", "kernels.parquet", "neurons.parquet"

METRICS_SCHEMA = pa.schema([(STEP, pa.int32()), (LAYER, pa.int16()),
                            (METRIC, pa.dictionary(pa.int32(), pa.string())), (VALUE, pa.float64())])
KERNELS_SCHEMA = pa.schema([(STEP, pa.int32()), (LAYER, pa.int16()),
                            (KIND, pa.dictionary(pa.int32(), pa.string())),
                            (I, pa.int16()), (J, pa.int16()), (VALUE, pa.float64())])
NEURONS_SCHEMA = pa.schema([(STEP, pa.int32()), (LAYER, pa.int16()), (PROBE, pa.int16()),
                            (QUANTILE, pa.float32()), (VALUE, pa.float64())])
METRICS_SCHEMA_SE = METRICS_SCHEMA.append(pa.field(STDERR, pa.float64()))  # limit runs: Monte-Carlo error
_SCHEMAS = {METRICS: METRICS_SCHEMA, KERNELS: KERNELS_SCHEMA, NEURONS: NEURONS_SCHEMA}


class RunFormatError(ValueError):
    """A directory is not a readable run; the message says what is wrong and how to fix it."""


# --- atomic writes --------------------------------------------------------------------------------
def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(root: Path) -> Path:
    """Create `root` if needed and prove we can write there; raise RunFormatError with the reason."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunFormatError(f"cannot write to {root}: {e.strerror or e}; choose another --out") from None
    return root


_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}$")


def check_run_id(run_id: str) -> str:
    if not _SAFE_ID.match(run_id):
        raise RunFormatError(f"run name {run_id!r} must be 1-200 characters of letters, digits, . _ = + -")
    return run_id


# --- writing --------------------------------------------------------------------------------------
# records between two flushes at most for per-step recorders (the trainer, dynamics.record), besides every
# flush_seconds: a flush rewrites whole files, and flushing every 10 records cost 0.2–0.35 more in the
# recorded/unrecorded CPU-time ratio when recording every step at width 512, depth 32
RECORDING_FLUSH_RECORDS = 100


class RunWriter:
    """Accumulates rows in memory and flushes whole files atomically, with a heartbeat in run.json.

    Flushing rewrites each file, so `maybe_flush` throttles it: right after the first rows (a run killed early
    keeps its first record), then when `flush_seconds` have passed or `flush_records` calls brought new rows,
    and never more often than ten times the last flush's cost, which keeps the overhead under ~10%. Calling
    `maybe_flush` with nothing new still rewrites run.json every `flush_seconds`: run.json `heartbeat` = {host,
    pid, updated (UTC), every_seconds} says the writer is alive (`liveness` reads it).
    """

    def __init__(self, run_dir: Path, meta: dict[str, Any], flush_seconds: float = 30.0,
                 stderr: bool = False, flush_records: int = 10):
        """stderr=True adds the metrics column `stderr` (limit runs); add_metrics then needs it."""
        self.run_dir = Path(run_dir)
        self.meta = {"schema_version": SCHEMA_VERSION, "status": "running", **meta,
                     "heartbeat": {"host": socket.gethostname(), "pid": os.getpid(), "updated": _now(),
                                   "every_seconds": flush_seconds}}
        self._schemas = {**_SCHEMAS, METRICS: METRICS_SCHEMA_SE if stderr else METRICS_SCHEMA}
        self._rows: dict[str, dict[str, list[np.ndarray]]] = {
            name: {f.name: [] for f in schema} for name, schema in self._schemas.items()}
        self._dirty: set[str] = set()
        self._flush_seconds = flush_seconds
        self._flush_records, self._pending, self._flushed_rows = flush_records, 0, False
        self._last_flush = time.monotonic()
        self._flush_cost = 0.0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.run_dir / RUN_JSON, self.meta)

    def add(self, file: str, **columns: Any) -> None:
        """Append rows to one file: each column an array (or scalar, broadcast) of the same length."""
        arrays = {k: np.asarray(v) for k, v in columns.items()}
        n = max((a.size for a in arrays.values()), default=0)
        bucket = self._rows[file]
        if set(arrays) != set(bucket):  # checked before appending anything, so a bad call changes nothing
            raise KeyError(f"{file} takes columns {sorted(bucket)}; got {sorted(arrays)}")
        for name in bucket:
            a = arrays[name]
            bucket[name].append(np.broadcast_to(a.reshape(-1) if a.ndim else a, (n,)).copy())
        self._dirty.add(file)

    def add_metrics(self, step: int, layer: Any, metric: str, value: Any, stderr: Any = None) -> None:
        extra = {} if stderr is None else {STDERR: stderr}
        self.add(METRICS, step=step, layer=layer, metric=metric, value=value, **extra)

    def table(self, file: str) -> pa.Table:
        schema = self._schemas[file]
        cols = []
        for f in schema:
            parts = self._rows[file][f.name]
            arr = np.concatenate(parts) if parts else np.array([], dtype=object if
                                                                 pa.types.is_dictionary(f.type) else None)
            if pa.types.is_dictionary(f.type):
                cols.append(pa.array(arr.astype(str), pa.string()).dictionary_encode())
            elif f.name == STEP and arr.size and int(arr.max()) > 2 ** 31 - 1:  # e.g. tokens seen as the step
                schema = schema.set(schema.get_field_index(STEP), pa.field(STEP, pa.int64()))
                cols.append(pa.array(arr, pa.int64()))
            else:
                cols.append(pa.array(arr, f.type))
        return pa.Table.from_arrays(cols, schema=schema)

    def flush(self) -> None:
        t0 = time.monotonic()
        if self._dirty:
            self._flushed_rows = True
        for file in sorted(self._dirty):
            write_parquet_atomic(self.run_dir / file, self.table(file))
        self._dirty.clear()
        self._pending = 0
        self.meta["heartbeat"] = {**self.meta.get("heartbeat", {}), "updated": _now()}
        write_json_atomic(self.run_dir / RUN_JSON, self.meta)
        self._last_flush = time.monotonic()
        self._flush_cost = self._last_flush - t0

    def maybe_flush(self) -> None:
        """Flush if due (see the class docstring); cheap to call every training step."""
        since = time.monotonic() - self._last_flush
        if self._dirty:
            self._pending += 1
        first = bool(self._dirty) and not self._flushed_rows
        many = self._pending >= self._flush_records and since >= 10 * self._flush_cost
        if first or many or since >= max(self._flush_seconds, 10 * self._flush_cost):
            self.flush()

    def finish(self, status: str, **extra: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        self.meta.update(status=status, **extra)
        self._dirty.update(self._schemas)  # always leave all three files, even if empty
        self.flush()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


STALE_PERIODS, STALE_MIN_SECONDS = 3, 120.0


def liveness(meta: dict[str, Any], now: datetime | None = None) -> str:
    """The status to show: `stale` for a `running` run whose writer stopped, else the status as recorded.

    Stale: the heartbeat's pid is gone on this host, or (another host) no update for STALE_PERIODS flush
    periods (at least STALE_MIN_SECONDS). A run without a heartbeat (older files) stays `running`."""
    status = str(meta.get("status"))
    hb = meta.get("heartbeat")
    if status != "running" or not isinstance(hb, dict):
        return status
    if hb.get("host") == socket.gethostname() and isinstance(hb.get("pid"), int) and os.name == "posix":
        return "running" if _alive(hb["pid"]) else "stale"
    try:
        updated = datetime.fromisoformat(str(hb.get("updated")))
        every = float(hb.get("every_seconds", 30.0))
    except (TypeError, ValueError):
        return status
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=timezone.utc)
    age = ((now or datetime.now(timezone.utc)) - updated).total_seconds()
    return "stale" if age > max(STALE_PERIODS * every, STALE_MIN_SECONDS) else "running"


def _alive(pid: int) -> bool:
    """Whether a process of that id exists here (signal 0 checks without sending; POSIX only)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# --- reading --------------------------------------------------------------------------------------
def read_meta(run_dir: Path) -> dict[str, Any]:
    """run.json, checked: raise RunFormatError naming the problem."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_JSON
    if not run_dir.is_dir():
        raise RunFormatError(f"{run_dir} is not a directory; pass a run directory (one holding run.json)")
    if not path.is_file():
        raise RunFormatError(f"{run_dir} has no run.json; it is not a run directory")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFormatError(f"{path} is not valid JSON ({e}); the run is damaged") from None
    if not isinstance(meta, dict):
        raise RunFormatError(f"{path} must hold a JSON object")
    missing = [k for k in ("schema_version", "run_id", "kind", "status", "config") if k not in meta]
    if missing:
        raise RunFormatError(f"{path} lacks field(s) {', '.join(missing)}")
    if not isinstance(meta["schema_version"], int) or meta["schema_version"] > SCHEMA_VERSION:
        raise RunFormatError(f"{path} has schema_version {meta['schema_version']!r}; this version of dynamics "
                             f"reads up to {SCHEMA_VERSION}: upgrade dynamics")
    if meta["kind"] not in KINDS:
        raise RunFormatError(f"{path}: kind {meta['kind']!r} is not one of {', '.join(KINDS)}")
    if not isinstance(meta["config"], dict):
        raise RunFormatError(f"{path}: config must be a JSON object")
    meta["path"] = str(run_dir)
    return meta


def _read(run_dir: Path, file: str, columns: Sequence[str] | None, filters: list | None) -> pd.DataFrame:
    path = Path(run_dir) / file
    if not path.is_file():
        raise RunFormatError(f"{run_dir} has no {file}; the run has not recorded anything yet")
    try:
        table = pq.read_table(path, columns=list(columns) if columns else None, filters=filters or None)
    except (pa.ArrowInvalid, OSError) as e:
        raise RunFormatError(f"{path} is not a readable Parquet file ({e})") from None
    except (KeyError, ValueError) as e:
        raise RunFormatError(f"{path}: {e}") from None
    df = table.to_pandas()
    for col in (METRIC, KIND):
        if col in df and isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype(str)
    return df


def _filters(**kw: Iterable | None) -> list:
    out = []
    for col, values in kw.items():
        if values is not None:
            out.append((col, "in", list(values)))
    return out


def read_metrics(run_dir: Path, metrics: Iterable[str] | None = None, layers: Iterable[int] | None = None,
                 steps: Iterable[int] | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of metrics.parquet, pruned on read by metric, layer and step (pyarrow filters)."""
    return _read(run_dir, METRICS, columns,
                 _filters(metric=metrics, layer=layers, step=steps))


def read_kernels(run_dir: Path, kinds: Iterable[str] | None = None, layers: Iterable[int] | None = None,
                 steps: Iterable[int] | None = None) -> pd.DataFrame:
    return _read(run_dir, KERNELS, None, _filters(kind=kinds, layer=layers, step=steps))


def read_neurons(run_dir: Path, layers: Iterable[int] | None = None,
                 steps: Iterable[int] | None = None) -> pd.DataFrame:
    return _read(run_dir, NEURONS, None, _filters(layer=layers, step=steps))


def kernel_matrix(df: pd.DataFrame) -> np.ndarray:
    """A kernels frame for one (step, layer, kind) -> the P×P matrix."""
    p = int(max(df[I].max(), df[J].max())) + 1
    out = np.full((p, p), np.nan)
    out[df[I].to_numpy(), df[J].to_numpy()] = df[VALUE].to_numpy()
    return out


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Metadata of every readable run directly under `root` (unreadable ones get an `error` entry)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (d / RUN_JSON).exists():
            continue
        try:
            out.append(read_meta(d))
        except RunFormatError as e:
            out.append({"run_id": d.name, "path": str(d), "error": str(e)})
    return out
