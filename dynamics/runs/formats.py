"""The readers of dynamics.runs.imports: bytes of one file -> tidy frames of the run format, one reader per
format (Parquet, CSV, W&B wide tables, TensorBoard event files and folders, zipped runs), the naming rule that
turns a logged key into (layer, metric), and the format sniffer. Every reader bounds what it decodes by the
`Limits` it is given before decoding it, and raises a one-line RunImportError on anything else; nothing here
writes a file (imports.py assembles and writes the run).
"""
from __future__ import annotations

import csv
import io
import json
import re
import stat
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import store, tbfolder
from .store import KERNELS, LAYER, METRIC, METRICS, NEURONS, RUN_JSON, STDERR, STEP, VALUE
from .import_bounds import MB, Limits, zip_entry as _entry
from .import_checks import NAN_TEXT, RunImportError, fail as _fail, numbers as _numbers, row as _row
from .tfevents import looks_like_events

RUN_FILES = (RUN_JSON, METRICS, KERNELS, NEURONS)


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
