"""CSV and Parquet tables -> Scalars, read in chunks of rows: the table readers of dynamics.runs.formats.

`parquet(src, limits, label)` and `csv(src, limits)` check what the file's metadata (Parquet footer) or a
streaming pass over its bytes (CSV: UTF-8, no NUL, lines) can bound, then return a `Table`: the column names
and a generator of (first row, frame) chunks of about `CELLS` cells, so memory holds one chunk of pandas
objects at a time, never the table. `scalars(table, p, step_column, limits)` plans the shape from the column
names (dynamics.runs.wandb: a long table, a W&B history, a chart export) and melts each chunk into compact
columns (dynamics.runs.scalars): a long table's metric names are coded once per distinct name, a wide table's
keys once per column by the naming rule. Values past Limits.max_rows, and metric names past max_metrics, are
refused as soon as they are met (a Parquet wide table: from its footer, before anything is read).
"""
from __future__ import annotations

import codecs
import csv as _csvmod
import io
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import wandb
from .import_bounds import MB, Limits
from .import_checks import NAN_TEXT, RunImportError, as_floats, fail, integers, line, numbers, require, row, steps
from .scalars import Builder, Scalars, keyed, split_name
from .store import LAYER, METRIC, METRICS, STDERR, STEP, VALUE

__all__ = ["Table", "parquet", "csv", "scalars", "release", "LONG_COLUMNS", "CELLS"]
CELLS = 2 ** 20  # cells per chunk
# columns a long table (metrics, kernels, neurons) may use; a table without `_step` reads only these
LONG_COLUMNS = (STEP, LAYER, METRIC, VALUE, STDERR, "kind", "i", "j", "probe", "quantile")
_ARROW_ERRORS = (pa.ArrowException, OSError, ValueError, TypeError, IndexError, OverflowError, KeyError)


@dataclass
class Table:
    names: list[str]                                   # all columns (stripped)
    unread: list[str]                                  # columns never read (named in the notes)
    chunks: Callable[..., Iterator[tuple[int, pd.DataFrame, bool]]]  # (first row, frame, first pass over rows)
    where: Callable[[int], str]                        # a row position in words
    values: int | None = None                          # non-empty cells of a wide table, when the footer says
    rows: int | None = None                            # rows (Parquet) or at most (CSV: lines)


def _source(src):
    return pa.BufferReader(src) if isinstance(src, (bytes, bytearray, memoryview)) else str(src)


