"""Checks for imported tables: a pandas frame of one run file -> a typed pyarrow table of the run format.

Used by dynamics.runs.imports. `check_table(df, file, max_layer, where)` converts each column per the file's spec
(step int32 ≥ 0 — int64 when a step is ≥ 2³¹, exact up to 2⁵³ —, layer int16 ≥ −1, names non-empty, values
float64 with NaN allowed), and rejects with a one-line RunImportError: missing columns (named), non-numeric
cells, NaN or non-integer keys, values out of range, duplicate keys. `where(i)` turns a row position into
words for the message ("line 5", "row 4").
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from . import store
from .store import KERNELS, LAYER, METRIC, METRICS, NEURONS, STDERR, STEP, VALUE

__all__ = ["RunImportError", "fail", "check_table", "numbers", "row", "line", "NAN_TEXT"]


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


def numbers(s: pd.Series, col: str, where) -> np.ndarray:
    """A column as float64; NaN for empty / 'nan' cells; raises on text that is not a number."""
    if s.dtype.kind in "biuf":
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    text = s.map(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v).astype(str).str.strip()
    out = pd.to_numeric(text.where(~text.isin(NAN_TEXT)), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(out) & ~text.isin(NAN_TEXT).to_numpy())
    if bad.size:
        raise fail(f"non-numeric values in column '{col}' ({bad.size} cells; {where(bad[0])}: "
                    f"{text.iloc[bad[0]][:40]!r})")
    return out


def check_table(df: pd.DataFrame, file: str, max_layer: int, where) -> pa.Table:
    """df (any column dtypes) -> a table with the file's schema; extra columns must be dropped before."""
    spec = _SPECS[file]
    missing = [c for c, k in spec.items() if not k.endswith("?") and c not in df.columns]
    if missing:
        needed = ", ".join(c + (" (optional)" if k.endswith("?") else "") for c, k in spec.items())
        raise fail(f"wrong columns{'' if file == METRICS else ' in ' + file}: missing {', '.join(missing)} "
                   f"(found: {', '.join(map(str, df.columns[:12])) or 'none'}); needed: {needed}")
    cols: dict[str, np.ndarray] = {}
    hi = {"step": 2 ** 63 - 1024, "layer": min(max_layer, 2 ** 15 - 1), "index": 2 ** 15 - 1}
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
            cols[col] = text.to_numpy(dtype=object)
            continue
        x = numbers(s, col, where)
        if kind in hi:
            lo = -1 if kind == "layer" else 0
            if (bad := np.flatnonzero(np.isnan(x))).size:
                raise fail(f"NaN {col}s: {bad.size} rows have no {col} (first at {where(bad[0])})")
            bad = np.flatnonzero((x != np.round(x)) | (x < lo) | (x > hi[kind]))
            if bad.size:
                raise fail(f"{col} {x[bad[0]]:g} at {where(bad[0])} is not an integer in {lo}..{hi[kind]}"
                            + (" (the layers limit)" if kind == "layer" and x[bad[0]] > hi[kind] else ""))
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
