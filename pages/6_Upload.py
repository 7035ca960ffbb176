"""Upload page: bring your own run logs; they appear in every other page (hosted: for this browser session only).

Files are imported by dynamics.runs.imports into a per-session folder (dashboard.uploads), which is added to
st.session_state["uploaded_roots"]; the run finder of every page reads that list. Folders of sessions idle
for longer than the TTL are deleted when this page loads.
"""
import pandas as pd
import streamlit as st

from dashboard import uploads as U
from dashboard.nav import nav

PAGE = "upload_page"
st.set_page_config(page_title="Upload · dynamics", page_icon=":material/upload:", layout="wide")
st.title("Upload your own runs")
nav()
st.markdown(
    "Drop one or more files: a **zipped run directory** of ours; our **metrics.parquet** (with its "
    "`run.json`); a **long CSV** with columns `step, layer, metric, value` (optional `stderr`); a **W&B "
    "history export** (CSV or Parquet with a `_step` column) or a W&B chart's **Export CSV**; a **W&B offline run** "
    "(its `run-*.wandb` file); a **zipped MLflow `mlruns/`** folder (or one experiment or run of it) or MLflow's "
    "**`mlflow.db`**; a **Trackio** project's `.db`; a **TensorBoard event file** (`events.out.tfevents.*`) or a "
    "**zipped TensorBoard log folder** (all its event files become one run). A tracker's file with several runs "
    "becomes one run each. Add a JSON file with the config (e.g. `log.csv.json`, or a bare object like "
    "`{\"depth\": 16, \"width\": 256}`) beside a CSV or Parquet file. Tags and columns named `layer_7/h_sq` or "
    "`h_sq/7` become per-layer metrics; other names become network scalars (docs/importing.md).")
if U.hosting.hosted():
    st.caption("Uploads are visible in this browser session only and deleted after "
               f"{U.ttl_seconds() / 3600:g} h without a visit.")
else:
    st.caption(f"Uploads are kept in {U.code(U.local_upload_dir())} on this computer: every page lists them, "
               "after a reload and a restart too. Delete a run by deleting its folder there; a second upload of "
               "the same name gets a new name, nothing is overwritten.")
U.clean_up()

name = st.text_input("Run name (optional)", key=f"{PAGE}.name", placeholder="from the file name",
                     help="the name of the next upload's run (several files: name, name-2, …); blank: the file's "
                          "name, or for a bare TensorBoard event file tensorboard-<date>-<time>. A name already "
                          "taken gets -2, -3, …")
files = st.file_uploader("Run logs", accept_multiple_files=True, key=f"{PAGE}.files",
                         help="zip (a run, a TensorBoard log folder or an MLflow mlruns/ folder), parquet, csv, json "
                              "(config sidecar), a W&B .wandb file, mlflow.db, a Trackio .db or TensorBoard "
                              "events.out.tfevents.* files")
outcomes = U.process(files or [], name)
if not outcomes:
    st.info("Nothing uploaded yet in this session.")
    st.stop()

for o in reversed(outcomes):
    if not o["ok"]:
        st.error(f"{U.code(o['file'])} was not imported: {U.md(o['error'])}")
        continue
    side = f", config from {U.code(o['sidecar'])}" if o.get("sidecar") else ""
    st.success(f"{U.code(o['file'])} imported as run {U.code(o['run'])} ({o['format']}{side}); it now appears on every page.")
    st.dataframe(pd.DataFrame(U.preview_rows(o["summary"])), hide_index=True)
    if o["skipped"]:
        st.markdown(U.skipped_markdown(o["skipped"]))
    else:
        st.caption("Nothing was skipped.")
st.page_link("pages/1_Runs.py", label="Open the Runs page", icon=":material/table_chart:")
