"""Claims page: the evidence behind one claim of `python -m dynamics reproduce`, drawn from its bundled points
file alone (the points, the fit with its 95% band, the paper's value and the alternative as guides), with a
link to the page that shows its runs when they are bundled, then every claim at a glance (the forest plot of
dashboard.claims). The claim lives in the URL (?claim=<id>); the home page's rows link here.
"""
import streamlit as st

from dashboard.boot import start
start("Claims · dynamics", ":material/scatter_plot:")  # first: the browser loads charts meanwhile
from dashboard import evidence as E, runs as R, widgets as W
from dashboard.claims import COMMAND, PAGE_LABELS, forest, measured_text, other_figures_text, verdict_text
from dynamics.figures import claim_figure

PAGE = "claims_page"
st.title("Claims: the evidence")
R.folders(PAGE)  # the sidebar and hosted-mode banner every page has
path = E.find_claims(R.data_dir())
if path is None:
    st.info(f"No measured claims yet. Make them with `{COMMAND}`.")
    st.stop()
try:
    listed = list(E.load(str(path), path.stat().st_mtime_ns)["claims"])
    claims = {str(c["id"]): c for c in listed}
except (OSError, ValueError, KeyError, TypeError) as e:
    st.error(f"Cannot read {path.name}: {e}. Rerun `{COMMAND}` to write it again.")
    st.stop()
ids = list(claims)
cid = W.choose(PAGE, "claim", "Claim", ids, ids[0],
               format_func=lambda i: f"{i}: {claims[i].get('statement', '')[:90]}")
claim = claims[cid]
st.markdown(f"**{claim.get('statement', '')}** ({claim.get('section', '')})  \nPaper, as encoded "
            f"({claim.get('kind') or claim.get('rule', '?')}): {claim.get('paper_wording', '')}")
st.markdown(f"{claim.get('quantity', '')}: {measured_text(claim)}  \n{other_figures_text(claim)}  \n"
            f"{verdict_text(claim)}")
if claim.get("detail"):
    st.caption(str(claim["detail"]))
try:
    rows, others = E.points(path, claim)
except (OSError, ValueError, KeyError) as e:
    st.error(f"Cannot read the points of `{cid}` ({claim.get('points')}): {e}. Rerun `{COMMAND}`.")
    st.stop()
x, y, stat = claim.get("x"), claim.get("y"), E.statistic(claim)
if not (isinstance(x, str) and isinstance(y, str) and {x, y} <= set(rows.columns)):
    st.info(f"`{cid}` is measured on more than one x or on columns its points file lacks ({x} vs {y}); its points:")
    st.dataframe(rows, hide_index=True)
    st.stop()
alt, alt_words = E.alternative(claim)
fit = claim.get("own") or claim  # a contrast: this setting's own slope, its reference's as the alternative
if claim.get("reference"):
    alt, alt_words = claim["reference"].get("measured"), "the reference setting's slope"
where = ", ".join(f"{k} = {v}" for k, v in (claim.get("where") or {}).items())
fig = claim_figure(rows, x=x, y=y, statistic=stat, measured=fit.get("measured"), ci=fit.get("ci"),
                   paper=claim.get("paper_value"), alternative=alt, alternative_words=alt_words,
                   others=others if len(others) and y in others else None, series=E.series(claim, rows),
                   title=f"{cid}: {y} vs {x}" + (f" ({where})" if where else ""))
W.show_chart(fig, rows, f"claim_{cid}", key=f"{PAGE}.chart")
hidden = int(((rows[y] <= 0) | (rows[x] <= 0)).sum()) if stat == "slope" else 0
if hidden:
    st.caption(f"{hidden} point(s) with {y} ≤ 0 cannot sit on log axes and are not drawn; the fit is made on "
               "the per-x means, which must be positive.")
st.caption("Band: the fan of lines whose slopes span the 95% interval, through the centre of the per-x means; "
           "dashed: the paper's value, dotted: the alternative it is tested against." if stat == "slope" else
           "Band: the 95% interval of the measured value; dashed: the paper's value, dotted: the alternative.")
link = E.run_link(E.runs_folder(path), claim)
if link and (R.REPO / link[0]).exists():
    st.page_link(link[0], label=f"Open its runs on the {PAGE_LABELS.get(link[0], link[0])} page",
                 icon=":material/open_in_new:", query_params=link[1])
else:
    st.caption("Its runs are not bundled (only the points are); rerun the command above to make them.")
st.subheader("All claims at a glance")
forest(listed, key=f"{PAGE}.forest")
