"""Heatmaps are sent so that Plotly can paint them as one image (dynamics.figures.trajectories.even_centres):
pooled, nearly even cell centres become exactly even (Plotly's own test: each gap within 1% of the mean), no
cell moves by more than half a cell, the values are untouched, and uneven or few centres are left alone."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics.figures import bin_grid, heatmap_figure
from dynamics.figures.trajectories import even_centres


def _plotly_linear(c) -> bool:
    """plotly.js heatmap calc: a coordinate array is linear when every gap is within 1% of the mean gap."""
    c = np.asarray(c, float)
    d = (c[-1] - c[0]) / (len(c) - 1)
    return bool(np.all(np.abs(np.diff(c) - d) <= abs(d / 100)))


def _pooled(steps: int, layers: int):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((steps, layers))
    s, l, z = bin_grid(values, np.arange(steps), np.arange(layers), 300, 129)
    ss, ll = np.meshgrid(s, l, indexing="ij")
    return s, l, z, pd.DataFrame({"step": ss.ravel(), "tau": ll.ravel() / (layers - 1), "value": z.ravel()})


def test_pooled_steps_are_drawn_evenly_within_half_a_cell_with_the_same_values():
    s, l, z, df = _pooled(2000, 129)  # 2,000 steps pooled into bins of 7 and 6: centres not even
    assert not _plotly_linear(s)
    tr = heatmap_figure(df, metric="m").data[0]
    x = np.asarray(tr.x, float)
    assert _plotly_linear(x) and _plotly_linear(tr.y)
    width = (s[-1] - s[0]) / (len(s) - 1)
    assert np.max(np.abs(x - s)) <= width / 2 + 1e-9
    np.testing.assert_allclose(np.asarray(tr.z, float), z.T.astype(np.float32), equal_nan=True)
    assert "step≈" in tr.hovertemplate and "τ=" in tr.hovertemplate  # the layers were even: τ exact


def test_even_uneven_and_few_centres_are_left_alone():
    even = np.arange(0, 3000, 10.0)
    out, moved = even_centres(even)
    assert not moved and np.array_equal(out, even)
    log_steps = np.unique(np.round(np.geomspace(1, 10_000, 200)))  # log-spaced recording: far from even
    out, moved = even_centres(log_steps)
    assert not moved and np.array_equal(out, log_steps)
    few = np.array([0, 1, 2, 4, 5, 7, 8, 9.0])  # a few cells: each is wide, nothing moves
    assert not even_centres(few)[1]
    df = pd.DataFrame({"step": np.repeat(log_steps, 3), "tau": np.tile([0, .5, 1], len(log_steps)), "value": 1.0})
    tr = heatmap_figure(df, metric="m").data[0]
    assert np.array_equal(np.asarray(tr.x, float), log_steps) and "step=" in tr.hovertemplate
