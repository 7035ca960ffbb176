"""Limit page: how close are finite runs to the infinite-width, infinite-depth prediction (THEORY §3, §6)?

Finite runs (solid) and a limit run (kind "limit" in run.json; dashed, with its Monte-Carlo ±stderr band)
over depth time τ at a step, and, when several widths or depths are chosen, the finite-vs-limit error
(RMS over τ of the seed-averaged profile; dynamics.paper.fits.profile_error) against width n and depth L.
Without limit runs the page says which command makes one. The view lives in the URL.
"""
import streamlit as st

from dashboard import loaders as D, runs as R, widgets as W
from dashboard.sections import limit_missing, limits, matched_limit, other_differences
from dashboard.limit_solve import solve_missing
from dynamics.figures import depth_profile_figure, error_scaling_figure

PAGE = "limit_page"
st.set_page_config(page_title="Limit · dynamics", page_icon=":material/monitoring:", layout="wide")
st.title("Finite runs against the limit")
runs = R.load_runs(PAGE)
lims, finite = limits(runs), [r for r in runs if r.kind != "limit"]
like = [r.label for r in finite if lims and not D.same_setting(r, lims[0])][:8]  # default: the first limit's family
chosen = R.pick_runs(PAGE, finite, default=like or None)
fmt = W.image_format(PAGE)
ref = None
if not lims:
    limit_missing(chosen[0] if chosen else None)
else:
    guess = matched_limit(chosen[0], lims) if chosen else None
    name = W.choose(PAGE, "limit", "Limit run", [r.label for r in lims], (guess or lims[0]).label)
    ref = next(r for r in lims if r.label == name)
solve_missing(PAGE, chosen[0] if chosen else None, lims)
shown = chosen + ([ref] if ref else [])
if not shown:
    st.info("Pick one or more finite runs in the sidebar.")
    st.stop()
metric, steps = W.layered_metric(PAGE, shown, "h_sq")
step = W.choose(PAGE, "step", "Step", steps, steps[0], widget=st.select_slider) if len(steps) > 1 else steps[0]
log_y = W.toggle(PAGE, "log_y", "log values")
if ref and (diff := other_differences([ref, *chosen], ("width", "depth", "seed"))):
    st.warning(f"The chosen runs and the limit run also differ in {', '.join(diff)}: the limit describes only "
               "runs that share its setting apart from width, depth and seed.")

prof, errors = D.profiles(shown, metric, step)
R.show_problems(errors)
if ref and ref.label not in set(prof["run"]):
    st.info(f"`{ref.label}` has no {metric} at step {step}: pick another step or metric.")
W.show_chart(depth_profile_figure(prof, metric=metric, caption=R.caption(metric), log_y=log_y,
                                  title=f"{metric} over depth at step {step}",
                                  limit_runs={ref.label} if ref else ()),
             prof, f"{metric}_vs_limit_step{step}", key=f"{PAGE}.overlay", fmt=fmt)

if ref is None:
    st.stop()
st.subheader("Error against width and depth")
err, errors = D.limit_errors(chosen, ref, metric, step)
R.show_problems(errors)
if err["width"].nunique() < 2 and err["depth"].nunique() < 2:
    st.info("Pick finite runs at two or more widths or depths (same setting otherwise) to see the error shrink; "
            "fitted slopes and confidence intervals are on the Scaling page.")
    st.stop()
for col, (x, group) in zip(st.columns(2), (("width", "depth"), ("depth", "width"))):
    with col:
        if err[x].nunique() < 2:
            st.caption(f"Only one {x} among the chosen runs: no error-vs-{x} panel.")
            continue
        W.show_chart(error_scaling_figure(err, x=x, group=group, title=f"error vs {x}",
                                          y_title=f"RMS error of {metric} vs limit"),
                     err, f"{metric}_error_vs_{x}_step{step}", key=f"{PAGE}.err_{x}", fmt=fmt)
