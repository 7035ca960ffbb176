"""The home page's "Claims vs measured" table: reads the claims.json that `python -m dynamics reproduce` writes
(found in the data folder or one level below it, e.g. data/reproduce/claims.json) and shows, per claim, the
paper's statement, the measured figure with its 95% interval, the verdict in words, a link to the claim's
evidence (its points and fit, the Claims page) and one to the page that shows its runs (dashboard.evidence
builds both). Used by app.py: `show_claims()`.
"""
from __future__ import annotations

import math

import streamlit as st

from dashboard import evidence as E, runs as R
from dashboard.evidence import CLAIMS_JSON, find_claims  # noqa: F401 (the table's readers)

COMMAND = "python -m dynamics reproduce --profile cpu --out data/reproduce"
PAGE_LABELS = {"pages/1_Runs.py": "Runs", "pages/2_Trajectories.py": "Trajectories", "pages/3_Limit.py": "Limit", "pages/4_Coupling.py": "Coupling",
               "pages/5_Scaling.py": "Scaling"}
VERDICT_WORDS = {"agrees": ":green[:material/check_circle:] agrees with the paper",
                 "disagrees": ":red[:material/cancel:] DISAGREES with the paper",
                 "inconclusive": ":orange[:material/help:] inconclusive: the data allow either answer"}


def _load(path: str, mtime: int) -> dict:
    return E.load(path, mtime)


def _num(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3g}"


def measured_text(claim: dict) -> str:
    """'−0.98 (95% CI −1.1 to −0.86)'; the interval is said to be missing when it is."""
    lo, hi = (claim.get("ci") or [None, None])[:2]
    ci = f"95% CI {_num(lo)} to {_num(hi)}" if lo is not None and hi is not None else "no interval"
    paper = claim.get("paper_value")
    expect = f"; paper: {_num(paper)}" if paper is not None else \
        {"vanishes": "; paper: negative", "persists": "; paper: not negative"}.get(claim.get("rule"), "")
    return f"{_num(claim.get('measured'))} ({ci}{expect})"


def verdict_text(claim: dict) -> str:
    words = VERDICT_WORDS.get(claim.get("verdict"), f"? {claim.get('verdict')}")
    return f"{words}: {claim['why']}" if claim.get("why") else words


def show_claims() -> None:
    """The table, or the command that makes it when no claims.json is found."""
    st.subheader("Claims vs measured")
    try:
        path = find_claims(R.data_dir())
    except OSError:
        path = None
    if path is None:
        st.markdown(f"No measured claims yet. Make them with `{COMMAND}` (synthetic data on CPU; "  # not st.info:
                    "`--profile smoke` takes a minute or two but its numbers are not results).")  # that means "no runs"
        return
    try:
        doc = _load(str(path), path.stat().st_mtime_ns)
        claims = list(doc["claims"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        st.error(f"Cannot read {path.name}: {e}. Rerun `{COMMAND}` to write it again.")
        return
    counts = {v: sum(c.get("verdict") == v for c in claims) for v in VERDICT_WORDS}
    st.markdown(f"Measured by this tool (profile `{doc.get('profile', '?')}`, {doc.get('created', '?')}) from "
                f"the runs it wrote; each figure is a fitted log-log slope (or a mean) with its 95% interval. **{counts['agrees']} agree, "
                f"{counts['disagrees']} disagree, {counts['inconclusive']} inconclusive.**")
    if doc.get("profile") == "smoke":
        st.warning("These claims come from the `smoke` profile: tiny sizes for tests, not results.")
    head = st.columns([4, 3, 3, 1.6])
    for col, title in zip(head, ("Paper's statement", "Measured slope", "Verdict", "Shown in")):
        col.markdown(f"**{title}**")
    folder = E.runs_folder(path)
    for c in claims:
        cols = st.columns([4, 3, 3, 1.6])
        cols[0].markdown(f"{c.get('statement', '')} ({c.get('section', '')})")
        cols[1].markdown(f"{c.get('quantity', '')}: {measured_text(c)}")
        cols[2].markdown(verdict_text(c))
        if c.get("id") and c.get("points"):
            cols[3].page_link(E.CLAIMS_PAGE, label="Evidence", icon=":material/scatter_plot:",
                              query_params={"claim": str(c["id"])})
        link = E.run_link(folder, c)
        if link and (R.REPO / link[0]).exists():
            cols[3].page_link(link[0], label=PAGE_LABELS.get(link[0], link[0]), icon=":material/open_in_new:",
                              query_params=link[1], help="its bundled runs, at the metric and step the claim is about")
    st.caption(f"Rerun `{COMMAND}` to reproduce; the points files and runs sit beside its claims.json.")
