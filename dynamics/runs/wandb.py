"""The shapes a table of logged values comes in, recognised before import: W&B history, W&B chart export, long.

`shape(df, p, step_column)` returns the frame to import and, for a wide table (one row per logged step, one
column per key), the name of its step column; None means a long table (step, layer, metric, value).

- index columns written by pandas (`df.to_csv()` without `index=False`: `Unnamed: 0`; Parquet's
  `__index_level_0__`) are dropped and listed as skipped;
- W&B run history (`run.history()` / `scan_history()` saved as CSV or Parquet): one row per `_step`;
- W&B chart "Export CSV" (the panel menu in the W&B UI): a `Step` column and columns `<run name> - <key>`, with
  `<run name> - <key>__MIN` and `…__MAX` when the chart samples its points. The key is parsed out of the
  column (`run-7 - layer_3/h_sq` -> `layer_3/h_sq`, then the naming rule applies). The __MIN / __MAX columns
  are skipped with a note: they are the bounds of the chart's sampling buckets, not logged values. A chart
  export of several runs is refused (it would mix runs in one): export one run;
- `step_column` (`--step-column`): the column that holds the step, e.g. `trainer/global_step` of a Lightning
  history where `_step` counts log calls rather than optimizer steps. Rows where it is empty (not logged in
  that row) are dropped with a count. In a long table it renames that column to `step`;
- a wide table without `_step` whose step column is `step` (and that has no layer / metric / value columns)
  is read as wide too.
"""
from __future__ import annotations

import re

import pandas as pd

from .import_checks import NAN_TEXT, fail
from .store import LAYER, METRIC, STEP, VALUE

__all__ = ["shape", "INDEX_COLUMN"]

INDEX_COLUMN = re.compile(r"^(Unnamed: \d+|__index_level_\d+__)$")
_UI = re.compile(r"^(.+?) - (.+)$")
_BOUND = re.compile(r"__(MIN|MAX)$")


def shape(df: pd.DataFrame, p, step_column: str | None) -> tuple[pd.DataFrame, str | None]:
    """(frame to import, step column of a wide table or None for a long table); p.skip(what, why) notes."""
    index = [c for c in df.columns if INDEX_COLUMN.match(c)]
    for c in index:
        p.skip(f"column {c}", "an index column written by pandas (save with index=False to leave it out)")
    df = df.drop(columns=index)
    long = {LAYER, METRIC, VALUE} <= set(df.columns)
    ui = [c for c in df.columns if _UI.match(c) and c != step_column]
    if ui and not long and ("Step" in df.columns or step_column):
        df = _chart_export(df, ui, p)
        step_column = step_column or "Step"
        p.fmt = "wandb"
    elif ui and not long and not ({"_step", STEP} & set(df.columns)):
        others = [c for c in df.columns if c not in ui]
        raise fail(f"a W&B chart export without a Step column (found: {', '.join(map(str, df.columns[:6]))}); "
                   f"pass --step-column with its x-axis column" + (f", e.g. {others[0]!r}" if others else ""))
    if step_column is not None:
        if step_column not in df.columns:
            raise fail(f"step column {step_column!r} not found (found: {', '.join(map(str, df.columns[:12]))}); "
                       f"pass --step-column with one of these")
        if long:
            return df.drop(columns=[STEP], errors="ignore").rename(columns={step_column: STEP}), None
        return _drop_unlogged(df, step_column, p), step_column
    if "_step" in df.columns:
        p.fmt = "wandb"
        return df, "_step"
    if STEP in df.columns and not ({LAYER, METRIC, VALUE} & set(df.columns)):
        return _drop_unlogged(df, STEP, p), STEP
    return df, None


def _chart_export(df: pd.DataFrame, ui: list[str], p) -> pd.DataFrame:
    runs = sorted({_UI.match(c).group(1) for c in ui})
    if len(runs) > 1:
        raise fail(f"the W&B chart export holds {len(runs)} runs ({', '.join(runs[:3])}"
                   f"{', …' if len(runs) > 3 else ''}); export the chart of one run, or each run's history")
    bounds = [c for c in ui if _BOUND.search(c)]
    if bounds:
        p.skip(f"{len(bounds)} column(s) {', '.join(bounds[:3])}{', …' if len(bounds) > 3 else ''}",
               "W&B chart sampling bounds (__MIN/__MAX of each bucket), not logged values")
    keep = {c: _UI.match(c).group(2) for c in ui if c not in bounds}
    other = [c for c in df.columns if c not in ui and c != "Step"]
    df = df.drop(columns=bounds).rename(columns=keep)
    if len(set(keep.values()) | set(other)) < len(keep) + len(other):
        raise fail("the W&B chart export names a key twice after removing the run name; export one run")
    p.skip("run name", f"'{runs[0]} - ' removed from {len(keep)} column name(s)")
    return df


def _drop_unlogged(df: pd.DataFrame, step: str, p) -> pd.DataFrame:
    s = df[step]
    empty = s.isna() | s.astype(str).str.strip().isin(NAN_TEXT) if s.dtype.kind not in "biuf" else s.isna()
    if (n := int(empty.sum())):
        p.skip(f"{n} row(s) without a value in {step}", "the step was not logged in that row")
        df = df[~empty.to_numpy()].reset_index(drop=True)
    return df
