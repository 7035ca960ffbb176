"""a_learn, the inner layer's own feature learning in two-layer blocks (|ΔW_ℓ,1·φ(h_ℓ−1)/√n|²/n): equal to an
explicit computation from the weights, zero at initialisation and absent for one-layer blocks, and with the power
counting of docs/theory.md §7: O(L^(2α−1)), so after one step it falls like 1/L at α = 0 and is flat at α = 1/2."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dynamics import probes as P
from dynamics.activations import phi
from dynamics.config import RunConfig
from dynamics.model import ResNet
from dynamics.train import train


def test_inner_learning_equals_an_explicit_sum_over_probes_and_coordinates():
    torch.manual_seed(0)
    cfg = RunConfig(width=16, depth=3, block=2, input_dim=5, act="tanh")
    model = ResNet(cfg, 5, 1, torch.Generator().manual_seed(0), torch.float64)
    W0 = model.W.detach().clone()
    with torch.no_grad():
        model.W.add_(0.3 * torch.randn_like(model.W))
    x = torch.randn(4, 5, dtype=torch.float64)
    s = P.probe_pass(model, x)
    got = P.inner_learning(s, model.W, W0, model.s.hidden).numpy()
    h = s.h.numpy()
    dW = (model.W.detach() - W0).numpy()
    n = cfg.width
    want = []
    for ell in range(1, cfg.depth + 1):  # block ℓ reads φ(h_ℓ−1) through W_ℓ,1 = W[ℓ−1]
        total = 0.0
        for mu in range(x.shape[0]):
            u = np.tanh(h[ell - 1, mu])
            msg = [sum(dW[ell - 1, i, j] * u[j] for j in range(n)) / np.sqrt(n) for i in range(n)]
            total += sum(m * m for m in msg) / n
        want.append(total / x.shape[0])
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert model.s.hidden == pytest.approx(1 / np.sqrt(n))
    assert np.allclose(phi(torch.tensor(h[0]), "tanh").numpy(), np.tanh(h[0]))


def _a_learn(run) -> pd.DataFrame:
    m = pd.read_parquet(run / "metrics.parquet")
    m["metric"] = m["metric"].astype(str)
    return m[m.metric == "a_learn"].pivot_table(index="step", columns="layer", values="value")


def test_the_trainer_records_a_learn_for_two_layer_blocks_only(tmp_path):
    base = dict(width=32, depth=3, steps=2, train_size=8, batch="full", probes=4, record_every=1, test_size=0,
                input_dim=8, record_coupling="off", lr=0.2)
    train(RunConfig(block=2, **base), tmp_path / "two", progress=False)
    a = _a_learn(tmp_path / "two")
    assert list(a.columns) == [1, 2, 3] and list(a.index) == [0, 1, 2]
    assert (a.loc[0] == 0).all() and (a.loc[2] > 0).all()  # ΔW = 0 at initialisation
    train(RunConfig(block=1, **base), tmp_path / "one", progress=False)
    assert _a_learn(tmp_path / "one").empty


@pytest.mark.slow
def test_a_learn_falls_like_one_over_L_at_alpha_0_and_is_flat_at_alpha_one_half(tmp_path):
    """One full-batch step at depths 4 and 16 (width 256, 2 seeds): the log-log slope of the mean over blocks is
    −1 + O(noise) at α = 0 (measured −0.89 over L = 4..32) and 0 at α = 1/2 (measured +0.11); the bounds ±0.35
    separate the two readings, and the paired difference must be near the predicted 1."""
    slopes = {}
    for alpha in (0.0, 0.5):
        means = []
        for L in (4, 16):
            vals = []
            for seed in range(2):
                cfg = RunConfig(width=256, depth=L, block=2, inner_lr_exponent=alpha, steps=1, train_size=8,
                                batch="full", probes=8, record_every=1, test_size=0, input_dim=16,
                                record_coupling="off", lr=0.1, seed=seed)
                run = tmp_path / f"a{alpha}_L{L}_s{seed}"
                train(cfg, run, progress=False)
                vals.append(_a_learn(run).loc[1].mean())
            means.append(np.mean(vals))
        slopes[alpha] = np.log(means[1] / means[0]) / np.log(16 / 4)
    assert abs(slopes[0.0] + 1) < 0.35, slopes
    assert abs(slopes[0.5]) < 0.35, slopes
    assert 0.65 < slopes[0.5] - slopes[0.0] < 1.35, slopes