def _ends(src) -> tuple[bytes, bytes]:
    """The first 4 and the last 4 bytes (the last: empty below 12 bytes, too short for a footer)."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src[:4]), (bytes(src[-4:]) if len(src) >= 12 else b"")
    with open(src, "rb") as fh:
        head = fh.read(4)
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(size - 4, 0))
        return head, fh.read(4) if size >= 12 else b""


def parquet(src, limits: Limits, label: str) -> Table:
    """A Parquet file (bytes or path) after its footer's checks: rows, columns, rows × columns read
    (limits.max_cells), uncompressed bytes of the columns read (max_decoded_bytes). Without a W&B `_step`
    column only the run-format columns are read."""
    head, tail = _ends(src)
    if head != b"PAR1":
        raise fail(f"{label} is not a Parquet file (no PAR1 magic at the start)")
    if tail != b"PAR1":
        raise fail(f"{label} is a truncated Parquet file (no PAR1 footer at the end)")
    try:
        pf = pq.ParquetFile(_source(src))
        md = pf.metadata
        if md.num_rows > limits.max_rows or md.num_columns > limits.max_columns:
            raise fail(f"{label} is too large: {md.num_rows} rows × {md.num_columns} columns (limits: "
                       f"{limits.max_rows} rows, {limits.max_columns} columns)")
        raw = [pf.schema_arrow.field(i).name for i in range(len(pf.schema_arrow))]
        names = [str(n).strip() for n in raw]
        wide = "_step" in names
        read = [r for r, n in zip(raw, names) if wide or n in LONG_COLUMNS]
        if md.num_rows * max(len(read), 1) > limits.max_cells:
            raise fail(f"{label} is too large: {md.num_rows} rows × {len(read)} columns to read = "
                       f"{md.num_rows * len(read)} cells (limit {limits.max_cells})")
        wanted = [j for j in range(md.num_columns) if md.schema.column(j).path.split(".")[0] in set(read)]
        decoded = sum(max(md.row_group(g).column(j).total_uncompressed_size, 0)
                      for g in range(md.num_row_groups) for j in wanted)
        if decoded > limits.max_decoded_bytes:
            raise fail(f"{label} is too large once decoded: {decoded / MB:.0f} MB uncompressed in the columns "
                       f"read (limit {limits.max_decoded_bytes / MB:.0f} MB)")
        values = _logged(md, wanted, names) if wide and md.num_columns == len(raw) else None
        text = [r for r, n in zip(raw, names) if n in (METRIC, "kind") and r in read]
        if text:
            pf = pq.ParquetFile(_source(src), read_dictionary=text)
    except RunImportError:
        raise
    except MemoryError:
        raise
    except _ARROW_ERRORS as e:
        raise _unreadable(label, e) from None
    groups = [md.row_group(g).num_rows for g in range(md.num_row_groups)] or [0]

    def chunks(step: str | None = None):
        """Chunks of rows of the columns read; for a wide table (`step` given), of a few columns at a time
        beside the step column: Arrow decodes a row group's selected columns at once, all of them would be
        the whole file."""
        raw_of = dict(zip(names, raw))
        passes = [read]
        if step is not None and step in raw_of:
            others = [r for r in read if r != raw_of[step]]
            k = max(1, min(64, CELLS // max(groups)))
            passes = [[raw_of[step], *others[i:i + k]] for i in range(0, len(others), k)] or [[raw_of[step]]]
        try:
            for first, cols in enumerate(passes):
                at = 0
                for batch in pf.iter_batches(batch_size=max(1, CELLS // len(cols)), columns=cols,
                                             use_pandas_metadata=False):
                    df = batch.to_pandas(strings_to_categorical=False, ignore_metadata=True)
                    df.columns = [str(c).strip() for c in df.columns]
                    del batch
                    yield at, df, first == 0
                    at += len(df)
                    del df
                    release()
        except MemoryError:
            raise
        except _ARROW_ERRORS as e:
            raise _unreadable(label, e) from None
    return Table(names, [n for r, n in zip(raw, names) if r not in read], chunks, row, values, md.num_rows)


def release() -> None:
    """Hand the memory Arrow's allocator keeps after a chunk back to the system (mimalloc and jemalloc keep
    freed pages for reuse: without this, resident memory grows by a chunk's worth per chunk read)."""
    pa.default_memory_pool().release_unused()


def _logged(md, wanted, names) -> int | None:
    """Non-null cells of a wide table's key columns (those not starting with `_`) from the footer's
    statistics; None when a column chunk has none."""
    total = 0
    for j in wanted:
        if names[j].startswith("_"):
            continue
        for g in range(md.num_row_groups):
            c = md.row_group(g).column(j)
            if c.statistics is None or not c.statistics.has_null_count:
                return None
            total += c.num_values - c.statistics.null_count
    return total


def _unreadable(label: str, e: Exception) -> RunImportError:
    why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return fail(f"{label} is not a readable Parquet file ({why})")


