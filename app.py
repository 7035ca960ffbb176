"""Home page of the dashboard: what the tool is, how to start, and links to the pages.

Streamlit's pages-folder mode: this file is the home page and every `pages/*.py` is a page (no
st.navigation; TESTING.md says why). Run it with `streamlit run app.py`. Bundled example runs are read from
$DYNAMICS_DATA_DIR (default data/), the user's runs from the sidebar folder box (default $DYNAMICS_RUNS).
"""
import streamlit as st

from dashboard import runs as R
from dashboard.claims import show_claims

st.set_page_config(page_title="dynamics", page_icon=":material/monitoring:", layout="wide")
st.title("Feature-learning dynamics of deep ResNets")
show_claims()  # "Claims vs measured" from the data folder's claims.json (python -m dynamics reproduce)
st.markdown(
    "This tool trains depth-μP residual networks, records how every layer's features and gradients move "
    "during training, and compares them with the network's infinite-width, infinite-depth limit, following "
    "Yao, Wu and Gao, *Feature Learning Dynamics in Infinite-Depth Neural Networks* "
    "([arXiv 2512.21075](https://arxiv.org/abs/2512.21075)). Per-layer quantities are plotted over depth "
    "time τ = ℓ/L, so networks of different depth can be laid over each other and over the limit.")

st.subheader("Start")
st.markdown("Train a run, then open the dashboard and type `runs/` into the sidebar box *Your runs folder*:")
st.code("python -m dynamics train --width 256 --depth 16 --steps 100 --out runs/\nstreamlit run app.py",
        language="bash")

roots = R.folders("home")
runs, broken = R.find_runs(roots)
st.metric("Runs found", len(runs), help="in " + " and ".join(str(p) for p in roots.values()))
if broken:
    st.warning(f"{len(broken)} damaged run director{'y' if len(broken) == 1 else 'ies'}: see the Runs page.")
if not runs:
    st.info("No runs yet: train one with the command above, or point the sidebar box at a folder of runs.")
PAGES = [("pages/1_Runs.py", "Runs: browse, compare configs, plot a metric", ":material/table_chart:"),
         ("pages/2_Trajectories.py", "Trajectories: layer × step heatmaps, per-layer curves, neuron quantiles; "
          "train a small run", ":material/ssid_chart:"),
         ("pages/3_Limit.py", "Limit: finite runs against the infinite-depth prediction", ":material/compare:"),
         ("pages/4_Coupling.py", "Coupling: transpose-correlation terms over depth and training",
          ":material/link:"),
         ("pages/5_Scaling.py", "Scaling: error vs width and depth, learning-rate transfer",
          ":material/trending_down:"),
         ("pages/6_Upload.py", "Upload: bring your own run logs", ":material/upload:")]
for page, label, icon in PAGES:
    if (R.REPO / page).exists():  # the Upload page arrives with its own issue
        st.page_link(page, label=label, icon=icon)
