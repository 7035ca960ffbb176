"""Runs page: what runs are there, how do their configs differ, and one metric across the chosen runs.

A per-layer metric is drawn over depth time τ = ℓ/L at one recorded step; a network scalar (layer −1,
e.g. loss) over steps. The view lives in the URL (?runs=…&metric=…&step=…, see dashboard.state).
"""
import streamlit as st

from dashboard.boot import start
start("Runs · dynamics")  # first: the browser loads charts meanwhile
from dashboard import grouping as G, runs as R
from dashboard.state import reopen_when, seed_widget, set_url
from dashboard.widgets import show_chart
from dynamics.figures import RUN, depth_profile_figure, metric_over_steps_figure

PAGE = "runs_page"
st.title("Runs")

runs = R.load_runs(PAGE)
table = R.run_table(runs)
st.dataframe(table, hide_index=True)
if (table["status"] == "stale").any():
    st.caption("**stale**: the run says `running` but its writer stopped (its process is gone, or run.json has not "
               "been updated for several flush periods); the steps it flushed are readable.")
chosen = R.pick_runs(PAGE, runs)
G.controls(PAGE, chosen)  # sidebar: average seeds, colour by a config field
if not chosen:
    st.info("Pick one or more runs in the sidebar to compare them.")
    st.stop()

st.subheader("How the chosen runs differ")
diff = R.config_diff(chosen)
if len(chosen) < 2:
    st.caption("Pick two or more runs to see the config fields that differ.")
elif diff.columns.empty:
    st.caption("The chosen runs share every config field.")
else:
    st.dataframe(diff)

catalog, errors = R.metric_catalog(chosen)
R.show_problems(errors)
if not catalog:
    st.info("The chosen runs have recorded no metrics yet; pick other runs or wait for a flush.")
    st.stop()

st.subheader("One metric across runs")
key = f"{PAGE}.metric"
seed_widget(key, "metric", list(catalog), "h_sq" if "h_sq" in catalog else next(iter(catalog)))
metric = st.selectbox("Metric", list(catalog), key=key,
                      format_func=lambda m: f"{m}: {R.caption(m, chosen)}" if R.caption(m, chosen) else m)
set_url(metric=metric)
network, steps = catalog[metric]
diverged = {r.label for r in chosen if r.meta.get("status") == "diverged"}
key = f"{PAGE}.log_y"
seed_widget(key, "log_y", [False, True], False)
log_y = st.toggle("log y axis", key=key)
set_url(log_y=log_y or None)

if network:
    set_url(step=None)
    shown, errors = R.metric_frame(chosen, metric)
    shown = G.apply(shown)
    fig = metric_over_steps_figure(shown, metric=metric, caption=R.caption(metric, chosen), log_y=log_y,
                                   title=f"{metric} over steps", diverged=diverged)
    name = metric
else:  # one step of a per-layer metric: read only that step (a big run holds millions of rows)
    key = f"{PAGE}.step"
    opening = R.opening_step(chosen, metric, steps)
    reopen_when(key, (tuple(r.label for r in chosen), metric), opening)
    seed_widget(key, "step", steps, opening)
    step = st.select_slider("Step", steps, key=key) if len(steps) > 1 else steps[0]
    set_url(step=step)
    shown, errors = R.metric_frame(chosen, metric, steps=(step,))
    unreadable = {r.label for r in chosen if any(e.startswith(f"`{r.label}`") for e in errors)}
    missing = sorted({r.label for r in chosen} - set(shown[RUN]) - unreadable)
    if missing:
        st.caption(f"Not recorded at step {step}: {', '.join(missing)}.")
    shown = G.apply(shown)
    fig = depth_profile_figure(shown, metric=metric, caption=R.caption(metric, chosen), log_y=log_y,
                               title=f"{metric} over depth at step {step}", diverged=diverged)
    name = f"{metric}_step{step}"
R.show_problems(errors)
show_chart(fig, shown, name, key=f"{PAGE}.chart")
