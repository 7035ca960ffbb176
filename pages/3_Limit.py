"""Limit page: finite runs against the infinite-width, infinite-depth prediction (the SDE / NFD limit, made by
`python -m dynamics limit`): over training steps at chosen depth times (finite runs solid, the limit dashed
with its Monte-Carlo ±stderr band), over depth time τ at a step, the single-neuron quantile fans, and the
finite-vs-limit error against width n and depth L. Only metrics the limit run has are offered; the default
metric and step are where finite and limit differ visibly. A chosen run without a limit gets two offers: solve
it with the particle solver here (dashboard.limit_solve) or extrapolate it in width (dashboard.limit_extrapolate),
each with its cost. The view lives in the URL.
"""
import streamlit as st

from dashboard.boot import start
start("Limit · dynamics")  # first: the browser loads charts meanwhile
from dashboard import grouping as G, limit_views as V, loaders as D, runs as R, widgets as W
from dashboard.sections import (limit_missing, limits, matched_limit, method_caption, other_differences,
                                own_model, quantile_fan)
from dashboard.limit_extrapolate import extrapolate_section
from dashboard.limit_solve import solve_missing

PAGE = "limit_page"
st.title("Finite runs against the limit")
runs = R.load_runs(PAGE)
lims, finite = limits(runs), [r for r in runs if r.kind != "limit"]
like = [r.label for r in finite if lims and not D.same_setting(r, lims[0])][:8]  # default: the first limit's family
chosen = R.pick_runs(PAGE, finite, default=like or None)
G.controls(PAGE, chosen)  # sidebar: average seeds, colour by a config field
fmt = W.image_format(PAGE)
solve_missing(PAGE, chosen[0] if chosen else None, lims)  # offers to solve a chosen run's missing limit here
extrapolate_section(PAGE, chosen[0] if chosen else None,  # ... or to extrapolate it in width
                    bool(chosen and lims and matched_limit(chosen[0], lims)))
if not lims:
    R.show_problems(R.metric_catalog(chosen)[1])
    limit_missing(chosen[0] if chosen else None)
    st.stop()
if not chosen:
    st.info("Pick one or more finite runs in the sidebar.")
    st.stop()
if theirs := [r for r in chosen if r.kind == "imported"]:  # a user's own model: no limit describes it
    st.info(f"Drawn without a limit of their own: {', '.join(own_model(r) for r in theirs)}. The limits here "
            "are of our ResNet family, rebuilt from a run's config; your model's config is yours.")
guess = matched_limit(chosen[0], lims) or lims[0]
name = W.choose(PAGE, "limit", "Limit run (SDE / NFD prediction)", [r.label for r in lims], guess.label)
ref = next(r for r in lims if r.label == name)
catalog, errors = V.limit_metrics(chosen, ref)
R.show_problems(errors)
if not catalog:
    st.info(f"`{ref.label}` and the chosen runs share no per-layer metric at a common step: pick other runs.")
    st.stop()
metric0, step0 = V.default_view(chosen, ref, catalog)
metric = W.metric_choice(PAGE, list(catalog), metric0)
steps = catalog[metric]
step0 = step0 if metric == metric0 and step0 in steps else steps[-1]
log_y = W.toggle(PAGE, "log_y", "log values")
if diff := other_differences([ref, *[r for r in chosen if r.kind != "imported"]], ("width", "depth", "seed")):
    st.warning(f"The chosen runs and the limit run also differ in {', '.join(diff)}: the limit describes only "
               "runs that share its setting apart from width, depth and seed.")
st.caption(method_caption(ref))

steps_tab, depth_tab, fan_tab, err_tab = W.view_tabs(PAGE, ["Over steps", "Over depth", "Neurons",
                                                            "Error vs n, L"])
if steps_tab.open:
    with steps_tab:
        V.over_steps(PAGE, chosen, ref, metric, log_y, fmt)
if depth_tab.open:
    with depth_tab:
        V.over_depth(PAGE, chosen, ref, metric, steps, step0, log_y, fmt)
if fan_tab.open:
    with fan_tab:
        quantile_fan(PAGE, W.pick_one(PAGE, chosen), runs, W.pick_step(PAGE, steps, step0), fmt, against=ref)
if err_tab.open:
    with err_tab:
        V.error_panels(PAGE, chosen, ref, metric, steps, step0, fmt)
