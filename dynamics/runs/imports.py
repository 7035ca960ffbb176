"""User logs -> the run format: `import_file(FILE, OUT)` and `python -m dynamics import FILE --out DIR`.

Formats (detected from the bytes first, the file name second):
  run-zip   a zipped run directory of ours: run.json, metrics.parquet [, kernels.parquet, neurons.parquet],
            at the top of the zip or inside one folder;
  parquet   our metrics.parquet (step, layer, metric, value[, stderr]), alone or with a run.json beside it;
  csv       a long CSV with columns step, layer, metric, value [, stderr];
  wandb     a W&B history export (CSV or Parquet): one row per `_step`, one column per logged key, or a W&B
            chart "Export CSV" (`Step`, `<run> - <key>`); other step columns by `step_column`
            (dynamics.runs.wandb);
  tfevents  a TensorBoard event file (dynamics.runs.tfevents_fast reads it in chunks; no TensorFlow needed), a
            log folder of them or a zip of one (merged: dynamics.runs.tbfolder). Recognised by content too.
A config comes from --config JSON, else a sidecar FILE.json (e.g. log.csv.json) or FILE-without-suffix.json,
else run.json beside our Parquet; it may be a bare config object or a whole run.json. Without one, the config
is {"depth": largest layer index} (the pages need config.depth).

Naming rule (TensorBoard tags and W&B columns): `layer_<ℓ>/<metric>` (also `layer<ℓ>/…`, `layer-<ℓ>/…`) and
`<metric>/<ℓ>` (also `<metric>/layer_<ℓ>`) are the per-layer metric <metric> at layer ℓ; the whole name must
match, so `train/h_sq/3` does not. Every other name is a network scalar at layer −1 under its own name
(`loss`, `train/acc`). Use the names of dynamics.metrics (h_sq, g_sq, …) to get the pages' captions.
W&B columns starting with `_` (`_runtime`, `_timestamp`) and wholly non-numeric columns are skipped; empty
cells mean "not logged at that step". In event files, a (tag, step) logged twice keeps the later value (a
resumed run); everything that is not a scalar is skipped. Every skip is listed in run.json `skipped`.

Safety: limits (class Limits) are checked before parsing; zip entries are read into memory by name (no
extraction, no links, no absolute or `..` paths, only the four run files); nothing is unpickled or evaluated.
The run is written into a hidden temporary sibling folder and renamed at the end, so a rejected file leaves
nothing behind. Every rejection is a RunImportError whose message is one line naming the problem.
"""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import store
from .store import KERNELS, LAYER, METRIC, METRICS, NEURONS, RUN_JSON, STDERR, STEP, VALUE
from .import_bounds import MB, Limits, zip_entry as _entry
from .import_checks import NAN_TEXT, RunImportError, check_config, check_grid, check_table
from .import_checks import fail as _fail, line as _line, numbers as _numbers, row as _row
from . import tbfolder, wandb
from .tfevents import looks_like_events

__all__ = ["RunImportError", "Limits", "Imported", "import_file", "split_name", "register", "FORMATS"]

FORMATS = ("run-zip", "parquet", "csv", "wandb", "tfevents")
RUN_FILES = (RUN_JSON, METRICS, KERNELS, NEURONS)


@dataclass
class Imported:
    run_dir: Path
    meta: dict[str, Any] = field(repr=False)

    @property
    def summary(self) -> dict[str, Any]:
        return self.meta["summary"]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return self.meta["skipped"]


# --- the naming rule -------------------------------------------------------------------------------------
_LAYER_FIRST = re.compile(r"^layer[_-]?(\d{1,9})/([^/]+)$")
_METRIC_FIRST = re.compile(r"^([^/]+)/(?:layer[_-]?)?(\d{1,9})$")


def split_name(name: str) -> tuple[int, str]:
    """`layer_7/h_sq` or `h_sq/7` -> (7, "h_sq"); anything else -> (-1, name) (a network scalar)."""
    if m := _LAYER_FIRST.match(name):
        return int(m.group(1)), m.group(2)
    if m := _METRIC_FIRST.match(name):
        return int(m.group(2)), m.group(1)
    return store.NETWORK_LAYER, name


