"""Trajectories page: how features and gradients move, layer by layer, over training.

For one per-layer metric, four views in lazy tabs (only the open one is computed and drawn, so a big run
opens fast): a layer × step heatmap (depth time τ up, step across), the profile over τ at a step (slider),
curves over steps for chosen layers (debiased EMA smoothing, raw line faint), and quantile fans of the
single-neuron distribution against a limit run's. Big runs are reduced on the server (dashboard.loaders).
The view, tab included, lives in the URL; the sidebar can train a small run.
"""
import streamlit as st

from dashboard.boot import start
start("Trajectories · dynamics")  # first: the browser loads charts meanwhile
from dashboard import grouping as G, loaders as D, runs as R, widgets as W
from dashboard.sections import limits, quantile_fan
from dashboard.train_form import train_form
from dynamics.figures import TAU, depth_profile_figure, heatmap_figure, layer_curves_figure
from dynamics.runs.store import STEP, RunFormatError

PAGE = "traj_page"
st.title("Trajectories")
train_form(PAGE)
runs = R.load_runs(PAGE)
chosen = R.pick_runs(PAGE, runs, default_count=2)
G.controls(PAGE, chosen)  # sidebar: average seeds, colour by a config field
fmt = W.image_format(PAGE)
if not chosen:
    st.info("Pick one or more runs in the sidebar.")
    st.stop()
metric, steps = W.layered_metric(PAGE, chosen, "h_move")
c1, c2 = st.columns([1, 3], vertical_alignment="center")
log_y = W.toggle(PAGE, "log_y", "log values", where=c1)
with c2:
    window = W.step_range(PAGE, steps)
cap = R.caption(metric, chosen)
heat_tab, depth_tab, steps_tab, neuron_tab = W.view_tabs(PAGE, ["Layer × step", "Over depth", "Over steps",
                                                                "Neurons"])
if heat_tab.open:
    with heat_tab:
        run = W.pick_one(PAGE, chosen)
        try:
            hm = D.heatmap(run.path, D.mtime(run.path), metric, D.depth_of(run), window)
            W.show_chart(heatmap_figure(hm, metric=metric, caption=cap, log_z=log_y, title=f"{metric}: {run.label}"),
                         hm, f"{run.label}_{metric}_heatmap", key=f"{PAGE}.heat", fmt=fmt)
            if hm.attrs.get("pooled"):
                n_steps, n_layers = hm.attrs["pooled"]
                st.caption(f"Mean-pooled for display: {n_steps:,} recorded steps × {n_layers} layers drawn as "
                           f"{hm[STEP].nunique()} × {hm[TAU].nunique()} cells (hover: a cell's centre to ½ cell). "
                           "*Over depth* shows every layer.")
        except RunFormatError as e:
            st.warning(f"Cannot draw `{run.label}`: {e}")
if depth_tab.open:
    with depth_tab:
        step = W.pick_step(PAGE, steps, R.opening_step(chosen, metric, steps),
                           token=(tuple(r.label for r in chosen), metric))
        prof, errors = D.profiles(chosen, metric, step)
        prof = G.apply(prof)
        R.show_problems(errors)
        W.show_chart(depth_profile_figure(prof, metric=metric, caption=cap, log_y=log_y, title=f"{metric} over depth "
                                          f"at step {step}", limit_runs={r.label for r in limits(chosen)}),
                     prof, f"{metric}_step{step}", key=f"{PAGE}.prof", fmt=fmt)

if steps_tab.open:
    with steps_tab:
        grid = D.tau_grid(chosen) or [0.0]
        near = list(dict.fromkeys(min(grid, key=lambda g: abs(g - t)) for t in (0, 0.25, 0.5, 0.75, 1)))
        taus = W.choose(PAGE, "tau", "Layers (depth time τ; the nearest layer of each run)", grid, near,
                        widget=st.multiselect, multi=True, format_func=lambda t: f"τ={t:g}")
        c1, c2 = st.columns(2)
        log_x = W.toggle(PAGE, "log_x", "log steps", where=c1)
        smooth = W.choose(PAGE, "smooth", "Smoothing (EMA weight)", W.SMOOTHING, 0.0, widget=c2.select_slider,
                          url_default=False)
        cur, errors = D.curves(chosen, metric, taus, window, smooth)
        cur = G.apply(cur)
        R.show_problems(errors)
        W.show_chart(layer_curves_figure(cur, metric=metric, caption=cap, log_x=log_x, log_y=log_y,
                                         title=f"{metric} over steps" + (f" (EMA {smooth:g})" if smooth else "")),
                     cur, f"{metric}_over_steps", key=f"{PAGE}.curves", fmt=fmt)

if neuron_tab.open:
    with neuron_tab:
        st.caption("Quantiles of the features h_ℓ over the neurons of one layer; the metric, log and step-range "
                   "controls above belong to the other tabs.")
        run = W.pick_one(PAGE, chosen)
        quantile_fan(PAGE, run, runs, W.pick_step(PAGE, steps, R.opening_step(chosen, metric, steps),
                           token=(tuple(r.label for r in chosen), metric)), fmt)
