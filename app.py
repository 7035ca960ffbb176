"""Home page of the dashboard: what the tool is in two lines, then the paper's claims as measured here (each
opens its evidence), how to start, and links to the pages.

Streamlit's pages-folder mode: this file is the home page and every `pages/*.py` is a page (no
st.navigation: a first request straight to a page's URL would skip this file). Run it with
`streamlit run app.py`. Bundled example runs are read from $DYNAMICS_DATA_DIR (default data/), the user's
runs from the sidebar folder box (default $DYNAMICS_RUNS).
"""
import streamlit as st

from dashboard import runs as R
from dashboard.claims import show_claims

st.set_page_config(page_title="dynamics", page_icon=":material/monitoring:", layout="wide")
st.title("Feature-learning dynamics of deep ResNets")
st.markdown(
    "Trains depth-μP residual networks, records how each layer's features and gradients move during training, "
    "and compares them with the infinite-width, infinite-depth limit (the SDE / NFD prediction) of Yao, Wu and "
    "Gao, [arXiv 2512.21075](https://arxiv.org/abs/2512.21075).  \n"
    "Below: the paper's claims as this tool measures them, each one click from its evidence; then your own runs.")
roots = R.folders("home")  # the sidebar folder box and the hosted-mode banner, as on every page
show_claims()  # "Claims vs measured" from the data folder's claims.json (python -m dynamics reproduce)

st.subheader("Start")
st.markdown("Train a run, then type `runs/` into the sidebar box *Your runs folder*. Per-layer quantities are "
            "plotted over depth time τ = ℓ/L, so networks of different depth lie over each other and over the limit.")
st.code("python -m dynamics train --width 256 --depth 16 --steps 100 --out runs/\nstreamlit run app.py",
        language="bash")
runs, broken = R.find_runs(roots)
st.metric("Runs found", len(runs), help="bundled examples, the runs behind the claims, your folder and uploads")
if broken:
    st.warning(f"{len(broken)} damaged run director{'y' if len(broken) == 1 else 'ies'}: see the Runs page.")
if not runs:
    st.info("No runs yet: train one with the command above, or point the sidebar box at a folder of runs.")
PAGES = [("pages/0_Claims.py", "Claims: each claim's points, fit and interval", ":material/scatter_plot:"),
         ("pages/1_Runs.py", "Runs: browse, compare configs, plot a metric", ":material/table_chart:"),
         ("pages/2_Trajectories.py", "Trajectories: layer × step heatmaps, per-layer curves, neuron quantiles; "
          "train a small run", ":material/ssid_chart:"),
         ("pages/3_Limit.py", "Limit: finite runs against the SDE / NFD prediction, over steps and depth",
          ":material/compare:"),
         ("pages/4_Coupling.py", "Coupling: transpose-correlation terms over depth and training, against chance",
          ":material/link:"),
         ("pages/5_Scaling.py", "Scaling: error vs width and depth, learning-rate transfer", ":material/trending_down:"),
         ("pages/6_Upload.py", "Upload: bring your own run logs", ":material/upload:"),
         ("pages/7_Coord_check.py", "Coord check: is every layer Θ(1) across width and depth?",
          ":material/straighten:")]
for page, label, icon in PAGES:
    if (R.REPO / page).exists():
        st.page_link(page, label=label, icon=icon)
