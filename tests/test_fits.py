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
