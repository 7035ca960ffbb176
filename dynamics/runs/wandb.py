"""The shapes a table of logged values comes in, recognised before import: W&B history, W&B chart export, long.

`plan(columns, p, step_column)` decides from the column names alone (so a table is then read in chunks of
rows, never whole): the columns to drop and rename and, for a wide table (one row per logged step, one column
per key), the name of its step column; `Plan.step` None means a long table (step, layer, metric, value).
`Plan.apply(chunk)` applies it to one chunk of rows; `Plan.finish(p)` adds the notes that count rows.

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
from dataclasses import dataclass, field

import pandas as pd

from .import_checks import NAN_TEXT, fail
from .store import LAYER, METRIC, STEP, VALUE

__all__ = ["plan", "Plan", "INDEX_COLUMN"]

INDEX_COLUMN = re.compile(r"^(Unnamed: \d+|__index_level_\d+__)$")
_UI = re.compile(r"^(.+?) - (.+)$")
_BOUND = re.compile(r"__(MIN|MAX)$")


@dataclass
class Plan:
    """What to do to each chunk of a table: drop, rename, drop rows without a step; and its step column."""
    step: str | None                       # the wide table's step column; None: a long table
    drop: list[str] = field(default_factory=list)
    rename: dict[str, str] = field(default_factory=dict)
    unlogged: int = -1                     # rows dropped for an empty step cell; -1: not checked
    columns: list[str] = field(default_factory=list)  # the columns after drop and rename

    @property
    def source_step(self) -> str | None:
        """The step column's name in the file (before renames): a reader that reads a few columns at a time
        reads it with each."""
        return next((k for k, v in self.rename.items() if v == self.step), self.step)

    def apply(self, df: pd.DataFrame, count: bool = True) -> pd.DataFrame:
        """One chunk planned; count: add its rows without a step to the note (once per row, when a reader
        passes over the rows more than once)."""
        df = df.drop(columns=[c for c in self.drop if c in df.columns]).rename(columns=self.rename)
        if self.unlogged < 0 or self.step is None:
            return df
        s = df[self.step]
        empty = s.isna() | s.astype(str).str.strip().isin(NAN_TEXT) if s.dtype.kind not in "biuf" else s.isna()
        if (n := int(empty.sum())):
            self.unlogged += n if count else 0
            df = df[~empty.to_numpy()].reset_index(drop=True)
        return df

    def finish(self, p) -> None:
        if self.unlogged > 0:
            p.skip(f"{self.unlogged} row(s) without a value in {self.step}", "the step was not logged in that row")


def plan(columns: list[str], p, step_column: str | None) -> Plan:
    """The plan for a table with these column names; p.skip(what, why) notes, p.fmt set to wandb for W&B."""
    index = [c for c in columns if INDEX_COLUMN.match(c)]
    for c in index:
        p.skip(f"column {c}", "an index column written by pandas (save with index=False to leave it out)")
    cols = [c for c in columns if c not in index]
    out = Plan(None, drop=list(index))
    long = {LAYER, METRIC, VALUE} <= set(cols)
    ui = [c for c in cols if _UI.match(c) and c != step_column]
    if ui and not long and ("Step" in cols or step_column):
        cols = _chart_export(cols, ui, p, out)
        step_column = step_column or "Step"
        p.fmt = "wandb"
    elif ui and not long and not ({"_step", STEP} & set(cols)):
        others = [c for c in cols if c not in ui]
        raise fail(f"a W&B chart export without a Step column (found: {', '.join(map(str, cols[:6]))}); "
                   f"pass --step-column with its x-axis column" + (f", e.g. {others[0]!r}" if others else ""))
    if step_column is not None:
        if step_column not in cols:
            raise fail(f"step column {step_column!r} not found (found: {', '.join(map(str, cols[:12]))}); "
                       f"pass --step-column with one of these")
        if long:
            if STEP in cols and step_column != STEP:
                out.drop.append(STEP)
            out.rename[step_column] = STEP
            out.columns = [STEP if c == step_column else c for c in cols if c != STEP or step_column == STEP]
            return out
        out.step, out.unlogged, out.columns = step_column, 0, cols
        return out
    out.columns = cols
    if "_step" in cols:
        p.fmt = "wandb"
        out.step = "_step"
    elif STEP in cols and not ({LAYER, METRIC, VALUE} & set(cols)):
        out.step, out.unlogged = STEP, 0
    return out


def _chart_export(cols: list[str], ui: list[str], p, out: Plan) -> list[str]:
    runs = sorted({_UI.match(c).group(1) for c in ui})
    if len(runs) > 1:
        raise fail(f"the W&B chart export holds {len(runs)} runs ({', '.join(runs[:3])}"
                   f"{', …' if len(runs) > 3 else ''}); export the chart of one run, or each run's history")
    bounds = [c for c in ui if _BOUND.search(c)]
    if bounds:
        p.skip(f"{len(bounds)} column(s) {', '.join(bounds[:3])}{', …' if len(bounds) > 3 else ''}",
               "W&B chart sampling bounds (__MIN/__MAX of each bucket), not logged values")
    keep = {c: _UI.match(c).group(2) for c in ui if c not in bounds}
    other = [c for c in cols if c not in ui and c != "Step"]
    if len(set(keep.values()) | set(other)) < len(keep) + len(other):
        raise fail("the W&B chart export names a key twice after removing the run name; export one run")
    p.skip("run name", f"'{runs[0]} - ' removed from {len(keep)} column name(s)")
    out.drop.extend(bounds)
    out.rename.update(keep)
    return [keep.get(c, c) for c in cols if c not in bounds]
