"""`python -m dynamics reproduce --rejudge --out DIR`: the verdicts of DIR/claims.json again under the current rules
(kinds, identification, readings), from the points files the bundle stores alone: no run is trained, solved or read.

Every claim of the bundle is recomputed from its points file (verdicts.recompute's contract), so a rule that only
changes how the evidence is read can be applied without the hours of CPU a full rerun takes. The coupling claims are
rebuilt by their own builder (sweeps.coupling_claims_from, which reads only the two sweeps' points, after adding the
stream and incoherent readings of experiments.add_readings to them); every other claim by verdicts.claim from the
fields it stores (points file, x, y, where, method, alternative, ...), with its kind and wording from
statements.STATEMENTS. Companion figures a builder computed from runs (a test-loss gap, the contrast of the
learning-rate claim) are kept. Rejudging a rejudged bundle changes nothing (tested).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from ..runs import store
from . import sweeps
from .common import CLAIMS_JSON, clean_json, save
from .experiments import EXPERIMENTS, add_readings, summary_of, write_summary
from .stats import Alternative
from .verdicts import claim

__all__ = ["rejudge", "rebuild"]

_KEPT = ("excess", "test", "contrast", "stream", "incoherent")  # companions a builder made beside the claim
_CONTRAST_KEYS = ("base", "against", "where", "base_quantity")  # what claim() adds to a contrast's extra


def rebuild(c: dict, points: pd.DataFrame) -> dict:
    """The claim `c` made again by verdicts.claim from its stored fields and its points file."""
    stored = dict(c.get("extra") or {})
    contrast = c.get("method") == "contrast"
    method = stored.get("base", "seed_means") if contrast else c.get("method", "points")
    quantity = stored.get("base_quantity") if contrast else c.get("quantity")
    extra = {k: v for k, v in stored.items() if k not in _CONTRAST_KEYS}
    a = c["alternative"]
    paper = c["paper_value"] if c.get("paper_value") is not None else c.get("rule")
    theory = c.get("theory", "")
    new = claim(c["id"], c.get("section", ""), c.get("statement", ""), points, c["points"], c["x"], c["y"],
                paper=paper, alt=Alternative(a["value"], a.get("words", ""), a.get("side", "point")),
                method=method, where=c.get("where") or None, page=c.get("page", ""), runs=c.get("runs") or [],
                detail=c.get("detail", ""), view=c.get("view") or None, tol=c.get("tol", 0.0),
                raw_y=(c.get("raw") or {}).get("y"), quantity=quantity, seed_col=c.get("seed_col", "seed"),
                extra=extra, theory=theory.split("#", 1)[1] if "#" in theory else "")
    return {**new, **{k: c[k] for k in _KEPT if k in c and k not in new}}


def rejudge(out: Path, log: Callable[[str], None] = print) -> dict:
    """Rewrite out/claims.json under the current rules from out's points files; returns its content."""
    out = Path(out)
    doc = json.loads((out / CLAIMS_JSON).read_text())
    frames: dict[str, pd.DataFrame] = {}

    def points(file: str) -> pd.DataFrame:
        if file not in frames:
            frames[file] = pd.read_parquet(out / file)
        return frames[file]
    coupling = {}
    names = ("coupling-width", "coupling-depth")
    if all((out / f"points-{n}.parquet").exists() for n in names):
        pts = []
        for n in names:
            p = points(f"points-{n}.parquet")
            if "coupling_acc_inc" not in p:  # the readings' columns, derived from the stored ones
                p = add_readings(p)
                save(out, n, p)
                log(f"points-{n}.parquet: added the stream and incoherent readings")
            pts.append(p)
        coupling = {c["id"]: c for c in sweeps.coupling_claims_from(*pts)}
    claims, placed = [], False
    for c in doc["claims"]:
        if c["id"] in coupling:
            if not placed:  # the coupling claims in their builder's order, new readings included
                claims += list(coupling.values())
                placed = True
            continue
        claims.append(rebuild(c, points(c["points"])))
    if (out / "summary.parquet").exists():  # the experiments' own summaries, judged by the same kinds
        for name in EXPERIMENTS:
            if (out / f"points-{name}.parquet").exists():
                write_summary(out, name, summary_of(name, points(f"points-{name}.parquet")))
    for c in claims:
        log(f"{c['verdict']:>12}  {c['id']:<28} {c['kind']:<9} {c['why'][:110]}")
    doc = {**doc, "rejudged": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "claims": [clean_json(c) for c in claims]}
    store.write_json_atomic(out / CLAIMS_JSON, doc)
    return doc
