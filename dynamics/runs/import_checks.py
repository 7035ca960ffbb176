"""Checks for imported tables: a pandas frame of one run file -> a typed pyarrow table of the run format.

Used by dynamics.runs.imports. `check_table(df, file, max_layer, where)` converts each column per the file's spec
(step int32 ≥ 0 — int64 when a step is ≥ 2³¹, exact up to 2⁵³ —, layer int16 ≥ −1, names non-empty, values
float64 with NaN allowed), and rejects with a one-line RunImportError: missing columns (named), non-numeric
cells, NaN or non-integer keys, values out of range, duplicate keys, names holding control or
bidirectional-override characters. `where(i)` turns a row position into words for the message ("line 5",
"row 4"). `check_config(cfg, top, max_layers)` types and bounds the config (depth, width, steps, …) and
`check_field` checks one config field (the trackers' params, field by field). The metrics of every format go
through dynamics.runs.scalars (compact columns); check_table is for a zipped run's kernels and neurons.
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)

from . import store
from .store import KERNELS, LAYER, METRIC, METRICS, NEURONS, STDERR, STEP, VALUE

__all__ = ["RunImportError", "fail", "check_table", "require", "integers", "steps", "STEP_MAX", "check_config",
           "check_field", "bad_char", "as_floats", "numbers", "row", "line", "NAN_TEXT"]


class RunImportError(ValueError):
    """A file cannot be imported; the one-line message names the problem."""


def fail(msg: str) -> RunImportError:
    return RunImportError(" ".join(str(msg).split()))  # one line, whatever the cause's text held


# column -> (kind, required); kinds: step, layer, index (int16 ≥ 0), name (string), float
_SPECS = {METRICS: {STEP: "step", LAYER: "layer", METRIC: "name", VALUE: "float", STDERR: "float?"},
          KERNELS: {STEP: "step", LAYER: "layer", "kind": "name", "i": "index", "j": "index", VALUE: "float"},
          NEURONS: {STEP: "step", LAYER: "layer", "probe": "index", "quantile": "float", VALUE: "float"}}
_KEYS = {METRICS: (STEP, LAYER, METRIC), KERNELS: (STEP, LAYER, "kind", "i", "j"),
         NEURONS: (STEP, LAYER, "probe", "quantile")}
NAN_TEXT = {"", "nan", "NaN", "NAN", "NA", "N/A", "null", "None", "none"}  # cells read as NaN
_SCHEMAS = {METRICS: store.METRICS_SCHEMA, KERNELS: store.KERNELS_SCHEMA, NEURONS: store.NEURONS_SCHEMA}


def as_floats(s: pd.Series) -> np.ndarray | None:
    """Text cells as float64 in one C loop when float() reads every one (spaces around, nan, inf; an empty cell
    is NaN), else None (NA-like words or text: numbers() then names the first bad cell)."""
    if s.dtype != object:
        return None
    a = s.to_numpy(dtype=object, copy=True)
    a[a == ""] = "nan"
    try:
        return a.astype(np.float64)
    except (ValueError, TypeError, OverflowError):
        return None


def numbers(s: pd.Series, col: str, where) -> np.ndarray:
    """A column as float64; NaN for empty / 'nan' cells; raises on text that is not a number."""
    if s.dtype.kind in "biuf":
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    if (x := as_floats(s)) is not None:
        return x
    text = s.map(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v).astype(str).str.strip()
    out = pd.to_numeric(text.where(~text.isin(NAN_TEXT)), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(out) & ~text.isin(NAN_TEXT).to_numpy())
    if bad.size:
        raise fail(f"non-numeric values in column '{col}' ({bad.size} cells; {where(bad[0])}: "
                    f"{text.iloc[bad[0]][:40]!r})")
    return out


def require(columns, file: str) -> None:
    """Refuse a table of `file` that lacks one of its required columns (named, with what was found)."""
    spec = _SPECS[file]
    missing = [c for c, k in spec.items() if not k.endswith("?") and c not in columns]
    if missing:
        needed = ", ".join(c + (" (optional)" if k.endswith("?") else "") for c, k in spec.items())
        raise fail(f"wrong columns{'' if file == METRICS else ' in ' + file}: missing {', '.join(missing)} "
                   f"(found: {', '.join(map(str, list(columns)[:12])) or 'none'}); needed: {needed}")


def integers(x: np.ndarray, col: str, lo: int, hi: int, where, note: str = "") -> np.ndarray:
    """Key cells (float64 or integers) -> int64; refused when NaN, fractional or outside lo..hi (`note` is
    added when a cell is above hi)."""
    if x.dtype.kind == "f":
        if (bad := np.flatnonzero(np.isnan(x))).size:
            raise fail(f"NaN {col}s: {bad.size} rows have no {col} (first at {where(bad[0])})")
        bad = np.flatnonzero((x != np.round(x)) | (x < lo) | (x > hi))
    else:
        bad = np.flatnonzero((x < lo) | (x > hi))
    if bad.size:
        v = x[bad[0]]
        raise fail(f"{col} {v:g} at {where(bad[0])} is not an integer in {lo}..{hi}" + (note if v > hi else ""))
    return x.astype(np.int64, copy=False)


STEP_MAX = 2 ** 63 - 1024  # steps are int64; the margin keeps float64 cells that round up below 2⁶³


def steps(x: np.ndarray, where) -> np.ndarray:
    """Step cells -> int64 steps, refused when NaN, fractional, negative or too large (integers)."""
    return integers(x, STEP, 0, STEP_MAX, where)


def check_table(df: pd.DataFrame, file: str, max_layer: int, where) -> pa.Table:
    """df (any column dtypes) -> a table with the file's schema; extra columns must be dropped before.
    Used for kernels and neurons of a zipped run (metrics go through dynamics.runs.scalars)."""
    spec = _SPECS[file]
    require(df.columns, file)
    cols: dict[str, np.ndarray] = {}
    hi = {"step": STEP_MAX, "layer": min(max_layer, 2 ** 15 - 1), "index": 2 ** 15 - 1}
    for col, kind in spec.items():
        if col not in df.columns:
            continue
        s = df[col]
        if kind == "name" and isinstance(s.dtype, pd.CategoricalDtype) and not s.isna().any():
            # categorical names (event files): check and strip each category once, keep the codes
            cats = pd.Index(s.cat.categories.astype(str)).str.strip()
            bad = (cats == "") | (cats.str.len() > 200)
            if bad.any():
                raise fail(f"empty or over-long {col} name at {where(int(np.flatnonzero(bad[s.cat.codes])[0]))}")
            u = pd.Index(cats.unique()).sort_values()
            cols[col] = pd.Categorical.from_codes(u.get_indexer(cats)[s.cat.codes.to_numpy()], u)
            continue
        if kind == "name":
            text = s.astype(str).str.strip()
            bad = np.flatnonzero((s.isna() | text.eq("") | text.str.len().gt(200)).to_numpy())
            if bad.size:
                raise fail(f"empty or over-long {col} name at {where(bad[0])}")
            for name in pd.unique(text):  # distinct names only: a metric column holds few
                if (c := bad_char(name)) is not None:
                    first = int(np.flatnonzero(text.eq(name).to_numpy())[0])
                    raise fail(f"{col} name {name[:40]!r} at {where(first)} holds the control character "
                               f"U+{ord(c):04X}; names must be printable text")
            cols[col] = text.to_numpy(dtype=object)
            continue
        x = numbers(s, col, where)
        if kind in hi:
            x = integers(x, col, -1 if kind == "layer" else 0, hi[kind], where,
                         " (the layers limit)" if kind == "layer" else "").astype(np.float64)
        elif col in _KEYS[file] and (bad := np.flatnonzero(np.isnan(x))).size:
            raise fail(f"NaN {col}s: {bad.size} rows (first at {where(bad[0])})")
        cols[col] = x
    if not len(df) and file == METRICS:  # kernels and neurons may be empty, as in runs without probes
        raise fail("no rows: the file holds a header but no data")
    frame = pd.DataFrame(cols, copy=False)
    keys = list(_KEYS[file])
    dup = frame.duplicated(keys, keep=False).to_numpy()
    if dup.any():
        first = frame[dup].iloc[0]
        shown = ", ".join(f"{k} {first[k]:g}" if isinstance(first[k], float) else f"{k} {first[k]!r}" for k in keys)
        raise fail(f"duplicate keys: {shown} appears {int((frame[keys] == first[keys]).all(axis=1).sum())} "
                    f"times ({int(dup.sum())} rows share a key with another row)")
    frame = frame.sort_values(keys, kind="stable")
    schema = store.METRICS_SCHEMA_SE if file == METRICS and STDERR in cols else _SCHEMAS[file]
    if len(frame) and frame[STEP].max() > 2 ** 31 - 1:  # e.g. tokens seen as the step: the step column widens
        schema = schema.set(schema.get_field_index(STEP), pa.field(STEP, pa.int64()))
    arrays = []
    for f in schema:
        if pa.types.is_dictionary(f.type) and isinstance(frame[f.name].dtype, pd.CategoricalDtype):
            c = frame[f.name].array
            arrays.append(pa.DictionaryArray.from_arrays(pa.array(c.codes.astype(np.int32)),
                                                         pa.array(c.categories.to_numpy(dtype=object), pa.string())))
            continue
        v = frame[f.name].to_numpy()
        if pa.types.is_dictionary(f.type):
            arrays.append(pa.array(v.astype(str), pa.string()).dictionary_encode())
        else:
            arrays.append(pa.array(v.astype(f.type.to_pandas_dtype()), f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def row(i: int) -> str:
    return f"row {i}"


def line(i: int) -> str:
    return f"line {i + 2}"


# --- names ------------------------------------------------------------------------------------------
def bad_char(text: str) -> str | None:
    """The first character of `text` that a name may not hold: a control character (Unicode category Cc:
    NUL, newline, escape…) or a format character (Cf: right-to-left overrides, zero-width joiners), else None."""
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf"):
            return ch
    return None


# --- the config ----------------------------------------------------------------------------------------
# field -> (lowest, highest) for integers; the pages read these, so each is typed and bounded
_INT_FIELDS = {"width": (1, 2 ** 24), "steps": (0, 2 ** 31 - 1), "seed": (-(2 ** 63), 2 ** 63 - 1),
               "record_every": (1, 2 ** 31 - 1), "test_every": (1, 2 ** 31 - 1), "probes": (0, 2 ** 15 - 1),
               "coupling_window": (0, 2 ** 31 - 1)}
_FLOAT_FIELDS = ("lr", "weight_decay", "momentum")
_MAX_TEXT, _MAX_KEYS, _KEY = 200, 200, re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_config(cfg: Any, top: int, max_layers: int) -> dict[str, Any]:
    """A run's config, typed and bounded before it becomes a run; raises a one-line RunImportError.

    depth: an integer with max(1, top) ≤ depth ≤ max_layers (top = the largest recorded layer index; pages
    divide by it: τ = ℓ / depth); width, steps, seed, … integers in range; lr & co. finite numbers; keys short
    identifiers; values JSON scalars (or short lists of them), text ≤ 200 characters without control
    characters. A missing depth becomes max(1, top)."""
    if not isinstance(cfg, dict):
        raise fail("the config must be a JSON object")
    if len(cfg) > _MAX_KEYS:
        raise fail(f"the config has {len(cfg)} fields (limit {_MAX_KEYS})")
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        check_field(key, value)
        out[key] = value
    depth = out.get("depth", max(top, 1))
    if not _is_int(depth) or not max(top, 1) <= depth <= max_layers:
        raise fail(f"config depth {repr(depth)[:40]} must be an integer from {max(top, 1)} (the largest layer "
                   f"index recorded) to {max_layers}")
    out["depth"] = depth
    return out


def check_field(key: Any, value: Any) -> None:
    """One config field: a short identifier holding a JSON scalar (or a short list of them), typed and
    bounded for the fields the pages read (width, steps, lr, …); raises a one-line RunImportError."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise fail(f"config field name {str(key)[:40]!r} is not a short identifier (letters, digits, _ . -)")
    _check_value(key, value)
    if key in _INT_FIELDS and value is not None:
        lo, hi = _INT_FIELDS[key]
        if not _is_int(value) or not lo <= value <= hi:
            raise fail(f"config {key} {repr(value)[:40]} must be an integer in {lo}..{hi}")
    if key in _FLOAT_FIELDS and value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        raise fail(f"config {key} {repr(value)[:40]} must be a finite number")


def _check_value(key: str, value: Any, nested: bool = False) -> None:
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise fail(f"config {key} is {value}; use a finite number or null")
        return
    if isinstance(value, str):
        if len(value) > _MAX_TEXT or (c := bad_char(value)) is not None:
            why = f"is longer than {_MAX_TEXT} characters" if len(value) > _MAX_TEXT else \
                f"holds the control character U+{ord(c):04X}"
            raise fail(f"config {key} {why}")
        return
    if isinstance(value, list) and not nested and len(value) <= 64:
        for v in value:
            _check_value(key, v, nested=True)
        return
    raise fail(f"config {key} must be a number, text, true/false/null or a short list of them")
