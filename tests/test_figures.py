"""Figure builders (dynamics.figures) on ten-row tidy frames: trace count, trace names, axis titles."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dynamics.figures import RUN, TAU, TAU_TITLE, depth_profile_figure, metric_over_steps_figure
from dynamics.store import STDERR, STEP, VALUE


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
    assert fig.layout.yaxis.tickformat  # log ticks print values, not plotly's leading digits


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