# --- readers: bytes -> frames ----------------------------------------------------------------------------
@dataclass
class _Parsed:
    fmt: str
    frames: dict[str, tuple[pd.DataFrame, Any]]  # file -> (frame, where)
    meta: dict[str, Any] = field(default_factory=dict)  # an original run.json, if any
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, what: str, why: str) -> None:
        self.skipped.append({"what": what, "why": why})


# columns a long table (metrics, kernels, neurons) may use; a table without `_step` reads only these
_LONG_COLUMNS = (STEP, LAYER, METRIC, VALUE, STDERR, "kind", "i", "j", "probe", "quantile")
_TEXT_COLUMNS = (METRIC, "kind")  # read dictionary-encoded: one Python string per distinct name, not per row


def _parquet(data: bytes, limits: Limits, label: str) -> pd.DataFrame:
    """Parquet bytes -> a frame, after checking the footer's metadata: rows, columns, rows × columns read
    (limits.max_cells) and the uncompressed bytes of the columns read (limits.max_decoded_bytes). Without a
    W&B `_step` column only the run-format columns are read (the others are named in df.attrs["unread"])."""
    if data[:4] != b"PAR1":
        raise _fail(f"{label} is not a Parquet file (no PAR1 magic at the start)")
    if len(data) < 12 or data[-4:] != b"PAR1":
        raise _fail(f"{label} is a truncated Parquet file (no PAR1 footer at the end)")
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        md = pf.metadata
        if md.num_rows > limits.max_rows or md.num_columns > limits.max_columns:
            raise _fail(f"{label} is too large: {md.num_rows} rows × {md.num_columns} columns (limits: "
                        f"{limits.max_rows} rows, {limits.max_columns} columns)")
        names = [pf.schema_arrow.field(i).name for i in range(len(pf.schema_arrow))]
        wide = "_step" in names
        read = names if wide else [n for n in names if n.strip() in _LONG_COLUMNS]
        if md.num_rows * max(len(read), 1) > limits.max_cells:
            raise _fail(f"{label} is too large: {md.num_rows} rows × {len(read)} columns to read = "
                        f"{md.num_rows * len(read)} cells (limit {limits.max_cells})")
        wanted = [j for j in range(md.num_columns) if md.schema.column(j).path.split(".")[0] in set(read)]
        decoded = sum(max(md.row_group(g).column(j).total_uncompressed_size, 0)
                      for g in range(md.num_row_groups) for j in wanted)
        if decoded > limits.max_decoded_bytes:
            raise _fail(f"{label} is too large once decoded: {decoded / MB:.0f} MB uncompressed in the columns "
                        f"read (limit {limits.max_decoded_bytes / MB:.0f} MB)")
        if text := [c for c in _TEXT_COLUMNS if c in read]:
            pf = pq.ParquetFile(pa.BufferReader(data), read_dictionary=text)
        df = pf.read(columns=read, use_pandas_metadata=False).to_pandas(
            strings_to_categorical=False, ignore_metadata=True, self_destruct=True)
    except RunImportError:
        raise
    except MemoryError:  # the sandbox's memory bound: reported as such, not as a damaged file
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError, OverflowError, KeyError) as e:
        raise _fail(f"{label} is not a readable Parquet file ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})") from None
    df.columns = [str(c).strip() for c in df.columns]
    df.attrs["unread"] = [n for n in names if n not in read]
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(object)
    return df


