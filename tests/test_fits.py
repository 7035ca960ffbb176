"""Log-log fits against synthetic power laws."""
import numpy as np
import pytest

from dynamics.paper.fits import fit_loglog


def test_exact_power_law_has_exact_slope():
    x = np.array([128, 256, 512, 1024])
    fit = fit_loglog(x, 3.0 / x)
    assert fit.slope == pytest.approx(-1.0) and fit.ci_low == pytest.approx(-1.0) and fit.contains(-1.0)


def test_noisy_power_law_interval_covers_truth_and_excludes_wrong_rate():
    rng = np.random.default_rng(0)
    x = np.repeat([8, 16, 32, 64, 128], 4)
    y = 2.0 * x ** -2.0 * np.exp(rng.normal(0, 0.1, x.size))
    fit = fit_loglog(x, y, seed=1)
    assert fit.contains(-2.0) and not fit.contains(-1.0)
    assert fit.ci_high - fit.ci_low < 0.3


@pytest.mark.parametrize("x,y", [([1, 1], [1, 2]), ([1, 2], [-1, -1]), ([1], [1]), ([1, 2], [np.nan, 1])])
def test_degenerate_input_gives_nan(x, y):
    fit = fit_loglog(x, y)
    assert np.isnan(fit.slope) and not fit.contains(0.0)


# --- dynamics.paper.stats: the excess over chance, the paired seed bootstrap, the verdict rule ----------

import math  # noqa: E402

import pandas as pd  # noqa: E402

from dynamics.paper import stats as S  # noqa: E402


