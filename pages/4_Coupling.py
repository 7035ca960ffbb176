"""Coupling page: how large are the transpose-correlation terms of THEORY §5, where in depth, and over training?

For one coupling metric (coupling_fwd, coupling_bwd, their _frac fractions of the whole message, or the
accumulated coupling_acc; blocks ℓ = 1..L), the chosen runs over depth time at a step and over steps at
one depth time, each beside its chance level (the same measurement with an independent matrix: projection
noise alone) where one is recorded. Runs made before coupling was measured get the command that retrains
them. The view lives in the URL.
"""
import streamlit as st

from dashboard import loaders as D, runs as R, widgets as W
from dashboard.sections import train_command
from dynamics.figures import TAU, chance_figure
from dynamics.runs.store import STEP

PAGE = "coupling_page"
MEASURED = ("coupling_fwd", "coupling_bwd", "coupling_fwd_frac", "coupling_bwd_frac", "coupling_acc")
st.set_page_config(page_title="Coupling · dynamics", page_icon=":material/monitoring:", layout="wide")
st.title("Transpose coupling")
runs = R.load_runs(PAGE)
chosen = R.pick_runs(PAGE, [r for r in runs if r.kind != "limit"])  # limit runs record no coupling
fmt = W.image_format(PAGE)
if not chosen:
    st.info("Pick one or more runs in the sidebar.")
    st.stop()
catalog, errors = R.metric_catalog(chosen)
R.show_problems(errors)
lacking = [r for r in chosen if not any(m in R.metric_catalog([r])[0] for m in MEASURED)]
for r in lacking:
    st.info(f"`{r.label}` predates coupling measurements; retrain it:")
    st.code(train_command(r), language="bash")
present = [m for m in MEASURED if m in catalog]
if not present:
    st.stop()
chosen = [r for r in chosen if r not in lacking]

metric = W.metric_choice(PAGE, present, "coupling_fwd")
chance = f"{metric}_chance" if f"{metric}_chance" in catalog else None
steps = list(catalog[metric][1])
c1, c2 = st.columns(2)
log_y = W.toggle(PAGE, "log_y", "log values", where=c1)
log_x = W.toggle(PAGE, "log_x", "log steps", where=c2)
if chance is None:
    st.caption(f"No chance level is recorded for {metric}; only coupling_fwd and coupling_bwd have one.")

st.subheader("Over depth at a step")
step = W.choose(PAGE, "step", "Step", steps, steps[-1], widget=st.select_slider) if len(steps) > 1 else steps[0]
prof, errors = D.profiles(chosen, metric, step)
ref = D.profiles(chosen, chance, step)[0] if chance else None
R.show_problems(errors)
W.show_chart(chance_figure(prof, ref, x=TAU, metric=metric, caption=R.caption(metric), log_y=log_y,
                           title=f"{metric} over depth at step {step}"),
             prof if ref is None else prof.merge(ref, on=["run", "layer", "tau"], how="left", suffixes=("", "_chance")),
             f"{metric}_step{step}", key=f"{PAGE}.depth", fmt=fmt)

st.subheader("Over steps at one depth")
grid = sorted({round(l / D.depth_of(r), 4) for r in chosen for l in range(1, D.depth_of(r) + 1)})
tau = W.choose(PAGE, "tau", "Depth time τ (the nearest block of each run)", grid,
               min(grid, key=lambda g: abs(g - 0.5)), widget=st.select_slider, format_func=lambda t: f"{t:g}")
full = (steps[0], steps[-1])
cur, errors = D.curves(chosen, metric, [tau], full, 0.0)
ref = D.curves(chosen, chance, [tau], full, 0.0)[0] if chance else None
R.show_problems(errors)
W.show_chart(chance_figure(cur, ref, x=STEP, metric=metric, caption=R.caption(metric), log_x=log_x, log_y=log_y,
                           title=f"{metric} over steps at τ ≈ {tau:g}"),
             cur, f"{metric}_tau{tau:g}", key=f"{PAGE}.steps", fmt=fmt)
