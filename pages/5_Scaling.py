"""Scaling page: rates and transfer. Log-log finite-vs-limit error against width n and depth L, with fitted
slopes and 95% bootstrap intervals (dynamics.paper.fits) beside the theory's slope −1 (errors ∝ 1/n, ∝ 1/L;
THEORY §3, §7); and hyperparameter transfer: final loss against learning rate, one curve per depth
(under depth-μP the best learning rate should stay put as L grows). Says which runs are missing and how to
make them. The view lives in the URL.
"""
import streamlit as st

from dashboard import loaders as D, runs as R, widgets as W
from dashboard.sections import limit_missing, limits, matched_limit
from dynamics.figures import error_scaling_figure, lr_transfer_figure
from dynamics.paper.fits import THEORY_SLOPE, fit_groups

PAGE = "scaling_page"
st.set_page_config(page_title="Scaling · dynamics", page_icon=":material/monitoring:", layout="wide")
st.title("Scaling: rates and transfer")
runs = R.load_runs(PAGE)
finite = [r for r in runs if r.kind != "limit"]
chosen = R.pick_runs(PAGE, finite, default_count=len(finite))
fmt = W.image_format(PAGE)

st.subheader("Error against width and depth")
lims = limits(runs)
if not lims:
    limit_missing(chosen[0] if chosen else None)
elif chosen:
    guess = matched_limit(chosen[0], lims) or lims[0]
    ref = next(r for r in lims if r.label == W.choose(PAGE, "limit", "Limit run", [r.label for r in lims], guess.label))
    catalog, errors = R.metric_catalog([ref])
    layered = [m for m, (net, _) in catalog.items() if not net] or ["h_sq"]
    c1, c2 = st.columns(2)
    with c1:
        metric = W.metric_choice(PAGE, layered, "h_sq")
    steps = list(catalog.get(metric, (False, [0]))[1])
    step = W.choose(PAGE, "step", "Step", steps, steps[0], widget=c2.selectbox)
    err, errors = D.limit_errors(chosen, ref, metric, step)
    R.show_problems(errors)
    for x, group in (("width", "depth"), ("depth", "width")):
        if err[x].nunique() < 2:
            st.info(f"Error vs {x} needs finite runs at two or more {x}s (three for a confidence interval) with "
                    f"the same {group}, e.g. `python -m dynamics sweep --grid '{x}=" +
                    ("64,128,256,512" if x == "width" else "4,8,16,32") + "' --out runs/` (or one "
                    f"`python -m dynamics train --{x} …` per value).")
            continue
        fits = fit_groups(err, x, "error", group, n_boot=1000, seed=0)
        W.show_chart(error_scaling_figure(err, fits, x=x, group=group, theory_slope=THEORY_SLOPE[x],
                                          title=f"{metric} at step {step}: error vs {x}",
                                          y_title=f"RMS error of {metric} vs {ref.label}"),
                     err, f"{metric}_error_vs_{x}", key=f"{PAGE}.{x}", fmt=fmt)
        st.dataframe(fits.assign(theory=THEORY_SLOPE[x]).round(3), hide_index=True)

st.subheader("Learning-rate transfer across depths")
nets = [m for m in ("test_loss", "loss", "probe_loss") if m in R.metric_catalog(chosen)[0]] or ["loss"]
loss = W.choose(PAGE, "loss", "Loss", nets, nets[0])
family, n_families = D.transfer_family(chosen)
if n_families > 1:
    st.caption(f"The chosen runs form {n_families} settings (apart from lr, depth and seed); showing the one with "
               f"the most learning rates × depths ({len(family)} runs). Pick runs in the sidebar to change it.")
final, errors = D.final_values(family, loss)
R.show_problems(errors)
if final.empty:
    st.stop()
if final.groupby("depth")["lr"].nunique().max() < 2:
    st.info("Loss vs learning rate needs runs at two or more learning rates per depth (same setting otherwise), "
            "e.g. `python -m dynamics sweep --grid 'lr=0.1,0.3,1,3 depth=4,16' --out runs/`, or "
            "`for L in 4 16; do for lr in 0.1 0.3 1 3; do python -m dynamics train --depth $L --lr $lr "
            "--out runs/; done; done`. Meanwhile: the final loss of each chosen run.")
shown = final.groupby(["depth", "lr"], as_index=False)[loss].mean()  # seeds averaged
W.show_chart(lr_transfer_figure(shown, y=loss, title=f"final {loss} vs learning rate (mean of the last 10% "
                                "of recorded steps; × = diverged)"), shown, f"{loss}_vs_lr", key=f"{PAGE}.lr", fmt=fmt)
