"""Each claim's evidence: where claims.json is, the claim's points (its `where` filter applied), the chart of
them (dynamics.figures.claim_figure) and the link to the page that shows its runs, carrying the metric, step,
tab and runs the claim is about.

Everything is read from the claim's own entry (points file, x, y, where, measured, ci, paper_value, and,
when present, alternative, statistic and raw / chance-corrected columns), so a regenerated claims.json with
more fields keeps working. The runs a claim names are found among the bundled runs (the `runs` folder beside
claims.json is one of the run roots, dashboard.runs.folders), so links carry run names, never server paths.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import loaders
from dynamics.metrics import METRICS
from dynamics.runs.store import RUN_JSON, RunFormatError

CLAIMS_JSON = "claims.json"
CLAIMS_PAGE = "pages/0_Claims.py"
MAX_LINKED_RUNS = 8
# How a claim's runs are best seen: page, metric, step ("last": the last step all its runs recorded) and tab.
# claims.json's own "view" wins over these; a claim not listed gets its metric from the name of its y column.
VIEWS: dict[str, dict[str, Any]] = {
    "init-width": {"page": "pages/3_Limit.py", "metric": "h_sq", "step": 0, "view": "Over depth"},
    "init-depth": {"page": "pages/3_Limit.py", "metric": "h_sq", "step": 0, "view": "Over depth"},
    "coupling-init-width": {"page": "pages/4_Coupling.py", "metric": "coupling_bwd", "step": 0},
    "coupling-init-depth": {"page": "pages/4_Coupling.py", "metric": "coupling_bwd", "step": 0},
    "coupling-train-depth": {"page": "pages/4_Coupling.py", "metric": "coupling_fwd", "step": "last"},
    "coupling-acc-depth": {"page": "pages/4_Coupling.py", "metric": "coupling_acc", "step": "last"},
    "fg-eigmin-width": {"page": "pages/2_Trajectories.py", "metric": "fg_eigmin", "view": "Over steps"},
    "train-limit-full": {"page": "pages/3_Limit.py", "metric": "h_move", "step": "last", "view": "Over depth"},
    "train-limit-none": {"page": "pages/3_Limit.py", "metric": "h_move", "step": "last", "view": "Over depth"},
    "blocks-amove": {"page": "pages/2_Trajectories.py", "metric": "a_move", "step": "last", "view": "Over depth"},
    "lr-transfer": {"page": "pages/5_Scaling.py", "loss": "loss", "metric": None},  # loss vs lr: no per-layer metric
}
_PREFIXES = ("err_", "init_", "train_", "step1_", "final_")
_SUFFIXES = ("_min", "_final", "_excess", "_raw", "_chance")


def find_claims(root: Path) -> Path | None:
    """root/claims.json, else the newest root/*/claims.json; None when there is none."""
    direct = root / CLAIMS_JSON
    if direct.is_file():
        return direct
    try:
        found = [p for p in root.glob(f"*/{CLAIMS_JSON}") if p.is_file()]
    except OSError:
        return None
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def runs_folder(claims_path: Path | None) -> Path | None:
    """The folder of the runs the claims name (claims.json's runs_dir, default `runs`, beside it)."""
    if claims_path is None:
        return None
    try:
        doc = load(str(claims_path), claims_path.stat().st_mtime_ns)
    except (OSError, ValueError):
        doc = {}
    folder = claims_path.parent / str(doc.get("runs_dir") or "runs")
    return folder if folder.is_dir() else None


@st.cache_data(max_entries=4, show_spinner=False)
def load(path: str, mtime: int) -> dict:
    return json.loads(Path(path).read_text())


@st.cache_data(max_entries=32, show_spinner=False)
def _points(path: str, mtime: int) -> pd.DataFrame:
    return pd.read_parquet(path)


