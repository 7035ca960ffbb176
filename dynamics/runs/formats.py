"""The readers of dynamics.runs.imports: one file -> the values of a run (dynamics.runs.scalars.Scalars; the
kernels and neurons of a zipped run as frames), one reader per format (Parquet, CSV and W&B wide tables in
dynamics.runs.tables, TensorBoard event files and folders, zipped runs; the trackers in dynamics.runs.mlflow,
.wandb_offline and .trackio), the naming rule that turns a logged key into (layer, metric), and the format
sniffer. Every reader bounds what it decodes by the `Limits` it is given before decoding it, and raises a
one-line RunImportError on anything else; nothing here writes a file (imports.py assembles and writes the run).
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from . import store, tables, tbfolder
from .store import KERNELS, METRICS, NEURONS, RUN_JSON
from .import_bounds import Limits, zip_entry as _entry
from .import_checks import fail as _fail, row as _row, steps
from .scalars import Scalars, keyed, split_name  # noqa: F401  (the naming rule, re-exported)
from .tfevents import looks_like_events

RUN_FILES = (RUN_JSON, METRICS, KERNELS, NEURONS)


# --- readers -> Scalars ------------------------------------------------------------------------------------
@dataclass
class _Parsed:
    fmt: str
    frames: dict[str, tuple[pd.DataFrame, Any]] = field(default_factory=dict)  # kernels, neurons: (frame, where)
    meta: dict[str, Any] = field(default_factory=dict)  # an original run.json, if any
    skipped: list[dict[str, str]] = field(default_factory=list)
    scalars: Scalars | None = None  # the metrics
    later_wins: tuple[str, str] | None = None  # (what, why) when a key logged twice keeps the later value
    name: str | None = None  # a run name the reader found inside the file (a tracker's run)

    def skip(self, what: str, why: str) -> None:
        self.skipped.append({"what": what, "why": why})


def _table(src, fmt: str, p: _Parsed, limits: Limits, label: str, step_column: str | None) -> None:
    """A CSV or Parquet table (bytes or path), read in chunks (dynamics.runs.tables)."""
    t = tables.parquet(src, limits, label) if fmt == "parquet" else tables.csv(src, limits)
    p.scalars = tables.scalars(t, p, step_column, limits)
    del t  # the Parquet reader's buffers
    tables.release()


def _tfevents(blobs: list[tuple[str, Any]], p: _Parsed, limits: Limits) -> None:
    """One or more event files (a folder's, in merge order; bytes or paths read in chunks) -> Scalars (merge
    rules: dynamics.runs.tbfolder; a (tag, step) logged again later keeps the later value). The naming rule
    runs once per distinct tag."""
    ev = tbfolder.merge(blobs, limits.max_rows, p.skip)
    if len(blobs) > 1:
        p.meta["merged_files"] = [n for n, _ in blobs]  # the merge order, kept in run.json
    where = lambda i: f"scalar {i} (tag {ev.tags[ev.code[i]]!r})"  # noqa: E731
    step = steps(ev.step, where)
    layer_of, metric_of, metrics = keyed(ev.tags, split_name)
    p.scalars = Scalars(step, layer_of[ev.code], metric_of[ev.code], ev.value, metrics)
    p.later_wins = ("(tag, step)", "logged again later (a resumed run): the later is kept")


def _frame(blob: bytes, limits: Limits, label: str) -> pd.DataFrame:
    """A kernels or neurons Parquet of a zipped run as one frame (bounded by limits; dynamics.runs.tables)."""
    t = tables.parquet(blob, limits, label)
    parts = [df for _, df, _ in t.chunks()]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[n for n in t.names
                                                                                 if n not in t.unread])
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(object)
    return df


def _zip(src, p: _Parsed, limits: Limits) -> None:
    """A zipped run of ours (a path or bytes): run.json, metrics.parquet [, kernels, neurons]."""
    try:
        zf = tbfolder.open_zip(src)
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
        if (why := tbfolder.unsafe(info)):
            raise _fail(why)
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
    p.scalars = tables.scalars(tables.parquet(blobs.pop(METRICS), limits, METRICS), p, None, limits)
    for name in (KERNELS, NEURONS):
        if name in blobs:
            p.frames[name] = (_frame(blobs[name], limits, name), _row)


def _json(blob: bytes, label: str) -> dict[str, Any]:
    try:
        obj = json.loads(blob.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _fail(f"{label} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise _fail(f"{label} must hold a JSON object")
    return obj


def _detect(name: str, data: bytes, src=None) -> str:
    """The format from the first bytes `data` (zip, Parquet and event-file magic; text with commas is CSV),
    then the name; `src` (the whole file: a path or bytes, default data) tells a zipped log folder."""
    low = name.lower()
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "tb-zip" if tbfolder.zip_holds_events(data if src is None else src) else "run-zip"
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
