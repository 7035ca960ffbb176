"""`python -m dynamics reproduce --out OUT --bundle DEST`: a shareable copy of a reproduce folder, what the
repository ships as data/reproduce: claims.json, every points file, summary.parquet, and per claim the few runs its
links open (the dashboard's Claims page links each claim to the page that shows its bundled runs).

Which runs: where the claim's points name runs per row (RUN_COLUMNS: the run, its twin, its limit), the first
seed's runs at each x the claim reads (its widths or depths, evenly spread over them when there are more than `per_claim`), so a bundled
link shows the claim's whole span; otherwise its first runs in claims.json's order. A limit run brings the finite
run it was solved like (the Limit page pairs them). DEST is rebuilt beside itself and swapped in, so a failure
leaves the old bundle whole.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..runs import store
from .common import CLAIMS_JSON
from .verdicts import select

__all__ = ["bundle", "claim_runs"]

PER_CLAIM = 4
FALLBACK = 2   # runs per claim whose points do not name runs
# points columns that name a run of the row: the run itself, twins, the limit it was compared with
RUN_COLUMNS = ("run_id", "run", "run_reused", "run_decoupled", "run_full", "run_none", "limit_run", "like")


def claim_runs(src: Path, claim: dict, per_claim: int = PER_CLAIM) -> list[str]:
    """The run folders (names under src/runs) bundled for one claim, limit runs' finite twins included."""
    runs_dir = src / "runs"
    names: list[str] = []
    try:
        pts = select(pd.read_parquet(src / str(claim.get("points"))), claim.get("where"))
    except (OSError, ValueError, KeyError):
        pts = pd.DataFrame()
    x = claim.get("x")
    cols = [c for c in RUN_COLUMNS if c in pts]
    if len(pts) and cols and x in pts:
        first = pts[pts["seed"] == pts["seed"].min()] if "seed" in pts else pts
        xs = sorted(first[x].unique())
        if len(xs) > per_claim:
            xs = [xs[int(i)] for i in np.unique(np.linspace(0, len(xs) - 1, per_claim).round())]
        for v in xs:
            row = first[first[x] == v].iloc[0]
            names += [row[c] for c in cols if isinstance(row[c], str)]
    else:
        names = [str(r) for r in (claim.get("runs") or [])[:FALLBACK]]
    out = []
    for name in names:
        if not (runs_dir / name / store.RUN_JSON).is_file():
            continue
        out.append(name)
        meta = store.read_meta(runs_dir / name)
        like = (meta.get("limit") or {}).get("like") if meta.get("kind") == "limit" else None
        if like and (runs_dir / like / store.RUN_JSON).is_file():
            out.append(like)
    return list(dict.fromkeys(out))


def bundle(src: Path, dest: Path, per_claim: int = PER_CLAIM) -> dict:
    """Copy src's claims, points and each claim's bundled runs into dest (rebuilt, then swapped in). Returns
    {"claims": n, "runs": n, "bytes": total size}."""
    src, dest = Path(src), Path(dest)
    doc = json.loads((src / CLAIMS_JSON).read_text())
    tmp = dest.with_name(dest.name + ".bundling")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "runs").mkdir(parents=True)
    files = [src / CLAIMS_JSON, *sorted(src.glob("points-*.parquet"))]
    if (src / "summary.parquet").exists():
        files.append(src / "summary.parquet")
    for f in files:
        shutil.copy2(f, tmp / f.name)
    runs = list(dict.fromkeys(r for c in doc["claims"] for r in claim_runs(src, c, per_claim)))
    for name in runs:
        shutil.copytree(src / "runs" / name, tmp / "runs" / name)
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        if old.exists():
            shutil.rmtree(old)
        dest.rename(old)
    tmp.rename(dest)
    if old.exists():
        shutil.rmtree(old)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    return {"claims": len(doc["claims"]), "runs": len(runs), "bytes": size}