def points(claims_path: Path, claim: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the claim's rows, the other rows of its points file): rows match every `where` item."""
    f = claims_path.parent / str(claim["points"])
    df = _points(str(f), f.stat().st_mtime_ns)
    keep = pd.Series(True, index=df.index)
    for k, v in (claim.get("where") or {}).items():
        if k in df:
            keep &= df[k].astype(str) == str(v) if not isinstance(v, (bool, int, float)) else df[k] == v
    return df[keep], df[~keep]


def metric_of(column: str) -> str | None:
    """The recorded metric a points column is made from: err_h_move -> h_move, init_coupling_bwd -> coupling_bwd."""
    name = column
    for _ in range(3):
        if name in METRICS:
            return name
        name = next((name[len(p):] for p in _PREFIXES if name.startswith(p)), name)
        name = next((name[:-len(s)] for s in _SUFFIXES if name.endswith(s)), name)
    return name if name in METRICS else None


def statistic(claim: dict) -> str:
    """"slope" (log-log rate) or "mean" (a level such as a signed gap): claims.json's `statistic` or `method`,
    else read from its `quantity` ("slope of log …")."""
    s = str(claim.get("statistic") or "").lower()
    if s:
        return "slope" if "slope" in s else "mean"
    method = claim.get("method")
    if method == "contrast":  # a difference of two settings' statistics: the chart shows this setting's own
        method = (claim.get("extra") or {}).get("base")
        return "mean" if method in ("seed_mean", "mean") else "slope"
    if method in ("seed_mean", "mean"):  # a level over seeds (e.g. a signed paired gap)
        return "mean"
    return "slope" if str(claim.get("quantity", "slope")).startswith("slope") else "mean"


def alternative(claim: dict) -> tuple[float | None, str]:
    """(value, words) of the alternative the claim is tested against, in whichever form claims.json gives it
    (a number, or an object with value/slope and words); for the old rules: vanishes/persists -> slope 0."""
    alt = claim.get("alternative")
    if isinstance(alt, dict):
        value = next((alt[k] for k in ("value", "slope", "rate") if isinstance(alt.get(k), (int, float))), None)
        return value, str(alt.get("words") or alt.get("statement") or "")
    if isinstance(alt, (int, float)) and not isinstance(alt, bool):
        return float(alt), ""
    if isinstance(alt, str):
        return None, alt
    if claim.get("rule") == "vanishes":
        return 0.0, "no decay"
    if claim.get("rule") == "persists":
        return 0.0, "the boundary: below it the quantity vanishes"
    return None, ""


def series(claim: dict, df: pd.DataFrame) -> list[tuple]:
    """Extra columns drawn beside y: raw / chance / corrected companions named by the claim (y_raw, y_chance,
    y_corrected, or a `raw`/`chance` object with a `y` and maybe its own fitted `measured` slope), else found
    by name in the points file. Items: (column, label) or (column, label, slope)."""
    y, out = claim["y"], []
    for key in ("y_raw", "y_chance", "y_corrected", "raw", "chance", "corrected"):
        v = claim.get(key)
        col = v.get("y") if isinstance(v, dict) else v
        if isinstance(col, str) and col in df and col != y:
            slope = v.get("measured") if isinstance(v, dict) else None
            out.append((col, key.replace("y_", ""), slope) if isinstance(slope, (int, float)) else
                       (col, key.replace("y_", "")))
    base = y[:-len("_excess")] if y.endswith("_excess") else y
    for col, label in ((base, "raw"), (f"{base}_raw", "raw"), (f"{base}_chance", "chance level")):
        if col in df and col != y and col not in [c for c, *_ in out]:
            out.append((col, label))
    return out


def _num(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3g}"


def bundled_runs(folder: Path | None, claim: dict) -> list[str]:
    """The claim's runs present in the bundled runs folder (at most MAX_LINKED_RUNS; limit runs included)."""
    if folder is None:
        return []
    names = [r for r in claim.get("runs") or [] if (folder / str(r) / RUN_JSON).is_file()]
    finite = [r for r in names if _kind(folder / r) != "limit"]
    limits = [r for r in names if r not in finite]
    return finite[:MAX_LINKED_RUNS - min(len(limits), 1)] + limits[:1]


def _kind(run_dir: Path) -> str:
    try:
        return str(json.loads((run_dir / RUN_JSON).read_text()).get("kind", "finite"))
    except (OSError, ValueError):
        return "finite"


def last_step(run_dirs: list[Path], metric: str | None) -> int | None:
    """The last step at which every run recorded `metric` (None when they share none)."""
    common = None
    for d in run_dirs:
        try:
            steps = set(loaders.catalog(str(d), loaders.mtime(str(d))).get(metric, (False, ()))[1])
        except RunFormatError:
            continue
        common = steps if common is None else common & steps
    return max(common) if common else None


def run_link(folder: Path | None, claim: dict) -> tuple[str, dict[str, Any]] | None:
    """(page, query params) of the page that shows the claim's bundled runs, or None when none are bundled."""
    names = bundled_runs(folder, claim)
    if not names:
        return None
    view = {**VIEWS.get(claim.get("id"), {}), **{k: v for k, v in (claim.get("view") or {}).items() if v is not None}}
    page = view.pop("page", None) or claim.get("page")
    view.setdefault("metric", metric_of(str(claim.get("y", ""))))
    limits = [r for r in names if _kind(folder / r) == "limit"]
    runs = [r for r in names if r not in limits] if page == "pages/3_Limit.py" else names
    if page != "pages/3_Limit.py" and runs == limits:  # only limit runs (e.g. a full-vs-none limit gap): no other
        return None                                     # page selects them, so the evidence chart is the view
    if view.get("step") == "last":
        view["step"] = last_step([folder / r for r in names], view.get("metric"))
    params = {"runs": runs, **({"limit": limits[0]} if limits and page == "pages/3_Limit.py" else {}),
              **{k: v if isinstance(v, list) else str(v) for k, v in view.items() if v is not None}}
    return page, params
