"""Coupling page: how large are the transpose-correlation terms (docs/theory.md §5), where in depth, and over training?

For one coupling metric (coupling_fwd, coupling_bwd, their _frac fractions of the whole message, or the
accumulated coupling_acc; blocks ℓ = 1..L), the chosen runs over depth time at a step and over steps at
one depth time, each beside its chance level (the same measurement with an independent matrix: projection
noise alone) where one is recorded. It opens on a run whose coupling is measured exactly and its decoupled twin
(zero by construction), at the step where the coupling stands furthest above its chance level, and says
which chosen runs are exact and which a probe proxy. Runs made before coupling
was measured get the command that retrains them. The view lives in the URL.
"""
import streamlit as st

from dashboard.boot import start
start("Coupling · dynamics")  # first: the browser loads charts meanwhile
from dashboard import grouping as G, loaders as D, runs as R, widgets as W
from dashboard.sections import exact_pair, is_exact, log_gaps, own_model, strongest_step, train_command
from dynamics.figures import TAU, chance_figure
from dynamics.runs.store import STEP

PAGE = "coupling_page"
MEASURED = ("coupling_fwd", "coupling_bwd", "coupling_fwd_frac", "coupling_bwd_frac", "coupling_acc")
st.title("Transpose coupling")
runs = R.load_runs(PAGE)
candidates = [r for r in runs if r.kind != "limit"]  # limit runs record no coupling
chosen = R.pick_runs(PAGE, candidates, default=exact_pair(candidates) or None)
G.controls(PAGE, chosen)  # sidebar: average seeds, colour by a config field
fmt = W.image_format(PAGE)
if not chosen:
    st.info("Pick one or more runs in the sidebar.")
    st.stop()
exact = [r.label for r in chosen if is_exact(r)]
proxy = [r.label for r in chosen if not is_exact(r) and r.kind != "imported"]
st.caption(" ".join(filter(None, [
    f"Measured exactly (the probes are the whole training set, full batch, every step recorded): "
    f"{', '.join(exact)}." if exact else "",
    f"A probe proxy (minibatch, or records apart, or more training inputs than probes: the histories hold "
    f"the probes' vectors, not everything SGD applied W to): {', '.join(proxy)}." if proxy else ""])))
catalog, errors = R.metric_catalog(chosen)
R.show_problems(errors)
lacking = [r for r in chosen if not any(m in R.metric_catalog([r])[0] for m in MEASURED)]
for r in lacking:
    if r.kind == "imported":  # a user's own model: no command of ours applies
        st.info(f"{own_model(r)} has no coupling measurements: the split needs the block weights at "
                "initialisation and the backward vectors inside every block during training, which a tracker's "
                "log does not hold and dynamics.record does not measure; runs of our ResNet "
                "(`python -m dynamics train`) record it.")
        continue
    st.info(f"`{r.label}` predates coupling measurements; retrain it:")
    st.code(train_command(r), language="bash")
present = [m for m in MEASURED if m in catalog]
if not present:
    st.stop()
chosen = [r for r in chosen if r not in lacking]

metric = W.metric_choice(PAGE, present, "coupling_acc")  # the accumulated coupling: clearest above chance
chance = f"{metric}_chance" if f"{metric}_chance" in catalog else None
steps = list(catalog[metric][1])
c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="center")
excess = chance is not None and W.choose(PAGE, "show", "Show", ["excess over chance", "measured"],
                                         "excess over chance", widget=c1.radio, horizontal=True,
                                         url_default=False) == "excess over chance"
log_y = W.toggle(PAGE, "log_y", "log values", where=c2)
log_x = W.toggle(PAGE, "log_x", "log steps", where=c3)
if chance is None:
    st.caption(f"No chance level is recorded for {metric} in these runs.")
else:
    st.caption("Chance level (shaded): the same measurement with an independent random matrix in place of W, i.e. "
               "what projection noise alone gives at this width.  \nRead the excess (measured − chance) against "
               "it: far above the band is coupling through W's transpose; inside it is noise.")


def show(frame, ref, x, title, name, key):
    frame, ref = G.apply(frame), (None if ref is None else G.apply(ref))
    data = frame if ref is None else frame.merge(ref[["run", x, "value"]], on=["run", x], how="left",
                                                 suffixes=("", "_chance"))
    log_gaps(data, log_y, excess)
    W.show_chart(chance_figure(frame, ref, x=x, metric=metric, caption=R.caption(metric), log_x=log_x and x == STEP,
                               log_y=log_y, title=title, excess=excess), data, name, key=key, fmt=fmt)


st.subheader("Over depth at a step")
step = W.choose(PAGE, "step", "Step", steps, strongest_step(chosen, metric, chance, steps),
                widget=st.select_slider) if len(steps) > 1 else steps[0]
prof, errors = D.profiles(chosen, metric, step)
ref = D.profiles(chosen, chance, step)[0] if chance else None
R.show_problems(errors)
show(prof, ref, TAU, f"{metric}{' excess' if excess else ''} over depth at step {step}", f"{metric}_step{step}",
     f"{PAGE}.depth")

st.subheader("Over steps at one depth")
grid = D.tau_grid(chosen, first=1) or [1.0]
tau = W.choose(PAGE, "tau", "Depth time τ (the nearest block of each run)", grid,
               min(grid, key=lambda g: abs(g - 0.5)), widget=st.select_slider, format_func=lambda t: f"{t:g}")
cur, errors = D.curves(chosen, metric, [tau], (steps[0], steps[-1]), 0.0)
ref = D.curves(chosen, chance, [tau], (steps[0], steps[-1]), 0.0)[0] if chance else None
R.show_problems(errors)
show(cur, ref, STEP, f"{metric}{' excess' if excess else ''} over steps at τ ≈ {tau:g}", f"{metric}_tau{tau:g}",
     f"{PAGE}.steps")