def _excess_points(rate: float, seeds: int, noise: float, rng_seed: int = 0) -> pd.DataFrame:
    """raw = signal·n^rate + chance with chance = 5/n (a projection-noise floor), and per-seed noise; the
    recorded chance level is exact, as the tracker's expectation is."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for s in range(seeds):
        for n in (128, 256, 512, 1024):
            signal = 0.02 * n ** rate * np.exp(rng.normal(0, noise))
            rows.append({"seed": s, "width": n, "raw": signal + 5.0 / n, "chance": 5.0 / n})
    df = pd.DataFrame(rows)
    df["excess"] = df.raw - df.chance
    return df


def test_excess_slope_recovers_the_signal_rate_that_the_raw_slope_hides():
    df = _excess_points(0.0, seeds=6, noise=0.15)
    raw, xs = S.by_seed(df, "width", "raw")
    exc, _ = S.by_seed(df, "width", "excess")
    raw_ci = S.seed_bootstrap(raw, S.slope_of_means(xs))
    exc_ci = S.seed_bootstrap(exc, S.slope_of_means(xs))
    assert raw_ci.high < -0.3                      # the 1/n floor drags the raw slope down
    assert abs(exc_ci.value) < 0.15 and exc_ci.half_width < 0.3  # coverage: the next test
    steep, _ = S.by_seed(_excess_points(-1.0, seeds=6, noise=0.15), "width", "excess")
    steep_ci = S.seed_bootstrap(steep, S.slope_of_means(xs))
    assert abs(steep_ci.value + 1.0) < 0.15 and steep_ci.high < -0.6


def test_seed_interval_covers_the_true_slope_about_95_percent_of_the_time():
    """Coverage over 60 independent 6-seed experiments (the small-sample widening is what makes it ~95%;
    the plain percentile interval covers about 83% here). 60 draws: ≥ 52 covered is > 3σ below 95%."""
    covered = 0
    for r in range(60):
        t, xs = S.by_seed(_excess_points(0.0, seeds=6, noise=0.15, rng_seed=100 + r), "width", "excess")
        ci = S.seed_bootstrap(t, S.slope_of_means(xs), n_boot=300)
        covered += ci.low <= 0.0 <= ci.high
    assert covered >= 52, covered


def test_bootstrap_resamples_whole_seeds_and_flags_undefined_logs():
    df = _excess_points(0.0, seeds=2, noise=0.0)
    t, xs = S.by_seed(df, "width", "excess")
    assert t.shape == (2, 4) and xs == [128, 256, 512, 1024]
    ci = S.seed_bootstrap(t, S.slope_of_means(xs), n_boot=200)
    assert ci.seeds == 2 and ci.low == pytest.approx(0.0, abs=1e-9)  # noise-free: every resample is exact
    t[:, -1] = -1.0                                                   # a mean ≤ 0 at one width
    bad = S.seed_bootstrap(t, S.slope_of_means(xs), n_boot=200)
    assert math.isnan(bad.value) and math.isnan(bad.low) and bad.dropped == 200
    # one seed whose excess is negative at a width, the mean still positive: defined
    t2, _ = S.by_seed(_excess_points(0.0, seeds=4, noise=0.0), "width", "excess")
    t2[0, 0] = -0.5 * t2[1:, 0].sum()
    assert math.isfinite(S.slope_of_means(xs)(t2))


def _ci(v, lo, hi, seeds=4):
    return S.Interval(v, lo, hi, seeds)


@pytest.mark.parametrize("ci, paper, alt, expected", [
    (_ci(-1.0, -1.2, -0.8), (-1.0, -1.0), S.Alternative(0.0, "no decay"), "agrees"),
    (_ci(-0.5, -1.2, 0.2), (-1.0, -1.0), S.Alternative(0.0, "no decay"), "inconclusive"),  # holds both
    (_ci(0.1, -0.1, 0.3), (-1.0, -1.0), S.Alternative(0.0, "no decay"), "disagrees"),
    (_ci(-0.08, -0.77, 0.45), (0.0, 0.0), S.Alternative(-0.5, "the μP shift"), "inconclusive"),  # the old lr case
    (_ci(-0.3, -0.5, -0.1), (-math.inf, 0.0), S.Alternative(0.0, "flat", side="ge"), "agrees"),
    (_ci(0.2, 0.1, 0.3), (-math.inf, 0.0), S.Alternative(0.0, "flat", side="ge"), "disagrees"),
    (_ci(0.0, -0.1, 0.1), (-math.inf, 0.0), S.Alternative(0.0, "flat", side="ge"), "inconclusive"),
    (_ci(-1.0, math.nan, math.nan), (-1.0, -1.0), S.Alternative(0.0, "no decay"), "inconclusive"),
])
def test_verdict_needs_the_alternative_excluded(ci, paper, alt, expected):
    got, why = S.verdict(ci, paper, alt)
    assert got == expected, why
    assert why and "\n" not in why


def test_seeds_to_decide_scales_like_one_over_sqrt_seeds():
    ci = _ci(-0.8, -1.4, -0.2, seeds=4)      # half-width 0.6; the alternative 0 is 0.8 away
    assert S.seeds_to_decide(ci, (-1.0, -1.0), S.Alternative(0.0, "no decay")) == math.ceil(4 * (0.6 / 0.8) ** 2) + 0 \
        or S.seeds_to_decide(ci, (-1.0, -1.0), S.Alternative(0.0, "no decay")) == 5
    wide = _ci(-0.5, -2.5, 1.5, seeds=3)      # half-width 2, alternative 0.5 away: 3·16 = 48 seeds
    assert S.seeds_to_decide(wide, (-1.0, -1.0), S.Alternative(0.0, "no decay")) == 48
    why = S.verdict(wide, (-1.0, -1.0), S.Alternative(0.0, "no decay"))[1]
    assert "48 seeds" in why


def test_lr_optimum_is_the_vertex_of_a_quadratic_in_log_lr():
    lrs = np.array([0.03, 0.06, 0.1, 0.2, 0.4, 0.8, 1.6])
    loss = np.exp(0.5 * (np.log(lrs) - np.log(0.27)) ** 2)          # log loss quadratic, optimum 0.27
    assert S.lr_optimum(lrs, loss) == pytest.approx(0.27, rel=1e-9)
    assert math.isnan(S.lr_optimum(lrs, np.exp(-np.log(lrs))))      # monotone: optimum off the grid
    diverged = loss.copy()
    diverged[-1] = np.inf
    assert S.lr_optimum(lrs, diverged) == pytest.approx(0.27, rel=1e-9)


def test_joint_power_fit_recovers_both_rates():
    n, L = np.meshgrid([64, 128, 256, 512], [2, 4, 8, 16], indexing="ij")
    err = 3.0 * n.ravel() ** -0.5 + 0.4 * L.ravel() ** -1.0
    p, q, a, b = S.joint_power_fit(n.ravel(), L.ravel(), err)
    assert (p, q) == (pytest.approx(0.5, abs=0.03), pytest.approx(1.0, abs=0.03))
    assert a == pytest.approx(3.0, rel=0.1) and b == pytest.approx(0.4, rel=0.1)


def _joint_fit_by_loop(n, L, err, grid):
    """The joint fit written the slow, obvious way: per (p, q), non-negative least squares of the relative error
    over the subsets {both terms, only a, only b}, then the smallest Σ (log err − log fit)²."""
    best = None
    for p in grid:
        for q in grid:
            X = np.stack([n ** -p / err, L ** -q / err], axis=1)
            cands = []
            coef, *_ = np.linalg.lstsq(X, np.ones_like(err), rcond=None)
            if (coef >= 0).all():
                cands.append(coef)
            else:
                for j in (0, 1):
                    c = np.zeros(2)
                    c[j] = max(0.0, X[:, j].sum() / (X[:, j] ** 2).sum())
                    cands.append(c)
            for a, b in cands:
                fit = a * n ** -p + b * L ** -q
                sse = ((np.log(err) - np.log(np.maximum(fit, 1e-300))) ** 2).sum()
                if best is None or sse < best[0] - 1e-12:
                    best = (sse, p, q)
    return best[1], best[2]


@pytest.mark.parametrize("seed", range(6))
def test_joint_power_fit_equals_the_obvious_loop(seed):
    """The broadcast grid search (per p and per q, then combined) picks the exponents a plain double loop does."""
    rng = np.random.default_rng(seed)
    n, L = (v.ravel().astype(float) for v in np.meshgrid([64, 128, 256, 512], [2, 4, 8, 16], indexing="ij"))
    err = rng.uniform(0.1, 3) * n ** -rng.uniform(0, 1.5) + rng.uniform(0.05, 1) * L ** -rng.uniform(0, 1.5)
    err *= rng.lognormal(0, 0.2, err.size)
    grid = np.linspace(0.0, 3.0, 25)
    p, q, _, _ = S.joint_power_fit(n, L, err, grid=grid)
    assert (p, q) == pytest.approx(_joint_fit_by_loop(n, L, err, grid))


@pytest.mark.parametrize("seed", range(4))
def test_seed_means_slope_over_all_resamples_at_once_equals_one_at_a_time(seed):
    """slope_of_means' batch form (used by seed_bootstrap) gives what the per-resample statistic gives, including
    NaN for a resample whose mean is ≤ 0 or all-NaN (a diverged cell)."""
    rng = np.random.default_rng(seed)
    xs = np.array([64.0, 128, 256, 512])
    table = np.exp(rng.normal(0, 0.5, (3, 4))) * xs ** -0.5
    if seed % 2:  # a negative seed value: resamples with it twice or more have that cell's mean ≤ 0
        table[0, 1] = -1.5 * table[1:, 1].sum()
    else:         # resamples of seeds 0 and 1 only: that cell's mean is NaN
        table[:2, 1] = np.nan
    table[2, 2] = np.nan
    stat = S.slope_of_means(xs)
    stack = table[rng.integers(0, 3, (300, 3))]
    one = np.array([stat(t) for t in stack])
    assert np.isnan(one).any() and np.isfinite(one).any()
    np.testing.assert_allclose(stat.batch(stack), one, rtol=1e-10, atol=1e-12, equal_nan=True)
