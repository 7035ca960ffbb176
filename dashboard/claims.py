"""The home page's "Claims vs measured" table: reads the claims.json that `python -m dynamics reproduce` writes
(found in the data folder or one level below it, e.g. data/reproduce/claims.json) and shows, per claim, the
paper's statement, the measured figure with its 95% interval, the raw and chance-corrected figures where a claim
has both (and a twin claim's test-loss gap, a contrast's other parametrization), the verdict in words (which
names the alternative the data had to exclude), a link to the claim's evidence (its points and fit, the Claims
page) and one to the page that shows its runs (dashboard.evidence builds both). docs/theory.md explains every
claim. Used by app.py: `show_claims()`.
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


def _fig(part: dict | None) -> str:
    if not part:
        return ""
    lo, hi = (part.get("ci") or [None, None])[:2]
    ci = f" (95% CI {_num(lo)} to {_num(hi)})" if lo is not None and hi is not None else " (no interval)"
    return f"{_num(part.get('measured'))}{ci}"


def other_figures_text(claim: dict) -> str:
    """The same statistic on the raw series (when the claim is fitted on the excess over chance), on the
    excess (when it is fitted raw), on the test loss (twins) or under the contrast parametrization; '' if none."""
    parts = []
    if claim.get("raw"):
        parts.append(f"chance-corrected (fitted) {_num(claim.get('measured'))}; raw {_fig(claim['raw'])}")
    if claim.get("excess"):
        parts.append(f"raw (fitted) {_num(claim.get('measured'))}; chance-corrected {_fig(claim['excess'])}")
    if claim.get("test"):
        parts.append(f"test-loss gap {_fig(claim['test'])}")
    if claim.get("contrast"):
        parts.append(f"{claim['contrast'].get('param', 'contrast')}: {_fig(claim['contrast'])}")
    return "; ".join(parts)


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
                f"the runs it wrote; each figure is a fitted slope (or a mean) with a 95% interval over seeds, and "
                f"*agrees* needs the interval to exclude a named alternative. **{counts['agrees']} agree, "
                f"{counts['disagrees']} disagree, {counts['inconclusive']} inconclusive.**")
    if doc.get("profile") == "smoke":
        st.warning("These claims come from the `smoke` profile: tiny sizes for tests, not results.")
    widths = [3.2, 2.8, 2.0, 2.8, 2.0]  # the last column holds two labelled links ("Evidence", a page name)
    head = st.columns(widths)
    for col, title in zip(head, ("Paper's statement", "Measured", "Raw / chance-corrected, test, contrast",
                                 "Verdict", "Shown in")):
        col.markdown(f"**{title}**")
    folder = E.runs_folder(path)
    for c in claims:
        cols = st.columns(widths)
        cols[0].markdown(f"{c.get('statement', '')} ({c.get('section', '')})")
        cols[1].markdown(f"{c.get('quantity', '')}: {measured_text(c)}")
        cols[2].markdown(other_figures_text(c) or "—")
        cols[3].markdown(verdict_text(c))
        if c.get("id") and c.get("points"):
            cols[4].page_link(E.CLAIMS_PAGE, label="Evidence", icon=":material/scatter_plot:",
                              query_params={"claim": str(c["id"])})
        link = E.run_link(folder, c)
        if link and (R.REPO / link[0]).exists():
            cols[4].page_link(link[0], label=PAGE_LABELS.get(link[0], link[0]), icon=":material/open_in_new:",
                              query_params=link[1], help="its bundled runs, at the metric and step the claim is about")
    st.caption(f"Rerun `{COMMAND}` to reproduce; the points files and runs sit beside its claims.json. Each "
               "claim's statistic, the alternative it must exclude and why: docs/theory.md §7–§8 in the "
               "repository. Coupling claims during training are fitted on the excess over the chance level "
               "(the same split with an independent matrix); the raw figure is shown beside.")