def _csv(data: bytes, limits: Limits) -> pd.DataFrame:
    """CSV bytes -> a frame of text cells; without a W&B `_step` column only the run-format columns are read
    (the others are named in df.attrs["unread"]); rows × columns read is bounded by limits.max_cells."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _fail(f"not UTF-8 text (bad byte at offset {e.start}); export the CSV as UTF-8") from None
    if "\x00" in text:
        raise _fail("not a text file (it holds NUL bytes)")
    header = next(csv.reader([text.split("\n", 1)[0]]), [])
    names = [h.strip() for h in header]
    lines = text.count("\n")
    if len(names) > limits.max_columns or lines > limits.max_rows:
        raise _fail(f"CSV too large: {len(names)} columns, {lines} lines (limits: "
                    f"{limits.max_columns} columns, {limits.max_rows} rows)")
    if dups := sorted({n for n in names if names.count(n) > 1}):
        raise _fail(f"duplicate CSV column name(s): {', '.join(dups)}")
    read = names if "_step" in names else [n for n in names if n in _LONG_COLUMNS]
    if lines * max(len(read), 1) > limits.max_cells:
        raise _fail(f"CSV too large: {lines} lines × {len(read)} columns to read = {lines * len(read)} cells "
                    f"(limit {limits.max_cells})")
    keep = [i for i, n in enumerate(names) if n in set(read)] or None
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, engine="c",
                         usecols=keep if keep and len(keep) < len(names) else None)
    except pd.errors.EmptyDataError:
        raise _fail("empty CSV file (no header line)") from None
    except MemoryError:
        raise
    except (pd.errors.ParserError, ValueError, csv.Error, OverflowError) as e:
        if "out of memory" in str(e):  # pandas' C tokenizer under the sandbox's memory bound
            raise MemoryError(str(e)) from None
        raise _fail(f"not a readable CSV file ({str(e).strip().splitlines()[-1][:200] if str(e).strip() else 'parse error'})") from None
    del text
    df.columns = [str(c).strip() for c in df.columns]
    df.attrs["unread"] = [n for n in names if n not in set(read)]
    return df


def _long(df: pd.DataFrame, p: _Parsed, where) -> None:
    extra = [c for c in df.columns if c not in (STEP, LAYER, METRIC, VALUE, STDERR)]
    for c in [*extra, *df.attrs.get("unread", [])]:
        p.skip(f"column {c}", "not one of step, layer, metric, value, stderr")
    p.frames[METRICS] = (df.drop(columns=extra), where)


def _wide(df: pd.DataFrame, p: _Parsed, limits: Limits, where, step: str = "_step") -> None:
    """A wide table (W&B history: one row per step, one column per key; dynamics.runs.wandb) -> long rows;
    empty cells are steps where a key was not logged; a key logged twice at one step keeps the later row."""
    steps = df[step]
    parts = []
    for c in df.columns:
        if c == step:
            continue
        if c.startswith("_"):
            p.skip(f"column {c}", "W&B bookkeeping column")
            continue
        s = df[c]
        if s.dtype.kind not in "biuf":
            text = s.astype(str).str.strip()
            numeric = pd.to_numeric(text.where(~text.isin(NAN_TEXT)), errors="coerce")
            if numeric.isna().all() and not text.isin(NAN_TEXT).all():
                p.skip(f"column {c}", "not numeric (media, text or tables are not imported)")
                continue
        x = _numbers(s, c, where)
        keep = ~np.isnan(x)
        layer, metric = split_name(c)
        parts.append(pd.DataFrame({STEP: steps[keep].to_numpy(), LAYER: layer, METRIC: metric, VALUE: x[keep],
                                   "_row": np.flatnonzero(keep)}))
    if not parts:
        raise _fail(f"the table has no numeric metric columns besides its step column {step} (found: "
                    f"{', '.join(map(str, df.columns[:12]))})")
    long = pd.concat(parts, ignore_index=True)
    if len(long) > limits.max_rows:
        raise _fail(f"too many values: {len(long)} (limit {limits.max_rows} rows)")
    if step != "_step":  # _step is unique per row; another step column may repeat (train and val rows)
        again = long.assign(_s=pd.to_numeric(long[STEP].astype(str), errors="coerce")).sort_values(
            "_row", kind="stable").duplicated(["_s", LAYER, METRIC], keep="last")
        if (n := int(again.sum())):
            p.skip(f"{n} earlier value(s) of a (key, {step})", "logged again in a later row: the later is kept")
            long = long[~again.reindex(long.index).to_numpy()].reset_index(drop=True)
    rows = long.pop("_row").to_numpy()
    p.frames[METRICS] = (long, lambda i: where(rows[i]))


def _tfevents(blobs: list[tuple[str, Any]], p: _Parsed, limits: Limits) -> None:
    """One or more event files (a folder's, in merge order; bytes or paths read in chunks) -> long rows (merge
    rules: dynamics.runs.tbfolder). The naming rule runs once per distinct tag; metric names stay categorical."""
    df = tbfolder.merge(blobs, limits.max_rows, p.skip)
    if len(blobs) > 1:
        p.meta["merged_files"] = [n for n, _ in blobs]  # the merge order, kept in run.json
    tag = df.pop("tag")
    codes = tag.cat.codes.to_numpy()
    names = [split_name(t) for t in tag.cat.categories]
    metrics = sorted({m for _, m in names})
    m_code = {m: i for i, m in enumerate(metrics)}
    df[LAYER] = np.array([ell for ell, _ in names], dtype=np.int64)[codes]
    df[METRIC] = pd.Categorical.from_codes(np.array([m_code[m] for _, m in names], dtype=np.int32)[codes], metrics)
    p.frames[METRICS] = (df, lambda i: f"scalar {i} (tag {tag.iloc[i]!r})")


def _zip(data: bytes, p: _Parsed, limits: Limits) -> None:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError) as e:
        raise _fail(f"not a readable zip file ({e})") from None
    if len(infos) > limits.max_zip_entries:
        raise _fail(f"zip has {len(infos)} entries (limit {limits.max_zip_entries}); zip one run directory")
    if (total := sum(i.file_size for i in infos)) > limits.max_unzipped_bytes:
        raise _fail(f"zip too large: {total} bytes uncompressed (limit {limits.max_unzipped_bytes})")
    wanted: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        mode = info.external_attr >> 16
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name or \
                ".." in name.split("/") or "\x00" in name:
            raise _fail(f"zip entry {name!r} has an unsafe path (absolute, drive, backslash or '..')")
        if stat.S_ISLNK(mode) or (stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR)):
            raise _fail(f"zip entry {name!r} is a link or special file; zip plain files only")
        parts = [q for q in name.split("/") if q]
        if info.is_dir() or not parts:
            continue
        if parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
            p.skip(f"zip entry {name}", "operating-system metadata")
            continue
        if len(parts) > 2 or parts[-1] not in RUN_FILES:
            raise _fail(f"unexpected zip entry {name!r}; a zipped run holds only {', '.join(RUN_FILES)}, "
                        f"at the top or in one folder")
        if parts[-1] in wanted:
            raise _fail(f"zip holds {parts[-1]} twice ({wanted[parts[-1]].filename}, {name})")
        wanted[parts[-1]] = info
    if len({i.filename.rsplit("/", 1)[0] if "/" in i.filename else "" for i in wanted.values()}) > 1:
        raise _fail("zip holds run files in more than one folder; zip one run directory")
    for need in (RUN_JSON, METRICS):
        if need not in wanted:
            raise _fail(f"zip has no {need}; zip a run directory (run.json and metrics.parquet)")
    blobs = {name: _entry(zf, info, limits) for name, info in wanted.items()}
    p.meta = _json(blobs[RUN_JSON], RUN_JSON)
    for name in (METRICS, KERNELS, NEURONS):
        if name in blobs:
            p.frames[name] = (_parquet(blobs[name], limits, name), _row)


def _json(blob: bytes, label: str) -> dict[str, Any]:
    try:
        obj = json.loads(blob.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _fail(f"{label} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise _fail(f"{label} must hold a JSON object")
    return obj


# --- the whole import ------------------------------------------------------------------------------------
def _detect(name: str, data: bytes) -> str:
    """The format from the bytes (zip, Parquet and event-file magic; text with commas is CSV), then the name."""
    low = name.lower()
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "tb-zip" if tbfolder.zip_holds_events(data) else "run-zip"
    if data[:4] == b"PAR1" or low.endswith(".parquet"):
        return "parquet"
    if "tfevents" in low or looks_like_events(data):
        return "tfevents"
    if low.endswith(".zip"):
        raise _fail(f"{name} is not a zip file (no PK header)")
    if low.endswith(".json"):
        raise _fail(f"{name}: a JSON file alone is not a run; give it as the config sidecar (--config) of a "
                    f"CSV or Parquet file")
    if low.endswith((".csv", ".txt")) or _texty(data):
        return "csv"
    raise _fail(f"unsupported format: {name} is not a zip, Parquet, CSV or TensorBoard event file (found "
                f"{'no data' if not data else 'first bytes ' + repr(data[:8])}); expected a zipped run or log "
                f"folder, a .parquet, a .csv with a header line, or events.out.tfevents.*")


def _texty(data: bytes) -> bool:
    """A renamed CSV: UTF-8 text without NUL whose first line holds a comma."""
    head = data[:4096]
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        text = head[:e.start].decode("utf-8-sig", "ignore") if e.start > len(head) - 4 else ""
    return bool(text) and "\x00" not in text and "," in text.split("\n", 1)[0]


def _sidecar(path: Path, config: Any, fmt: str, limits: Limits) -> tuple[dict | None, str | None]:
    if isinstance(config, dict):
        return config, "given"
    candidates = [Path(config)] if config else [Path(f"{path}.json"), path.with_suffix(".json")]
    if not config and fmt == "parquet":
        candidates.append(path.with_name(RUN_JSON))
    for c in candidates:
        if c.is_file() and c != path:
            if c.stat().st_size > limits.max_bytes // 100:
                raise _fail(f"config file {c.name} too large ({c.stat().st_size} bytes)")
            return _json(c.read_bytes(), c.name), c.name
        if config:
            raise _fail(f"config file {c} not found")
    return None, None


def import_file(path: str | Path, out: str | Path, *, name: str | None = None, config: Any = None,
                limits: Limits = Limits(), source_name: str | None = None,
                step_column: str | None = None) -> Imported:
    """Read FILE (format detected), validate it, and write OUT/NAME as a complete run of kind `imported`.

    config: a dict, or the path of a JSON file (a config object or a whole run.json); default: a sidecar.
    source_name: the file name to record and detect by (the upload page's original name). A directory is a
    TensorBoard log folder (dynamics.runs.tbfolder). step_column: the column of a wide table (W&B history,
    e.g. `trainer/global_step`) or long table that holds the step; default `_step`, `Step` or `step`
    (dynamics.runs.wandb). Raises RunImportError (one line) and leaves nothing under OUT when the file is
    rejected.
    """
    path = Path(path)
    label = source_name or path.name
    if path.is_dir():  # a TensorBoard log folder: all its event files, merged (dynamics.runs.tbfolder)
        if step_column is not None:
            raise _fail(f"--step-column applies to CSV and Parquet tables; {label} is a TensorBoard log folder "
                        f"(its events carry their own steps)")
        blobs, skipped = tbfolder.folder_events(path, limits.max_bytes)
        return _events_run(blobs, skipped, path, config, limits, out, name or _folder_name(path.resolve()))
    try:
        size = path.stat().st_size
    except OSError as e:
        raise _fail(f"cannot read {path}: {e.strerror or e}") from None
    if size > limits.max_bytes:
        raise _fail(f"{label} is too large: {size / MB:.1f} MB (limit {limits.max_bytes / MB:.0f} MB)")
    if _head_is_events(path, label):  # an event file is read in chunks, never whole (dynamics.runs.tfevents_fast)
        if step_column is not None:
            raise _fail(f"--step-column applies to CSV and Parquet tables; {label} is tfevents (it carries its "
                        f"own steps)")
        p = _Parsed("tfevents", {})
        _tfevents([(label, path)], p, limits)
        name = name or (_folder_name(path.resolve().parent) if source_name is None and
                        tbfolder.is_event_name(label) else None)
        return _finish(p, path, config, limits, out, name, label, tbfolder.digest([path]))
    data = path.read_bytes()
    fmt = _detect(label, data)
    if step_column is not None and fmt not in ("csv", "parquet"):
        raise _fail(f"--step-column applies to CSV and Parquet tables; {label} is {fmt} (it carries its own "
                    f"steps)")
    if fmt == "tb-zip":
        blobs, skipped = tbfolder.zip_events(data, limits.max_bytes, limits.max_unzipped_bytes)
        return _events_run(blobs, skipped, path, config, limits, out, name or _default_name(label), label)
    p = _Parsed(fmt, {})
    if fmt == "run-zip":
        _zip(data, p, limits)
    else:  # (event files took the chunked path above)
        df = _parquet(data, limits, label) if fmt == "parquet" else _csv(data, limits)
        where = _row if fmt == "parquet" else _line
        df, step = wandb.shape(df, p, step_column)
        if step is not None:
            _wide(df, p, limits, where, step)
        else:
            _long(df, p, where)
    return _finish(p, path, config, limits, out, name, label, tbfolder.digest([data]))


def _finish(p: _Parsed, path: Path, config, limits: Limits, out, name, label, digest) -> Imported:
    """Config (given, sidecar or run.json), table checks, then the atomic write."""
    cfg, cfg_source = _sidecar(path, config, p.fmt, limits)
    if cfg is not None and isinstance(cfg.get("config"), dict):  # a whole run.json
        p.meta, cfg = {**cfg, **p.meta}, cfg["config"]
    tables = {f: check_table(df, f, limits.max_layers, where) for f, (df, where) in p.frames.items()}
    check_grid(tables[METRICS], limits.max_steps, limits.max_grid)
    if (cfg := cfg if cfg is not None else p.meta.get("config")) is not None:
        cfg = check_config(cfg, int(tables[METRICS].column(LAYER).to_numpy().max()), limits.max_layers)
    return _write(p, tables, cfg, cfg_source, out, name, label, digest)


def _events_run(blobs, skipped, path: Path, config, limits: Limits, out, name: str, label: str | None = None
                ) -> Imported:
    """A folder's (or zipped folder's) event files -> one run, as import_file does for one file."""
    p = _Parsed("tfevents", {}, skipped=list(skipped))
    _tfevents(blobs, p, limits)
    cfg, cfg_source = _sidecar(path, config, p.fmt, limits) if config is not None or not path.is_dir() else (None, None)
    if cfg is not None and isinstance(cfg.get("config"), dict):
        p.meta, cfg = {**cfg, **p.meta}, cfg["config"]
    tables = {f: check_table(df, f, limits.max_layers, where) for f, (df, where) in p.frames.items()}
    return _write(p, tables, cfg, cfg_source, out, name, label or f"{path.name}/", tbfolder.digest([b for _, b in blobs]))


def _head_is_events(path: Path, label: str) -> bool:
    """The format check of _detect on the first bytes only, true when it says tfevents."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    try:
        return _detect(label, head) == "tfevents"
    except RunImportError:
        return False


