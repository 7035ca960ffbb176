"""Figure builders (dynamics.figures) on ten-row tidy frames: trace count, trace names, axis titles; the
server-side reductions (figures.reduce) and the log-log fits (dynamics.paper.fits) on synthetic data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dynamics.figures import RUN, TAU, TAU_TITLE, depth_profile_figure, metric_over_steps_figure
from dynamics.runs.store import STDERR, STEP, VALUE


def _depth_frame(stderr: bool = False) -> pd.DataFrame:
    """Two runs × five layers of depth 4: ten rows."""
    tau = np.tile(np.arange(5) / 4, 2)
    df = pd.DataFrame({RUN: ["a"] * 5 + ["b"] * 5, TAU: tau, VALUE: 1.0 + tau})
    if stderr:
        df[STDERR] = [0.1] * 5 + [np.nan] * 5  # only run a is a (Monte-Carlo) limit run
    return df


def _steps_frame() -> pd.DataFrame:
    steps = np.tile(np.arange(5) * 10, 2)
    return pd.DataFrame({RUN: ["a"] * 5 + ["b"] * 5, STEP: steps, VALUE: np.exp(-steps / 20)})


def test_depth_profile_one_trace_per_run_with_axis_titles():
    fig = depth_profile_figure(_depth_frame(), metric="h_sq", caption="feature second moment")
    assert [t.name for t in fig.data] == ["a", "b"]
    assert fig.layout.xaxis.title.text == TAU_TITLE == "depth time τ = ℓ/L"
    assert "h_sq" in fig.layout.yaxis.title.text and "feature second moment" in fig.layout.yaxis.title.text
    assert fig.layout.yaxis.type == "linear"
    np.testing.assert_allclose(fig.data[1].x, np.arange(5) / 4)
    np.testing.assert_allclose(fig.data[1].y, 1 + np.arange(5) / 4)


def test_depth_profile_stderr_becomes_a_band_only_where_present():
    fig = depth_profile_figure(_depth_frame(stderr=True), metric="h_sq", log_y=True, title="t")
    assert len(fig.data) == 4  # a: upper edge, filled lower edge, line; b: line only
    upper, lower, line_a, line_b = fig.data
    assert (upper.showlegend, lower.fill, line_a.name, line_b.name) == (False, "tonexty", "a", "b")
    np.testing.assert_allclose(np.asarray(upper.y) - np.asarray(lower.y), 0.2)
    assert fig.layout.yaxis.type == "log" and fig.layout.title.text == "t"
    assert list(fig.layout.yaxis.ticktext) == ["0.5", "1", "1.5", "2", "2.5"]  # values, not leading digits


def test_depth_profile_sorts_by_tau():
    df = _depth_frame().iloc[::-1]
    fig = depth_profile_figure(df, metric="g_sq")
    assert list(fig.data[0].x) == sorted(fig.data[0].x)


def test_metric_over_steps_one_trace_per_run():
    fig = metric_over_steps_figure(_steps_frame(), metric="loss", caption="training loss", log_y=True)
    assert [t.name for t in fig.data] == ["a", "b"]
    assert fig.layout.xaxis.title.text == "step"
    assert fig.layout.yaxis.title.text.startswith("loss") and "training loss" in fig.layout.yaxis.title.text
    assert fig.layout.yaxis.type == "log"
    assert list(fig.data[0].x) == [0, 10, 20, 30, 40]


@pytest.mark.parametrize("builder, frame", [(depth_profile_figure, _steps_frame),
                                            (metric_over_steps_figure, _depth_frame)])
def test_builders_name_missing_columns(builder, frame):
    with pytest.raises(ValueError, match="lacks column"):
        builder(frame(), metric="m")


# --- reductions (dynamics.figures.reduce) -----------------------------------------------------------------
from dynamics.figures import (SMOOTH, WEBGL_LINE_POINTS, WEBGL_POINTS, bin_grid, chance_figure,  # noqa: E402
                              chart_config, ema_debiased, error_scaling_figure, heatmap_figure,
                              layer_curves_figure, lr_transfer_figure, minmax_downsample, quantile_fan_figure)
from dynamics.paper.fits import fit_groups, fit_loglog, profile_error  # noqa: E402
from dynamics.runs.store import LAYER, QUANTILE  # noqa: E402


def test_minmax_downsample_keeps_extremes_and_bounds_points():
    x = np.arange(100_000)
    y = np.sin(x / 500.0)
    y[12_345], y[67_890] = 50.0, -50.0  # one spike, one dip
    xs, ys = minmax_downsample(x, y, 2000)
    assert len(xs) <= 2000 and np.all(np.diff(xs) > 0)
    assert ys.max() == 50.0 and ys.min() == -50.0 and 12_345 in xs and 67_890 in xs
    short_x, short_y = minmax_downsample(x[:10], np.where(x[:10] == 3, np.nan, y[:10]), 2000)
    assert len(short_x) == 9 and 3 not in short_x  # short series: unchanged but NaN dropped


def test_ema_debiased_starts_at_the_first_value_and_skips_nan():
    y = np.array([4.0, np.nan, 4.0, 4.0])
    np.testing.assert_allclose(ema_debiased(y, 0.9)[[0, 2, 3]], 4.0)  # a constant stays constant (debiased)
    assert np.isnan(ema_debiased(y, 0.9)[1])
    step = ema_debiased(np.r_[np.zeros(5), np.ones(5)], 0.5)
    np.testing.assert_allclose(step[5], 0.5 / (1 - 0.5 ** 6))
    np.testing.assert_array_equal(ema_debiased(y, 0.0), y)
    with pytest.raises(ValueError):
        ema_debiased(y, 1.0)


def test_bin_grid_pools_means_to_the_cell_limit():
    values = np.arange(1000 * 7, dtype=float).reshape(1000, 7)
    values[0, 0] = np.nan
    rows, cols, z = bin_grid(values, np.arange(1000) * 10, np.arange(7), max_rows=100, max_cols=500)
    assert z.shape == (100, 7) and len(rows) == 100 and len(cols) == 7
    np.testing.assert_allclose(rows[1], np.mean(np.arange(10, 20) * 10))
    np.testing.assert_allclose(z[1, 3], values[10:20, 3].mean())
    np.testing.assert_allclose(z[0, 0], np.nanmean(values[:10, 0]))  # NaN ignored, not propagated
    same = bin_grid(values[:5], np.arange(5), np.arange(7))
    assert same[2].shape == (5, 7)


# --- fits --------------------------------------------------------------------------------------------------
def test_fit_loglog_recovers_a_power_law_with_a_covering_interval():
    rng = np.random.default_rng(0)
    n = np.array([64, 128, 256, 512, 1024, 2048] * 3, dtype=float)
    err = 3.0 * n ** -1.0 * np.exp(0.05 * rng.standard_normal(len(n)))
    slope, lo, hi = fit_loglog(n, err, n_boot=2000, seed=1)
    assert abs(slope + 1.0) < 0.05 and lo < -1.0 < hi and hi - lo < 0.2
    assert fit_loglog(n, err, n_boot=2000, seed=1) == (slope, lo, hi)  # seeded: reproducible


def test_fit_loglog_degenerate_inputs():
    assert np.isnan(fit_loglog([8, 8, 8], [1, 2, 3])[0])                      # one distinct x: no slope
    slope, lo, hi = fit_loglog([4, 8], [1.0, 0.5])                              # two points: slope, no CI
    assert slope == pytest.approx(-1.0) and np.isnan(lo) and np.isnan(hi)
    assert fit_loglog([4, 8, 16, 0], [1.0, 0.5, 0.25, 1.0])[0] == pytest.approx(-1.0)  # x ≤ 0 dropped


def test_fit_groups_and_profile_error():
    df = pd.DataFrame({"width": [64, 128, 256] * 2, "depth": [4] * 3 + [8] * 3,
                       "error": [1 / 64, 1 / 128, 1 / 256, 2 / 64, 2 / 128, 2 / 256]})
    fits = fit_groups(df, "width", "error", "depth", n_boot=200)
    assert list(fits["depth"]) == [4, 8] and np.allclose(fits["slope"], -1.0)
    np.testing.assert_allclose(np.exp(fits["intercept"]), [1.0, 2.0])
    tau = np.linspace(0, 1, 5)
    assert profile_error(tau, tau + 0.1, np.linspace(0, 1, 17), np.linspace(0, 1, 17)) == pytest.approx(0.1)


# --- new builders ------------------------------------------------------------------------------------------
def test_heatmap_has_steps_across_and_tau_up():
    df = pd.DataFrame({STEP: np.repeat([0, 10], 5), TAU: np.tile(np.arange(5) / 4, 2), VALUE: np.arange(10.0) + 1})
    fig = heatmap_figure(df, metric="h_sq", caption="c", title="t")
    (hm,) = fig.data
    assert hm.type == "heatmap" and list(hm.x) == ["0", "10"] and list(hm.y) == list(np.arange(5) / 4)
    assert fig.layout.xaxis.type == "category"  # two steps: two even columns, not an axis from −5 to 15
    many = pd.DataFrame({STEP: np.repeat(np.arange(20), 2), TAU: np.tile([0.0, 1.0], 20), VALUE: 1.0})
    assert heatmap_figure(many, metric="m").layout.xaxis.type != "category"
    assert np.asarray(hm.z).shape == (5, 2) and hm.z[0][1] == 6.0
    assert fig.layout.xaxis.title.text == "step" and fig.layout.yaxis.title.text == TAU_TITLE
    assert heatmap_figure(df, metric="h_sq", log_z=True).data[0].z[0][0] == 0.0  # log10(1)


def _curves_frame(n: int = 5, smoothed: bool = False) -> pd.DataFrame:
    df = pd.DataFrame({RUN: "a", LAYER: np.repeat([0, 4], n), TAU: np.repeat([0.0, 1.0], n),
                       STEP: np.tile(np.arange(n), 2), VALUE: np.arange(2 * n, dtype=float)})
    if smoothed:
        df[SMOOTH] = df[VALUE] * 0.9
    return df


def test_layer_curves_one_trace_per_layer_and_faint_raw_under_smoothing():
    fig = layer_curves_figure(_curves_frame(), metric="h_move", log_x=True)
    assert [t.name for t in fig.data] == ["a ℓ=0 (τ=0)", "a ℓ=4 (τ=1)"] and fig.layout.xaxis.type == "log"
    fig = layer_curves_figure(_curves_frame(smoothed=True), metric="h_move")
    raw, smooth = fig.data[:2]
    assert raw.showlegend is False and "0.25" in raw.line.color and smooth.name == "a ℓ=0 (τ=0)"
    np.testing.assert_allclose(smooth.y, np.arange(5) * 0.9)
    assert layer_curves_figure(_curves_frame(n=WEBGL_POINTS + 1), metric="h_move").data[0].type == "scatter"
    big = layer_curves_figure(_curves_frame(n=WEBGL_LINE_POINTS + 1), metric="h_move")  # lines: SVG up to here
    assert big.data[0].type == "scattergl"


def test_quantile_fan_bands_median_and_limit_lines():
    q = np.array([0.1, 0.5, 0.9])
    df = pd.DataFrame({TAU: np.repeat([0.0, 0.5, 1.0], 3), QUANTILE: np.tile(q, 3), VALUE: np.tile([-1.0, 0, 1], 3)})
    fig = quantile_fan_figure(df)
    assert [t.name for t in fig.data] == ["q0.9", "quantiles 0.1–0.9", "median"]
    assert fig.data[1].fill == "tonexty"
    fig = quantile_fan_figure(df, df.assign(**{VALUE: df[VALUE] * 1.1}), limit_name="lim")
    lim = [t for t in fig.data if t.name == "lim quantiles"]
    assert len(lim) == 3 and lim[0].line.dash == "dash" and sum(t.showlegend is not False for t in lim) == 1


def test_chance_figure_shades_the_chance_level_and_draws_the_excess():
    df = _depth_frame()
    fig = chance_figure(df, df.assign(**{VALUE: 0.1}), x=TAU, metric="coupling_fwd")
    band = "chance level (shaded, in each run's colour)"
    assert [t.name for t in fig.data] == ["a chance base", band, "a", "b chance base", band, "b"]
    assert [t.showlegend for t in fig.data] == [False, True, None, False, False, None]  # each run once, the band once
    assert fig.data[1].legendgroup == "a" and fig.data[4].legendgroup == "b"
    assert fig.data[1].fill == "tonexty" and not any(fig.data[0].y)  # the band: 0 up to chance
    assert fig.data[1].fillcolor.startswith("rgba(") and fig.data[4].fillcolor != fig.data[1].fillcolor
    ex = chance_figure(df, df.assign(**{VALUE: 0.1}), x=TAU, metric="coupling_fwd", excess=True)
    a = df[df[RUN] == "a"].sort_values(TAU)
    np.testing.assert_allclose(ex.data[2].y, a[VALUE] - 0.1)  # measured − chance, matched on τ
    assert ex.data[2].name == "a" and ex.layout.yaxis.title.text.startswith("coupling_fwd − chance")
    log = chance_figure(df, df.assign(**{VALUE: 0.1}), x=TAU, metric="m", log_y=True)
    assert [t.name for t in log.data][:2] == ["chance level (dotted, in each run's colour)", "a"]
    assert log.data[0].line.dash == "dot" and log.data[2].showlegend is False  # the dotted line once
    assert [t.name for t in chance_figure(df, None, x=TAU, metric="m").data] == ["a", "b"]


def test_claim_figure_draws_points_means_fit_band_and_guides():
    from dynamics.figures import claim_figure
    pts = pd.DataFrame({"width": np.repeat([64, 128, 256, 512], 2), "seed": [0, 1] * 4,
                        "err": np.repeat([1 / 8, 1 / 11.3, 1 / 16, 1 / 22.6], 2) * np.tile([0.9, 1.1], 4)})
    fig = claim_figure(pts, x="width", y="err", measured=-0.5, ci=[-0.6, -0.4], paper=-0.5, alternative=0.0,
                       alternative_words="no decay", title="t")
    names = [t.name for t in fig.data]
    assert names[:2] == ["points (one per run)", "mean over seeds"]
    assert "95% interval of the slope [-0.6, -0.4]" in names and "fit: slope -0.5" in names
    assert "paper: slope -0.5" in names and "alternative: slope 0 (no decay)" in names
    fit = fig.data[names.index("fit: slope -0.5")]
    slope = np.polyfit(np.log(fit.x), np.log(fit.y), 1)[0]
    np.testing.assert_allclose(slope, -0.5)  # the drawn line has the measured slope ...
    means = pts.groupby("width")["err"].mean()
    centre = np.exp(np.log(means.to_numpy()).mean())  # ... and passes through the centre of the per-x means
    np.testing.assert_allclose(np.exp(np.interp(np.log(means.index.to_numpy(float)).mean(), np.log(fit.x), np.log(fit.y))), centre)
    flat = fig.data[names.index("alternative: slope 0 (no decay)")]
    np.testing.assert_allclose(flat.y, centre)
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [64, 128, 256, 512]
    div = claim_figure(pts.assign(diverged=[False] * 7 + [True]), x="width", y="err", statistic="mean",
                       measured=0.05, ci=[0.04, 0.06], paper=0.0)
    assert "diverged (not fitted)" in [t.name for t in div.data] and div.layout.yaxis.type == "linear"
    gaps = pd.DataFrame({"task": ["teacher", "teacher", "digits", "digits"], "gap": [0.1, 0.2, -0.05, 0.0]})
    cat = claim_figure(gaps, x="task", y="gap", statistic="mean", measured=0.06, ci=[-0.02, 0.14], paper=0.0,
                       alternative=0.1)  # a signed gap per task: categories on x, no log
    assert "measured 0.06" in [t.name for t in cat.data] and cat.layout.xaxis.type == "category"


def test_limit_steps_figure_panels_per_tau_with_the_prediction_dashed():
    from dynamics.figures import BAND_NAME, PREDICTION, limit_steps_figure
    rows = [{RUN: run, TAU: tau, STEP: s, VALUE: v + s, "stderr": 0.1 if run == "lim" else np.nan}
            for run, v in (("a", 1.0), ("lim", 0.5)) for tau in (0.25, 0.5, 1.0) for s in (0, 10)]
    fig = limit_steps_figure(pd.DataFrame(rows), taus=[0.25, 1.0], metric="h_move", limit_runs={"lim"})
    shown = [t.name for t in fig.data if t.showlegend is not False]
    assert shown == ["a", f"lim {BAND_NAME}", f"lim{PREDICTION}"]  # each kind once in the legend
    pred = [t for t in fig.data if t.name == f"lim{PREDICTION}"]
    assert len(pred) == 2 and {t.line.dash for t in pred} == {"dash"} and {t.xaxis for t in pred} == {"x", "x2"}
    assert [a.text for a in fig.layout.annotations] == ["τ ≈ 0.25", "τ ≈ 1"]  # τ = 0.5 goes to the nearer panel


def test_restyle_runs_gives_short_names_and_fixed_colours():
    from dynamics.figures import restyle_runs
    df = _depth_frame()
    fig = chance_figure(df, df.assign(**{VALUE: 0.1}), x=TAU, metric="m")
    restyle_runs(fig, {"a": "A", "b": "B"}, {"a": "#ff0000", "b": "#00ff00"})
    band = "chance level (shaded, in each run's colour)"
    assert [t.name for t in fig.data] == ["A chance base", band, "A", "B chance base", band, "B"]
    assert fig.data[2].line.color == "#ff0000" and fig.data[1].fillcolor == "rgba(255,0,0,0.2)"
    assert fig.data[0].line.width == 0 and "a<br>" in fig.data[2].hovertemplate  # full name on hover


def test_depth_profile_draws_limit_runs_dashed():
    fig = depth_profile_figure(_depth_frame(), metric="h_sq", limit_runs={"b"})
    assert fig.data[0].line.dash is None and fig.data[1].line.dash == "dash"


def test_error_scaling_figure_fit_line_theory_slope_and_log_axes():
    df = pd.DataFrame({"width": [64, 128, 256], "depth": 4, "error": [1 / 64, 1 / 128, 1 / 256]})
    fits = fit_groups(df, "width", "error", "depth", n_boot=100)
    fig = error_scaling_figure(df, fits, x="width", group="depth")
    names = [t.name for t in fig.data]
    assert names[0] == "depth = 4" and names[1].startswith("fit depth = 4: slope -1.00")
    assert names[2] == "theory slope -1" and fig.data[2].line.dash == "dot"
    np.testing.assert_allclose(fig.data[1].y[-1], 1 / 256, rtol=1e-6)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_lr_transfer_stars_the_best_lr_and_marks_divergence():
    df = pd.DataFrame({"lr": [0.1, 0.5, 2.0] * 2, "depth": [4] * 3 + [8] * 3,
                       "loss": [0.5, 0.2, 0.4, 0.6, 0.25, np.inf]})
    fig = lr_transfer_figure(df)
    stars = [t for t in fig.data if t.name.startswith("best lr")]
    assert [s.x[0] for s in stars] == [0.5, 0.5]
    (div,) = [t for t in fig.data if t.name.startswith("diverged")]
    assert div.x[0] == 2.0 and div.marker.symbol == "x" and fig.layout.xaxis.type == "log"
    assert list(fig.layout.xaxis.tickvals) == [0.1, 0.5, 2.0]  # the rates tried, not colliding minor ticks
    assert fig.layout.yaxis.type == "linear"  # 0.2 .. 0.6: a factor 3 at most reads better on a linear axis
    assert lr_transfer_figure(df.assign(loss=[0.5, 0.02, 0.4, 0.6, 0.25, np.inf])).layout.yaxis.type == "log"
    narrow = lr_transfer_figure(df.assign(loss=[0.0292, 0.0291, 0.0293, 0.0294, 0.0290, 0.0295]))
    assert narrow.layout.yaxis.type == "linear"  # a log axis over 1% would repeat its tick labels


def test_chart_config_sets_the_toolbar_download():
    cfg = chart_config("h_sq_step10", "svg")
    assert cfg["toImageButtonOptions"] == {"format": "svg", "filename": "h_sq_step10", "scale": 2}


def test_log_ticks_are_few_distinct_and_plain():
    from dynamics.figures._style import log_ticks, tick_text
    narrow = log_ticks(np.array([0.0292, 0.0295]))
    assert len(narrow) <= 8 and len(set(tick_text(narrow))) == len(narrow)  # never "0.0292, 0.0292"
    assert tick_text(log_ticks(np.array([0.005, 0.5]))) == ["0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5"]
    wide = log_ticks(np.array([1e-6, 1e2]))
    assert len(wide) <= 8 and all(f"{t:.0e}".startswith("1") for t in wide)
    assert tick_text([5e-5, 8e-4]) == ["5e-05", "0.0008"]  # no SI prefixes ("50µ")
    assert log_ticks(np.array([0.0, -1.0])) == []


def test_a_diverged_run_is_named_and_marked_where_it_stopped():
    df = _steps_frame()
    fig = metric_over_steps_figure(df, metric="loss", diverged={"b"})
    names = [t.name for t in fig.data]
    assert names == ["a", "b (diverged)", "b diverged here"]
    mark = fig.data[2]
    assert mark.marker.symbol == "x" and list(mark.text) == ["diverged"]
    assert mark.x[0] == df[df[RUN] == "b"][STEP].max()  # on its last recorded point
