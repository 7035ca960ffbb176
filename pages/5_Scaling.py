"""Scaling page: rates and transfer. Log-log finite-vs-limit error against width n and depth L, with fitted
slopes and 95% bootstrap intervals (dynamics.paper.fits) beside the theory's slope −1 (errors ∝ 1/n, ∝ 1/L); a
per-layer metric against depth L (mean over blocks at the last step, one line per α or another varying field, e.g.
a_learn of two-layer blocks against its power counting L^(2α−1)); and hyperparameter transfer: final loss against learning rate, one curve per depth (under depth-μP the best
learning rate should stay put as L grows). When the chosen runs cannot make a panel, the page shows the same
views from the bundled reproduce points (dashboard.scaling_views) and says which runs would make it from runs.
The view lives in the URL.
"""
import streamlit as st

from dashboard.boot import start
start("Scaling · dynamics")  # first: the browser loads charts meanwhile
from dashboard import loaders as D, runs as R, widgets as W
from dashboard.scaling_views import against_depth, bundled_rates, bundled_transfer
from dashboard.sections import limit_missing, limits, matched_limit
from dynamics.figures import error_scaling_figure, lr_transfer_figure
from dynamics.paper.fits import THEORY_SLOPE, fit_groups

PAGE = "scaling_page"
st.title("Scaling: rates and transfer")
runs = R.load_runs(PAGE)
finite = [r for r in runs if r.kind != "limit"]
chosen = R.pick_runs(PAGE, finite, default_count=len(finite))  # all of them
fmt = W.image_format(PAGE)
problems = st.container()  # unreadable runs, said here once whichever panels follow (read after the first chart)


def say_problems() -> None:
    with problems:
        R.show_problems(R.metric_catalog(chosen)[1])


st.subheader("Error against width and depth")
lims, panels = limits(runs), 0
if chosen and lims:
    guess = matched_limit(chosen[0], lims) or lims[0]
    name = W.choose(PAGE, "limit", "Limit run", [r.label for r in lims], guess.label)
    ref = next(r for r in lims if r.label == name)
    catalog, errors = R.metric_catalog([ref])
    layered = [m for m, (net, _) in catalog.items() if not net] or ["h_sq"]
    c1, c2 = st.columns(2)
    with c1:
        metric = W.metric_choice(PAGE, layered, "h_sq")
    steps = list(catalog.get(metric, (False, [0]))[1])
    step = W.choose(PAGE, "step", "Step", steps, steps[0], widget=c2.selectbox)
    err, errors = D.limit_errors(chosen, ref, metric, step)
    if err["width"].nunique() > 1 or err["depth"].nunique() > 1:  # else the bundled points stand in, no wall
        R.show_problems([e for e in errors if e.startswith("from the error panels")])
    for x, group in (("width", "depth"), ("depth", "width")):
        if err[x].nunique() < 2:
            continue
        panels += 1
        fits = fit_groups(err, x, "error", group, n_boot=1000, seed=0)
        W.show_chart(error_scaling_figure(err, fits, x=x, group=group, theory_slope=THEORY_SLOPE[x],
                                          title=f"{metric} at step {step}: error vs {x}",
                                          y_title=f"RMS error of {metric} vs {ref.label}"),
                     err, f"{metric}_error_vs_{x}", key=f"{PAGE}.{x}", fmt=fmt)
        st.dataframe(fits.assign(theory=THEORY_SLOPE[x]).round(3), hide_index=True)
if not panels:
    st.caption("The chosen runs do not span two widths or depths in the limit run's setting, so they make no panel; "
               "a sweep would: `python -m dynamics sweep --grid 'width=64,128,256,512 depth=4,8,16' --out runs/` "
               "plus `python -m dynamics limit --like <run> --out runs/`.")
    if not bundled_rates(PAGE, fmt) and not lims:
        limit_missing(chosen[0] if chosen else None)

st.subheader("A metric against depth")
against_depth(PAGE, chosen, fmt)

st.subheader("Learning-rate transfer across depths")
family, n_families = D.transfer_family(chosen)
per_depth = {}
for r in family:
    per_depth.setdefault(r.config.get("depth"), set()).add(r.config.get("lr"))
if max(map(len, per_depth.values()), default=0) < 2:
    st.caption("The chosen runs hold one learning rate per depth; a grid would make this chart from runs: "
               "`python -m dynamics sweep --grid 'lr=0.1,0.3,1,3 depth=4,16' --out runs/`.")
    if not bundled_transfer(PAGE, fmt):
        st.info("No learning-rate grid among the runs or the bundled points.")
    say_problems()
    st.stop()
nets = [m for m in ("test_loss", "loss", "probe_loss") if m in R.metric_catalog(family)[0]] or ["loss"]
loss = W.choose(PAGE, "loss", "Loss", nets, nets[0])
final, _ = D.final_values(family, loss)  # unreadable runs were reported above
if n_families > 1:
    st.caption(f"The chosen runs form {n_families} settings (apart from lr, depth and seed); showing the one with "
               f"the most learning rates × depths ({len(family)} runs). Pick runs in the sidebar to change it.")
shown = final.groupby(["depth", "lr"], as_index=False)[loss].mean()  # seeds averaged
W.show_chart(lr_transfer_figure(shown, y=loss, title=f"final {loss} vs learning rate (mean of the last 10% "
                                "of recorded steps; × = diverged)"), shown, f"{loss}_vs_lr", key=f"{PAGE}.lr", fmt=fmt)
say_problems()
