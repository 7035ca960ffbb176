"""Coord check page: is every layer Θ(1) across width and depth? For the chosen runs' ladders (runs that differ
only in width, or only in depth, and seed: a `python -m dynamics coordcheck` folder, a sweep, your own recorded
runs) the classic picture (each layer's seed-mean statistic against width or depth at steps 0..k, log-log, one
line per layer), every row's fitted slope with its 95% seed-bootstrap interval against the ±tolerance band
that counts as flat, and the verdict per ladder, failing layers first (dynamics.coordcheck). The view lives in
the URL.
"""
import streamlit as st

from dashboard.boot import start
start("Coord check · dynamics")  # first: the browser loads charts meanwhile
from dashboard import coordcheck_views as V, runs as R, widgets as W
from dynamics.coordcheck import TOLERANCE
from dynamics.coordcheck.figure import coord_figure, seed_means, slope_figure
from dynamics.metrics import METRICS

PAGE = "coordcheck_page"
st.title("Coord check: Θ(1) across width and depth")
runs = R.load_runs(PAGE)
finite = [r for r in runs if r.kind != "limit"]
chosen = R.pick_runs(PAGE, finite, default_count=len(finite))  # all of them
fmt = W.image_format(PAGE)
ladders = V.ladders(chosen)
if not ladders:
    st.info("The chosen runs hold no ladder: runs of one setting that differ only in width (or only in depth) "
            "and seed. Make one, then type its `runs/` folder into the sidebar:")
    st.code(V.HOWTO, language="bash")
    st.stop()
tol = TOLERANCE
st.dataframe(V.overview(ladders, tol), hide_index=True)
labels = [lad.label for lad in ladders]
ladder = ladders[labels.index(W.choose(PAGE, "ladder", "Ladder", labels, labels[0], on_change=V.reset_view,
                                      args=(PAGE,)))]
frame, rows, error = V.judged(ladder, tol)
if error or rows.empty:
    st.error(f"This ladder cannot be judged: {error or 'its runs hold none of the judged metrics'}.")
    st.stop()
V.banner(ladder, rows, tol)
metrics = V.metric_order(rows)
c1, c2 = st.columns(2)
with c1:
    metric = W.metric_choice(PAGE, metrics, metrics[0])
steps = sorted(rows.loc[rows["metric"] == metric, "step"].unique().tolist())
default = steps if len(steps) <= 4 else [steps[k * (len(steps) - 1) // 3] for k in range(4)]
with c2:
    shown = W.choose(PAGE, "steps", "Steps", steps, default, widget=st.multiselect, multi=True) or default
points = seed_means(frame, metric, rows)
axis_words = "width n" if ladder.axis == "width" else "depth L"
W.show_chart(coord_figure(points, rows, axis=ladder.axis, metric=metric, steps=sorted(shown),
                          title=f"{metric} against {axis_words} (mean over seeds; line end: slope ✓ flat ✗ fails "
                                f"? inconclusive)"),
             points, f"coordcheck_{metric}_{ladder.axis}", key=f"{PAGE}.coord", fmt=fmt)
st.caption(f"{metric}: {METRICS.get(metric, ('',))[0]}. Under depth-μP every line is flat in both width and "
           "depth; lines that fan out name the layers and steps where the parametrization is off.")
W.show_chart(slope_figure(rows, metric=metric, axis=ladder.axis, tol=tol), rows[rows["metric"] == metric],
             f"coordcheck_slopes_{metric}_{ladder.axis}", key=f"{PAGE}.slopes", fmt=fmt)
failing = rows[rows["judgement"].isin(["grows", "shrinks", "diverged", "inconclusive"])]
st.subheader(f"Rows that are not flat ({len(failing)} of {len(rows)}), failing first")
st.dataframe(failing.round(3), hide_index=True)
