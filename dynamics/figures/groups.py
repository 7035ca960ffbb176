"""Seeds and config fields in the views: runs that differ only by seed as one curve (the mean with a ±1 standard
error band), and colours by a config field's value. Plain pandas, no Streamlit, no I/O; the dashboard's pages
apply these to the tidy frames they draw (dashboard.grouping holds the widgets).
"""
from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from plotly.colors import sample_colorscale

from dynamics.runs.store import STDERR, VALUE

from ._style import PALETTE, RUN, SMOOTH

SEED_FIELDS = ("seed",)                      # what may differ between runs drawn as one mean curve
_SEED_TOKEN = re.compile(r"^s\d+$")
_HASH_TOKEN = re.compile(r"^[0-9a-f]{6,}$")


def seed_stem(name: str) -> str:
    """A run name without its seed (`s0`) and hash parts: what the runs of one seed group share."""
    parts = [p for p in name.split("_") if not _SEED_TOKEN.match(p) and not _HASH_TOKEN.match(p)]
    return "_".join(parts) or name


def seed_groups(configs: Mapping[str, dict], kinds: Mapping[str, str] | None = None) -> dict[str, str]:
    """label -> group name for the runs whose configs agree apart from SEED_FIELDS (finite runs only: a limit
    run carries its own Monte-Carlo error). Only groups of two or more runs are returned; the name is the first
    member's label without its seed and hash parts, then "· k seeds"."""
    by_key: dict[str, list[str]] = {}
    for label, cfg in configs.items():
        if (kinds or {}).get(label, "finite") == "limit" or not cfg:
            continue
        key = json.dumps({k: v for k, v in cfg.items() if k not in SEED_FIELDS}, sort_keys=True, default=str)
        by_key.setdefault(key, []).append(label)
    out: dict[str, str] = {}
    for members in by_key.values():
        if len(members) < 2:
            continue
        name = f"{seed_stem(members[0])} · {len(members)} seeds"
        out.update({m: name for m in members})
    return out


def merge_seeds(df: pd.DataFrame, groups: Mapping[str, str], keys: Sequence[str]) -> pd.DataFrame:
    """Rows of the runs in `groups` replaced by one curve per group: at each point of `keys` (e.g. tau, or step)
    the mean over the group's runs that recorded it and, where two or more did, the standard error of that mean
    (sample std / √count) as `stderr`, which the figures draw as a band. Other runs' rows are kept as they are.
    Columns other than run, keys, value and stderr are dropped from merged rows."""
    if df.empty or not groups:
        return df
    inside = df[RUN].isin(list(groups))
    if not inside.any():
        return df
    part = df[inside].assign(**{RUN: df.loc[inside, RUN].map(groups)})
    by = part.groupby([RUN, *keys], sort=False)
    agg = by[VALUE].agg(["mean", "std", "count"]).reset_index()
    merged = agg[[RUN, *keys]].assign(**{VALUE: agg["mean"].to_numpy(),
                                       STDERR: np.where(agg["count"] >= 2,
                                                        agg["std"].to_numpy() / np.sqrt(agg["count"].clip(lower=1)),
                                                        np.nan),
                                       "seeds": agg["count"].to_numpy()})
    if SMOOTH in part:  # a smoothed line is averaged like the raw one
        merged[SMOOTH] = by[SMOOTH].mean().to_numpy()
    return pd.concat([df[~inside], merged], ignore_index=True)


def colours_by(values: Mapping[str, Any]) -> dict[str, str]:
    """label -> colour by the value of one config field: numbers along a sequential scale (smallest light,
    largest dark, so a width or depth ladder reads in order), anything else by the palette in order of first
    appearance. Runs without the field get grey."""
    present = {lab: v for lab, v in values.items() if v is not None}
    distinct = list(dict.fromkeys(json.dumps(v, sort_keys=True, default=str) for v in present.values()))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present.values())
    if numeric and present:
        order = sorted(set(present.values()))
        pos = {v: (k / (len(order) - 1) if len(order) > 1 else 0.5) for k, v in enumerate(order)}
        scale = {v: sample_colorscale("Viridis", [0.1 + 0.8 * (1 - pos[v])])[0] for v in order}
        colour = {lab: scale[v] for lab, v in present.items()}
    else:
        index = {d: k for k, d in enumerate(distinct)}
        colour = {lab: PALETTE[index[json.dumps(v, sort_keys=True, default=str)] % len(PALETTE)]
                  for lab, v in present.items()}
    return {lab: colour.get(lab, "#999999") for lab in values}