def _folder_name(folder: Path) -> str:
    """The default run name of a log folder: its own name (`runs/exp1` -> exp1)."""
    return _default_name(folder.name) if folder.name else "imported"


def _summary(t: pa.Table) -> dict[str, Any]:
    """What was understood: counts and ranges of steps and layers, per-layer metrics and network scalars."""
    df = t.select([STEP, LAYER, METRIC]).to_pandas()
    df[METRIC] = df[METRIC].astype(str)
    steps, layers = np.sort(df[STEP].unique()), np.sort(df[LAYER].unique())
    net = df[LAYER] == store.NETWORK_LAYER
    return {"rows": t.num_rows, "steps": len(steps), "step_range": [int(steps[0]), int(steps[-1])],
            "layers": int((layers >= 0).sum()), "layer_range": [int(layers[0]), int(layers[-1])],
            "per_layer_metrics": sorted(df.loc[~net, METRIC].unique()),
            "network_scalars": sorted(df.loc[net, METRIC].unique())}


def _write(p: _Parsed, tables: dict[str, pa.Table], cfg: Any, cfg_source: str | None, out, name, label,
           digest: tuple[int, str]) -> Imported:
    summary = _summary(tables[METRICS])
    top = summary["layer_range"][1]
    if cfg is None:
        cfg, cfg_source = {"depth": max(top, 1)}, "inferred"
        p.skip("config", f"none given: depth = {max(top, 1)} inferred from the largest layer index")
    if not isinstance(cfg, dict):
        raise _fail("the config must be a JSON object")
    depth = cfg.get("depth", max(top, 1))
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1 or depth < top:
        raise _fail(f"config depth {depth!r} must be a positive integer at least the largest layer index {top}")
    cfg = {**cfg, "depth": depth}
    run_id = store.check_run_id(name or _default_name(label))
    root = store.check_writable(Path(out))
    final = root / run_id
    if final.exists():
        raise _fail(f"run {run_id} already exists in {root}; pass --name NEW")
    orig = {k: p.meta[k] for k in ("run_id", "kind", "status", "created") if k in p.meta}
    meta = {**{k: v for k, v in p.meta.items() if k not in ("path", "error")},
            "schema_version": store.SCHEMA_VERSION, "run_id": run_id, "kind": "imported",
            "status": orig.get("status") if orig.get("status") in ("complete", "diverged", "failed") else "complete",
            "config": cfg, "config_source": cfg_source,
            "source": {"file": label, "format": p.fmt, "bytes": digest[0], "sha256": digest[1],
                       **({"original": orig} if orig else {})},
            "skipped": p.skipped, "summary": summary,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    tmp = Path(tempfile.mkdtemp(prefix=f".import-{run_id[:40]}-", dir=root))
    try:
        for f, schema in ((METRICS, None), (KERNELS, store.KERNELS_SCHEMA), (NEURONS, store.NEURONS_SCHEMA)):
            store.write_parquet_atomic(tmp / f, tables[f] if f in tables else schema.empty_table())
        store.write_json_atomic(tmp / RUN_JSON, meta)
        tmp.rename(final)
    except OSError as e:
        raise _fail(f"cannot write the run to {final}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Imported(final, meta)


def _default_name(label: str) -> str:
    stem = re.sub(r"\.(zip|parquet|csv|txt)$", "", label, flags=re.I)
    stem = re.sub(r"[^A-Za-z0-9._=+-]+", "-", stem).lstrip("._=+-")[:200]
    return stem or "imported"


# --- the CLI ---------------------------------------------------------------------------------------------
def register(sub) -> None:
    """Add `import FILE --out DIR [--name N] [--config JSON] [--max-mb MB]` to the CLI's subparsers."""
    c = sub.add_parser("import", help="turn your own logs (zip, Parquet, CSV, W&B, TensorBoard) into a run",
                       description="Import a zipped run, our metrics.parquet, a long CSV (step, layer, metric, "
                                   "value), a W&B history export or a TensorBoard event file as a run of kind "
                                   "'imported' under OUT. Naming rule for tags/columns: see README.")
    c.add_argument("file", help="the file (or TensorBoard log folder) to import")
    c.add_argument("--out", required=True, help="folder that receives the run directory")
    c.add_argument("--name", help="run directory name (default: from the file name)")
    c.add_argument("--config", help="JSON file with the config (or a whole run.json); default: FILE.json")
    c.add_argument("--step-column", help="column holding the step in a CSV/Parquet table, e.g. "
                                         "trainer/global_step (default: _step, Step or step)")
    c.add_argument("--max-mb", type=float, default=Limits.max_bytes / MB, help="file size limit (default: 200)")
    c.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    res = import_file(args.file, args.out, name=args.name, config=args.config, step_column=args.step_column,
                      limits=Limits(max_bytes=int(args.max_mb * MB)))
    s = res.summary
    print(f"imported: {res.run_dir}  ({res.meta['source']['format']}; per-layer metrics "
          f"{', '.join(s['per_layer_metrics']) or 'none'} on {s['layers']} layers; network scalars "
          f"{', '.join(s['network_scalars']) or 'none'}; {s['steps']} steps {s['step_range'][0]}..{s['step_range'][1]})")
    for item in res.skipped:
        print(f"  skipped {item['what']}: {item['why']}")
    return 0
