"""The home page's "Claims vs measured": reads the claims.json that `python -m dynamics reproduce` writes (found in
the data folder or one level below it, e.g. data/reproduce/claims.json) and shows them at a glance: one forest plot
(dynamics.figures.claims: each claim's estimate and interval on its own axis against the paper's value or range and
the alternative, grouped by the paper's statement, coloured by verdict), then one short row per claim (claim, kind,
setting, verdict, estimate [interval]) that opens on the statistic, the paper's wording, the other readings (raw /
chance-corrected, stream share, incoherent sum, test loss, a contrast's two settings), the verdict in words, and the
links to its evidence (the Claims page) and to the page that shows its runs (dashboard.evidence builds both).
docs/theory.md §7–§8 explain every claim. Used by app.py (`show_claims()`) and the Claims page (`forest`).
"""
from __future__ import annotations

import math

import streamlit as st

from dashboard import evidence as E, runs as R
from dashboard.evidence import CLAIMS_JSON, find_claims  # noqa: F401 (the table's readers)
from dynamics.figures import chart_config
from dynamics.figures.claims import claims_forest_figure, claims_frame, setting_text

COMMAND = "python -m dynamics reproduce --profile cpu --out runs/repro --bundle data/reproduce"
PAGE_LABELS = {"pages/1_Runs.py": "Runs", "pages/2_Trajectories.py": "Trajectories", "pages/3_Limit.py": "Limit", "pages/4_Coupling.py": "Coupling",
               "pages/5_Scaling.py": "Scaling"}
VERDICT_WORDS = {"agrees": ":green[:material/check_circle:] agrees with the paper",
                 "disagrees": ":red[:material/cancel:] DISAGREES with the paper",
                 "inconclusive": ":orange[:material/help:] inconclusive: the data allow either answer"}
VERDICT_SHORT = {"agrees": ":green[**agrees**]", "disagrees": ":red[**disagrees**]",
                 "inconclusive": ":orange[**inconclusive**]"}
PAPER_WORDS = {"vanishes": "negative", "persists": "not negative", "contrast": "a positive difference"}


def _load(path: str, mtime: int) -> dict:
    return E.load(path, mtime)


def _num(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3g}"


def measured_text(claim: dict) -> str:
    """'−0.98 (95% CI −1.1 to −0.86)'; the interval is said to be missing when it is."""
    lo, hi = (claim.get("ci") or [None, None])[:2]
    ci = f"95% CI {_num(lo)} to {_num(hi)}" if lo is not None and hi is not None else "no interval"
    paper, kind = claim.get("paper_value"), claim.get("kind") or claim.get("rule")
    if paper is not None:
        expect = f"; paper: ≤ {_num(paper)}, a bound" if kind == "bound" else f"; paper: {_num(paper)}"
    else:
        expect = f"; paper: {PAPER_WORDS[kind]}" if kind in PAPER_WORDS else ""
    return f"{_num(claim.get('measured'))} ({ci}{expect})"


def row_label(claim: dict) -> str:
    """One line per claim: claim · kind · setting · verdict · estimate [interval]."""
    lo, hi = (claim.get("ci") or [None, None])[:2]
    ci = f"[{_num(lo)}, {_num(hi)}]" if lo is not None and hi is not None else "[no interval]"
    verdict = VERDICT_SHORT.get(claim.get("verdict"), str(claim.get("verdict")))
    if claim.get("identified") is False:
        verdict += " (not identified)"
    parts = [f"**{claim.get('id', '?')}**", claim.get("kind") or claim.get("rule") or "", setting_text(claim),
             verdict, f"{_num(claim.get('measured'))} {ci}"]
    return " · ".join(p for p in parts if p and p != "—")


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
    if claim.get("stream"):
        parts.append(f"as a share of the stream ((β²/L)·coupling_fwd): {_fig(claim['stream'])}")
    if claim.get("incoherent"):
        parts.append(f"incoherent sum (the sum of the blocks' norms): {_fig(claim['incoherent'])}")
    for key, words in (("own", "this setting alone"), ("reference", "the reference")):
        if claim.get(key):
            where = ", ".join(f"{k} = {v}" for k, v in (claim[key].get("where") or {}).items() if k != "usable")
            parts.append(f"{words} ({where}): {_fig(claim[key])}")
    return "; ".join(parts)


def verdict_text(claim: dict) -> str:
    words = VERDICT_WORDS.get(claim.get("verdict"), f"? {claim.get('verdict')}")
    return f"{words}: {claim['why']}" if claim.get("why") else words


def forest(claims: list[dict], key: str) -> None:
    """The forest plot of every claim (dynamics.figures.claims)."""
    fig = claims_forest_figure(claims_frame(claims))
    st.plotly_chart(fig, config=chart_config("claims-forest"), key=key)
    st.caption("Each row on its own axis: the estimate and its 95% interval (colour: verdict; open marker: the fit "
               "is not identified; ×: no interval), the paper's value or allowed range (green, dashed; a band for a "
               "bound or a sign) and the alternative the data must exclude (red, dotted).")


def show_claims() -> None:
    """The forest plot and the rows, or the command that makes them when no claims.json is found."""
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
    st.markdown(f"Measured by this tool (profile `{doc.get('profile', '?')}`, {doc.get('created', '?')}"
                + (f", rejudged {doc['rejudged']}" if doc.get("rejudged") else "") + ") from the runs it wrote; "
                "each figure is a fitted slope, exponent or difference with a 95% interval, read by the kind of the "
                "paper's statement (a rate, a bound, persists, vanishes, a contrast), and *agrees* needs the interval "
                f"to exclude a named alternative. **{counts['agrees']} agree, {counts['disagrees']} disagree, "
                f"{counts['inconclusive']} inconclusive.**")
    if doc.get("profile") == "smoke":
        st.warning("These claims come from the `smoke` profile: tiny sizes for tests, not results.")
    forest(claims, key="home.claims_forest")
    folder = E.runs_folder(path)
    for c in claims:
        with st.expander(row_label(c)):
            _details(c, folder)
    st.caption(f"Rerun `{COMMAND}` to reproduce (`--rejudge` applies the current rules to the stored points "
               "alone); the points files and runs sit beside its claims.json. Each claim's statistic, the "
               "alternative it must exclude and why: docs/theory.md §7–§8 in the repository. Coupling claims during "
               "training are fitted on the excess over the chance level (the same split with an independent "
               "matrix); the raw figure is shown beside.")


def _details(c: dict, folder) -> None:
    """A claim's statistic, the paper's wording, its other readings, the verdict in words and its links."""
    paper = c.get("paper_wording") or c.get("statement", "")
    st.markdown(f"{c.get('statement', '')} ({c.get('section', '')})  \nPaper, as encoded "
                f"({c.get('kind') or c.get('rule', '?')}): {paper}")
    st.markdown(f"{c.get('quantity', '')}: {measured_text(c)}")
    other = other_figures_text(c)
    if other:
        st.markdown(other)
    st.markdown(verdict_text(c))
    cols = st.columns(2)
    if c.get("id") and c.get("points"):
        cols[0].page_link(E.CLAIMS_PAGE, label="Evidence", icon=":material/scatter_plot:",
                          query_params={"claim": str(c["id"])})
    link = E.run_link(folder, c)
    if link and (R.REPO / link[0]).exists():
        cols[1].page_link(link[0], label=PAGE_LABELS.get(link[0], link[0]), icon=":material/open_in_new:",
                          query_params=link[1], help="its bundled runs, at the metric and step the claim is about")
