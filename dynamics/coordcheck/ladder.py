"""Ladders: runs that differ only in width (or only in depth) and seed, found among any runs (a coordcheck
folder, a sweep, the user's own recorded runs), and the tidy frame of their metrics that `judge.fit_rows` reads.

A run's width and depth are its config's, or, for runs a `--model` factory made, the factory's arguments
(config `coordcheck.width` / `coordcheck.depth`: dynamics.record stores the recorded feature size and the
number of blocks as width and depth, which for a CNN are C·H·W and the block count). τ = ℓ/(number of blocks).
Runs belong to one setting when their configs agree on every field but width, depth, seed and device.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from ..runs import store
from .judge import AXES

__all__ = ["Ladder", "axis_value", "find_ladders", "gather", "setting_label"]

# config fields that do not make another setting: the two axes, the seed, where it ran, the recorder's
# per-layer widths, and the coordcheck section (the factory's own width and depth)
FREE = ("width", "depth", "seed", "device", "widths", "coordcheck")


@dataclass
class Ladder:
    axis: str                         # width or depth: what varies
    fixed: dict[str, Any]             # the other axis's value
    setting: dict[str, Any]           # the config fields shared by every run
    runs: list[dict[str, Any]] = field(default_factory=list)   # run.json metas (with `path`)

    @property
    def values(self) -> list:
        return sorted({axis_value(m, self.axis) for m in self.runs})

    @property
    def seeds(self) -> int:
        return min(sum(axis_value(m, self.axis) == x for m in self.runs) for x in self.values)

    @property
    def label(self) -> str:
        other = ", ".join(f"{k} {v}" for k, v in self.fixed.items())
        return f"{setting_label(self.setting)} · over {self.axis} ({other})"


def axis_value(meta: dict[str, Any], axis: str) -> int | None:
    cfg = meta.get("config", {})
    value = (cfg.get("coordcheck") or {}).get(axis, cfg.get(axis))
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _seed(meta: dict[str, Any]) -> Any:
    return meta.get("config", {}).get("seed", meta.get("run_id"))


def _setting(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sorted(meta.get("config", {}).items()) if k not in FREE}


def setting_label(setting: dict[str, Any]) -> str:
    """The fields that name a setting at a glance: the factory, or param, act, block, backward."""
    if "model" in setting:
        return str(setting["model"])
    parts = [str(setting[k]) for k in ("param", "act") if k in setting]
    parts += [f"{k} {setting[k]}" for k in ("block", "backward", "beta", "lr") if k in setting
              and setting[k] != {"block": 1, "backward": "reused", "beta": 1.0, "lr": 0.5}[k]]
    return " ".join(parts) or "runs"


def find_ladders(metas: Iterable[dict[str, Any]], axes: Sequence[str] = AXES) -> list[Ladder]:
    """Every group of finite or recorded runs with one setting and one value of the other axis that spans
    at least two values of `axis`; complete and diverged runs only (a diverged run is a result)."""
    usable = [m for m in metas if m.get("kind") in ("finite", "imported") and
              m.get("status") in ("complete", "diverged") and all(axis_value(m, a) for a in AXES)]
    out = []
    for axis in axes:
        other = "depth" if axis == "width" else "width"
        groups: dict[str, Ladder] = {}
        for m in usable:
            setting = _setting(m)
            key = json.dumps([setting, axis_value(m, other)], sort_keys=True, default=str)
            groups.setdefault(key, Ladder(axis, {other: axis_value(m, other)}, setting)).runs.append(m)
        out += [g for g in groups.values() if len(g.values) >= 2]
    return sorted(out, key=lambda g: (g.axis != "width", g.label))


def gather(ladder: Ladder, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The ladder's per-layer metrics as one tidy frame: x, seed, depth (blocks), step, layer, metric, value,
    diverged (the run stopped before the ladder's last step). RunFormatError for a run that cannot be read."""
    parts = []
    last = max(int(m.get("steps_done") or 0) for m in ladder.runs)
    for m in ladder.runs:
        df = store.read_metrics(Path(m["path"]), metrics=metrics, columns=[store.STEP, store.LAYER,
                                                                           store.METRIC, store.VALUE])
        blocks = int(m["config"].get("depth") or max(int(df[store.LAYER].max()), 1))
        diverged = m.get("status") == "diverged" or int(m.get("steps_done") or 0) < last
        parts.append(df[df[store.LAYER] >= 0].assign(x=axis_value(m, ladder.axis), seed=str(_seed(m)),
                                                     depth=blocks, diverged=diverged))
    cols = ["x", "seed", "depth", store.STEP, store.LAYER, store.METRIC, store.VALUE, "diverged"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)
