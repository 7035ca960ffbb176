"""Trajectories page: how features and gradients move, layer by layer, over training.

For one per-layer metric: a layer × step heatmap (depth time τ up, step across), the profile over τ at a
step (slider), curves over steps for chosen layers (debiased EMA smoothing, raw line faint), and quantile
fans of the single-neuron distribution against a limit run's. Big runs are reduced on the server
(dashboard.loaders). The view lives in the URL; the sidebar can train a small run.
"""
import streamlit as st

from dashboard import loaders as D, runs as R, widgets as W
from dashboard.sections import limits, quantile_fan
from dashboard.train_form import train_form
from dynamics.figures import depth_profile_figure, heatmap_figure, layer_curves_figure
from dynamics.store import RunFormatError

PAGE = "traj_page"
st.set_page_config(page_title="Trajectories · dynamics", page_icon=":material/monitoring:", layout="wide")
st.title("Trajectories")
train_form(PAGE)
runs = R.load_runs(PAGE)
chosen = R.pick_runs(PAGE, runs, default_count=2)
fmt = W.image_format(PAGE)
if not chosen:
    st.info("Pick one or more runs in the sidebar.")
    st.stop()
catalog, layered = R.layered_catalog(chosen)

metric = W.metric_choice(PAGE, layered, "h_move")
steps = list(catalog[metric][1])
c1, c2, c3 = st.columns(3)
log_y = W.toggle(PAGE, "log_y", "log values", where=c1)
log_x = W.toggle(PAGE, "log_x", "log steps (curves)", where=c2)
smooth = W.choose(PAGE, "smooth", "Smoothing (EMA weight)", W.SMOOTHING, 0.0, widget=c3.select_slider,
                  url_default=False)
window = W.step_range(PAGE, steps)
cap = R.caption(metric)

st.subheader("Layer × step")
labels = [r.label for r in chosen]
hrun = W.choose(PAGE, "hrun", "Run", labels, labels[0], url_default=False) if len(chosen) > 1 else labels[0]
run = chosen[labels.index(hrun)]
try:
    hm = D.heatmap(run.path, D.mtime(run.path), metric, D.depth_of(run), window)
    W.show_chart(heatmap_figure(hm, metric=metric, caption=cap, log_z=log_y, title=f"{metric}: {hrun}"),
                 hm, f"{hrun}_{metric}_heatmap", key=f"{PAGE}.heat", fmt=fmt)
except RunFormatError as e:
    st.warning(f"Cannot draw `{hrun}`: {e}")

st.subheader("Over depth at a step")
step = W.choose(PAGE, "step", "Step", steps, steps[-1], widget=st.select_slider) if len(steps) > 1 else steps[0]
prof, errors = D.profiles(chosen, metric, step)
R.show_problems(errors)
W.show_chart(depth_profile_figure(prof, metric=metric, caption=cap, log_y=log_y, title=f"{metric} over depth "
                                  f"at step {step}", limit_runs={r.label for r in limits(chosen)}),
             prof, f"{metric}_step{step}", key=f"{PAGE}.prof", fmt=fmt)

st.subheader("Over steps, chosen layers")
grid = sorted({round(l / D.depth_of(r), 4) for r in chosen for l in range(D.depth_of(r) + 1)})
near = list(dict.fromkeys(min(grid, key=lambda g: abs(g - t)) for t in (0, 0.25, 0.5, 0.75, 1)))
taus = W.choose(PAGE, "tau", "Layers (depth time τ; the nearest layer of each run)", grid, near,
                widget=st.multiselect, multi=True, format_func=lambda t: f"τ={t:g}")
cur, errors = D.curves(chosen, metric, taus, window, smooth)
R.show_problems(errors)
W.show_chart(layer_curves_figure(cur, metric=metric, caption=cap, log_x=log_x, log_y=log_y,
                                 title=f"{metric} over steps" + (f" (EMA {smooth:g})" if smooth else "")),
             cur, f"{metric}_over_steps", key=f"{PAGE}.curves", fmt=fmt)

st.subheader("Single-neuron distribution over depth")
quantile_fan(PAGE, run, runs, step, fmt)