def csv(src, limits: Limits) -> Table:
    """CSV (a path or bytes) of text cells after a streaming pass over its bytes: UTF-8, no NUL, lines ≤
    max_rows, lines × columns read ≤ max_cells, no duplicate column names. Without a W&B `_step` column
    only the run-format columns are read."""
    lines, header = _scan(src)
    if header is None:
        raise fail("empty CSV file (no header line)")
    # a blank header cell is named as pandas names it (`Unnamed: 0`: the index of `df.to_csv()`)
    names = [h.strip() or f"Unnamed: {i}" for i, h in enumerate(next(_csvmod.reader([header]), []))]
    if len(names) > limits.max_columns or lines > limits.max_rows:
        raise fail(f"CSV too large: {len(names)} columns, {lines} lines (limits: "
                   f"{limits.max_columns} columns, {limits.max_rows} rows)")
    if dups := sorted({n for n in names if names.count(n) > 1}):
        raise fail(f"duplicate CSV column name(s): {', '.join(dups)}")
    read = names if "_step" in names else [n for n in names if n in LONG_COLUMNS]
    if lines * max(len(read), 1) > limits.max_cells:
        raise fail(f"CSV too large: {lines} lines × {len(read)} columns to read = {lines * len(read)} cells "
                   f"(limit {limits.max_cells})")
    keep = [i for i, n in enumerate(names) if n in set(read)] or None
    rows = max(1, CELLS // max(len(read), 1))

    def chunks(step: str | None = None):
        at = 0
        fh = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else open(src, "rb")
        try:
            reader = pd.read_csv(fh, dtype=str, keep_default_na=False, na_filter=False, engine="c",
                                 encoding="utf-8-sig", chunksize=rows,
                                 usecols=keep if keep and len(keep) < len(names) else None)
            for df in reader:
                df.columns = [str(c).strip() for c in df.columns]
                yield at, df, True
                at += len(df)
        except pd.errors.EmptyDataError:
            raise fail("empty CSV file (no header line)") from None
        except MemoryError:
            raise
        except (pd.errors.ParserError, ValueError, _csvmod.Error, OverflowError) as e:
            if "out of memory" in str(e):  # pandas' C tokenizer under the sandbox's memory bound
                raise MemoryError(str(e)) from None
            msg = str(e).strip().splitlines()[-1][:200] if str(e).strip() else "parse error"
            raise fail(f"not a readable CSV file ({msg})") from None
        finally:
            fh.close()
    return Table(names, [n for n in names if n not in set(read)], chunks, line, rows=lines)


def _scan(src, block: int = 8 * MB) -> tuple[int, str | None]:
    """One pass over the bytes: (newlines, the header line), refusing non-UTF-8 text and NUL bytes."""
    fh = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else open(src, "rb")
    dec = codecs.getincrementaldecoder("utf-8-sig")()
    lines, base, header, first = 0, 0, None, ""
    try:
        while blob := fh.read(block):
            try:
                text = dec.decode(blob)
            except UnicodeDecodeError as e:
                raise fail(f"not UTF-8 text (bad byte at offset {base + e.start}); export the CSV as UTF-8") from None
            if b"\x00" in blob:
                raise fail("not a text file (it holds NUL bytes)")
            lines += blob.count(b"\n")
            if header is None:
                first += text
                if "\n" in first:
                    header = first.split("\n", 1)[0]
                    first = ""
            base += len(blob)
        try:
            dec.decode(b"", final=True)
        except UnicodeDecodeError as e:
            raise fail(f"not UTF-8 text (bad byte at offset {base + e.start}); export the CSV as UTF-8") from None
    finally:
        fh.close()
    if header is None and first.strip():
        header = first
    return lines, header.rstrip("\r") if header is not None else None


# --- a table's chunks -> Scalars ---------------------------------------------------------------------------
def scalars(t: Table, p, step_column: str | None, limits: Limits) -> Scalars:
    """The table's values as Scalars (its shape planned from the names by dynamics.runs.wandb); notes by
    p.skip; p.later_wins set for a wide table whose step column may repeat (the later row is kept)."""
    plan = wandb.plan(t.names, p, step_column)
    if plan.step is None:
        return _long(t, plan, p, limits)
    if t.values is not None and t.values > limits.max_rows:
        raise fail(f"too many values: {t.values} (limit {limits.max_rows} rows)")
    return _wide(t, plan, p, limits)


def _long(t: Table, plan, p, limits: Limits) -> Scalars:
    require(plan.columns, METRICS)
    for c in [c for c in plan.columns if c not in (STEP, LAYER, METRIC, VALUE, STDERR)] + t.unread:
        p.skip(f"column {c}", "not one of step, layer, metric, value, stderr")
    index: dict[str, int] = {}
    out = Builder(t.rows or CELLS, stderr=STDERR in plan.columns)
    for at, df, _ in t.chunks():
        df = plan.apply(df)
        w = lambda i, at=at: t.where(at + i)  # noqa: E731
        out.add(_step(df[STEP], w), _layer(df[LAYER], w, limits), _codes(df[METRIC], index, w, limits),
                numbers(df[VALUE], VALUE, w), numbers(df[STDERR], STDERR, w) if STDERR in df.columns else None)
    return out.done(sorted(index, key=index.get))


def _step(s: pd.Series, where) -> np.ndarray:
    x = s.to_numpy() if s.dtype.kind in "iu" else numbers(s, STEP, where)
    return steps(x, where)


def _layer(s: pd.Series, where, limits: Limits) -> np.ndarray:
    x = s.to_numpy() if s.dtype.kind in "iu" else numbers(s, LAYER, where)
    return integers(x, LAYER, -1, min(limits.max_layers, 2 ** 15 - 1), where, " (the layers limit)").astype(np.int16)


def _codes(s: pd.Series, index: dict[str, int], where, limits: Limits) -> np.ndarray:
    """Names -> int32 codes of `index` (name -> code, grown here, names stripped): one look-up per distinct
    name of the chunk; empty cells and more than max_metrics names are refused."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes, cats = s.cat.codes.to_numpy(), s.cat.categories
    else:
        codes, cats = pd.factorize(s.to_numpy(dtype=object), use_na_sentinel=True)
    if (bad := np.flatnonzero(codes < 0)).size:
        raise fail(f"empty or over-long {METRIC} name at {where(int(bad[0]))}")
    lut = np.array([index.setdefault(c.decode("utf-8", "replace").strip() if isinstance(c, bytes)
                                     else str(c).strip(), len(index)) for c in cats], dtype=np.int32)
    if len(index) > limits.max_metrics:
        raise fail(f"more than {limits.max_metrics} distinct metric names (limit {limits.max_metrics}); a run's "
                   f"metric picker lists them all: log fewer names, or put the varying part in the layer")
    return lut[codes] if len(lut) else np.zeros(len(codes), np.int32)


def _wide(t: Table, plan, p, limits: Limits) -> Scalars:
    """A wide table (W&B history: one row per step, one column per key) -> Scalars; an empty cell is a step
    where the key was not logged; a key logged twice at one step keeps the later row (p.later_wins)."""
    step = plan.step
    keys = [c for c in plan.columns if c != step and not c.startswith("_")]
    for c in plan.columns:
        if c != step and c.startswith("_"):
            p.skip(f"column {c}", "W&B bookkeeping column")
    layer_of, metric_of, metrics = keyed(keys, split_name)
    state = dict.fromkeys(keys, "")  # "", "number" or "text": a column's cells so far
    out, total = Builder(min(t.values if t.values is not None else CELLS, limits.max_rows)), 0
    code = {c: k for k, c in enumerate(keys)}
    for at, df, first in t.chunks(plan.source_step):
        df = plan.apply(df, count=first)
        w = lambda i, at=at: t.where(at + i)  # noqa: E731
        steps = _step(df[step], w)
        for c in [c for c in df.columns if c in code]:
            k = code[c]
            x = _cells(df[c], c, w, state)
            if x is None:
                continue
            keep = ~np.isnan(x)
            if not (m := int(np.count_nonzero(keep))):
                continue
            total += m
            if total > limits.max_rows:
                raise fail(f"too many values: more than {limits.max_rows} (limit {limits.max_rows} rows)")
            out.add(steps[keep], layer_of[k], metric_of[k], x[keep])
    plan.finish(p)
    for c in [c for c in keys if state[c] == "text"]:
        p.skip(f"column {c}", "not numeric (media, text or tables are not imported)")
    if not any(state[c] == "number" for c in keys):
        raise fail(f"the table has no numeric metric columns besides its step column {step} (found: "
                   f"{', '.join(map(str, plan.columns[:12]))})")
    if step != "_step":  # _step is unique per row; another step column may repeat (train and val rows)
        p.later_wins = (f"(key, {step})", "logged again in a later row: the later is kept")
    return out.done(metrics)


def _cells(s: pd.Series, col: str, where, state: dict) -> np.ndarray | None:
    """A key column's chunk as float64, or None for a text column (media, tables: skipped whole). A column
    that mixes numbers and text is refused (numbers names the first text cell)."""
    x = s.to_numpy(dtype=np.float64, na_value=np.nan) if s.dtype.kind in "biuf" else as_floats(s)
    if x is not None:
        if not np.isnan(x).all():
            if state[col] == "text":
                raise fail(f"non-numeric values in column '{col}' (text cells before {where(0)}, numbers from "
                           f"there on)")
            state[col] = "number"
        return x
    text = s.astype(str).str.strip()
    empty = text.isin(NAN_TEXT)
    if empty.all():
        return np.full(len(s), np.nan)
    numeric = pd.to_numeric(text.where(~empty), errors="coerce")
    if numeric.isna().all() and state[col] != "number":
        state[col] = "text"
        return None
    if state[col] == "text":
        bad = int(np.flatnonzero(numeric.notna().to_numpy())[0])
        raise fail(f"non-numeric values in column '{col}' (text cells before {where(bad)}: {text.iloc[bad][:40]!r})")
    state[col] = "number"
    return numbers(s, col, where)

