"""Figure builders: tidy DataFrame in, plotly Figure out (no Streamlit, no I/O).

Every builder is named `<noun>_figure(df, *, options) -> go.Figure` and takes a tidy frame whose columns
are named by `RUN`, `TAU`, `SMOOTH` here and the store's `STEP`, `LAYER`, `VALUE`, `STDERR`, `QUANTILE`.
Pages build the frame with their cached loaders (which reduce big runs first with `reduce`), call one
builder and show the result with `chart_config(...)` (the toolbar's PNG/SVG download); tests call builders
on ten-row frames. Modules: `_style` (shared colours, bands, axes), `profiles` (curves across runs over τ or
steps, chance levels), `trajectories` (heatmaps, per-layer curves, quantile fans), `scaling` (error vs
n and L, learning-rate transfer), `evidence` (a claim's points, fit and guides), `reduce` (downsampling,
smoothing, grid pooling).
"""
from __future__ import annotations

from ._style import (BAND_NAME, LIMIT_COLOUR, PALETTE, PREDICTION, RUN, SMOOTH, STEP_TITLE, TAU, TAU_TITLE,
                     WEBGL_LINE_POINTS, WEBGL_POINTS, chart_config, restyle_runs)
from .evidence import claim_figure
from .profiles import chance_figure, depth_profile_figure, limit_steps_figure, metric_over_steps_figure
from .reduce import bin_grid, ema_debiased, minmax_downsample, minmax_indices
from .scaling import ERROR, error_scaling_figure, lr_transfer_figure
from .trajectories import heatmap_figure, layer_curves_figure, quantile_fan_figure

__all__ = ["RUN", "TAU", "SMOOTH", "ERROR", "TAU_TITLE", "STEP_TITLE", "PALETTE", "LIMIT_COLOUR", "PREDICTION", "BAND_NAME", "WEBGL_POINTS", "WEBGL_LINE_POINTS",
           "chart_config", "claim_figure", "restyle_runs",
           "depth_profile_figure", "limit_steps_figure", "metric_over_steps_figure", "chance_figure", "heatmap_figure",
           "layer_curves_figure", "quantile_fan_figure", "error_scaling_figure", "lr_transfer_figure",
           "bin_grid", "ema_debiased", "minmax_downsample", "minmax_indices"]
