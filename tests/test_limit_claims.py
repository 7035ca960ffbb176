"""The statistic of the limit-reference claims (dynamics.paper.stats.mc_slope: the log-log slope of limit-run
points with a parametric bootstrap from their Monte-Carlo stderr) on synthetic points of known slope, and its
route through verdicts.interval / claim / recompute."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dynamics.paper import stats as S
from dynamics.paper.verdicts import claim, recompute

X = np.array([2.0, 4.0, 8.0, 16.0, 32.0])
SLOPE = 0.4


def _curve() -> np.ndarray:
    return 0.3 * X ** SLOPE


def test_mc_slope_covers_the_true_slope_about_95_percent_with_known_stderr():
    """Points y + se·z (z normal, se 5% of y): the 95% interval holds the true slope in 88-99% of 400 draws and
    excludes slope 0, far from it, in every one."""
    rng = np.random.default_rng(1)
    y, se = _curve(), 0.05 * _curve()
    hits, excl = 0, 0
    for i in range(400):
        ci = S.mc_slope(X, y + se * rng.standard_normal(len(X)), se, n_boot=1000, rng_seed=i)
        hits += ci.low <= SLOPE <= ci.high
        excl += not (ci.low <= 0.0 <= ci.high)
    assert 0.88 <= hits / 400 <= 0.99
    assert excl == 400


def test_mc_slope_with_stderr_from_four_replicas_keeps_its_coverage_with_t_draws():
    """se estimated from 4 replicas (as a limit run's stderr is): drawing Student's t with 3 dof keeps coverage
    near 95%; normal draws on the same estimated se fall short (the reason for `dof`)."""
    rng = np.random.default_rng(2)
    y, sd = _curve(), 0.1 * _curve()       # per-replica spread; stderr = sd/2
    cover_t = cover_z = 0
    for i in range(400):
        reps = y + sd * rng.standard_normal((4, len(X)))
        m, se = reps.mean(0), reps.std(0, ddof=1) / 2
        cover_t += S.mc_slope(X, m, se, dof=3, n_boot=1000, rng_seed=i).low <= SLOPE <= \
            S.mc_slope(X, m, se, dof=3, n_boot=1000, rng_seed=i).high
        z = S.mc_slope(X, m, se, n_boot=1000, rng_seed=i)
        cover_z += z.low <= SLOPE <= z.high
    assert 0.9 <= cover_t / 400 <= 0.995
    assert cover_z < cover_t


def test_mc_slope_exact_points_and_undefined_cases():
    ci = S.mc_slope(X, _curve(), np.zeros(len(X)))
    assert ci.value == pytest.approx(SLOPE) and ci.low == pytest.approx(SLOPE) and ci.high == pytest.approx(SLOPE)
    assert math.isnan(S.mc_slope(X, np.r_[_curve()[:-1], -1.0], np.ones(len(X))).value)   # a y ≤ 0
    wide = S.mc_slope(X, _curve(), 2 * _curve())  # draws ≤ 0 in most resamples: no interval, counted
    assert math.isfinite(wide.value) and math.isnan(wide.low) and wide.dropped > 50


def test_an_mc_slope_claim_recomputes_and_decides_against_its_alternative():
    rng = np.random.default_rng(3)
    y = _curve() * (1 + 0.02 * rng.standard_normal(len(X)))
    pts = pd.DataFrame({"alpha": 1.0, "grid": X, "a_move": y, "a_move_stderr": 0.02 * _curve()})
    rising = pd.DataFrame({"alpha": 0.0, "grid": X, "a_move": 0.2 * X ** 0.05, "a_move_stderr": 0.002})
    both = pd.concat([pts, rising], ignore_index=True)
    common = dict(method="mc_slope", extra={"se": "a_move_stderr", "dof": 3}, page="pages/3_Limit.py", runs=[])
    c1 = claim("t1", "§7", "grows", both, "p.parquet", "grid", "a_move", paper="persists", where={"alpha": 1.0},
               alt=S.Alternative(0.0, "flat"), **common)
    c0 = claim("t0", "§7", "vanishes", both, "p.parquet", "grid", "a_move", paper="vanishes", where={"alpha": 0.0},
               alt=S.Alternative(0.0, "flat"), **common)
    assert c1["verdict"] == "agrees" and c1["ci"][0] <= SLOPE <= c1["ci"][1]
    assert c0["measured"] == pytest.approx(0.05) and c0["verdict"] == "disagrees"   # slowly rising: not vanishing
    got = recompute(c1, both)
    assert (got.value, got.low, got.high) == (c1["measured"], *c1["ci"])
