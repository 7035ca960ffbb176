"""The coupling as recorded in runs (issue #4): the batched tracker equals the reference decomposition of
dynamics.coupling_reference, the init coupling is a finite-width effect, and decoupled runs have none."""
import numpy as np
import pytest
import torch

from dynamics import coupling_reference as C
from dynamics.runs import store
from dynamics.config import RunConfig
from dynamics.paper.fits import fit_loglog
from dynamics.probes import CouplingTracker
from dynamics.train import train


def test_tracker_matches_reference_decomposition():
    g = torch.Generator().manual_seed(0)
    L, n, P = 3, 48, 2
    W0 = torch.randn(L, n, n, generator=g, dtype=torch.float64)
    tr = CouplingTracker(W0, window=0, decoupled=False, branch=0.5)
    us = [torch.randn(L, P, n, generator=g, dtype=torch.float64) for _ in range(3)]
    gs = [torch.randn(L, P, n, generator=g, dtype=torch.float64) for _ in range(3)]
    for u, gg in zip(us, gs):
        out = tr.update(u, gg)
    hist = lambda vs, k: torch.cat([v[k].T for v in vs], dim=1)  # (n, steps·P)
    fwd_acc = torch.zeros(n, P, dtype=torch.float64)
    for k in range(L):
        ref = C.forward_decomposition(W0[k], hist(us[:2], k), hist(gs[:2], k), us[2][k].T)
        st = C.coupling_stats(ref)
        assert out["coupling_fwd"][0][k].item() == pytest.approx(st["coupling"], rel=1e-8)
        assert out["coupling_fwd_frac"][0][k].item() == pytest.approx(st["frac"], rel=1e-8)
        chance = C.expected_chance(hist(us[:2], k), hist(gs[:2], k), us[2][k].T)
        assert out["coupling_fwd_chance"][0][k].item() == pytest.approx(chance["coupling"], rel=1e-8)
        refb = C.backward_decomposition(W0[k], hist(us, k), hist(gs[:2], k), gs[2][k].T)
        assert out["coupling_bwd"][0][k].item() == pytest.approx(C.coupling_stats(refb)["coupling"], rel=1e-8)
        fwd_acc += 0.5 * ref["coupling"]
        assert out["coupling_acc"][0][k].item() == pytest.approx(fwd_acc.pow(2).sum(0).mean().item() / n,
                                                                 rel=1e-8)


def test_coupling_acc_chance_is_the_mean_accumulation_over_independent_matrices():
    """coupling_acc_chance = branch²·Σ_{k≤ℓ} coupling_fwd_chance(k): Monte-Carlo over matrices W drawn
    independently of fixed histories (so every split is pure projection noise) must average to it."""
    g = torch.Generator().manual_seed(5)
    L, n, P, branch, draws = 3, 24, 2, 0.7, 600
    us = [torch.randn(L, P, n, generator=g, dtype=torch.float64) for _ in range(3)]
    gs = [torch.randn(L, P, n, generator=g, dtype=torch.float64) for _ in range(3)]
    acc, chance = torch.zeros(L, dtype=torch.float64), None
    for _ in range(draws):
        tr = CouplingTracker(torch.randn(L, n, n, generator=g, dtype=torch.float64), window=0, decoupled=False,
                             branch=branch)
        for u, gg in zip(us, gs):
            out = tr.update(u, gg)
        acc += out["coupling_acc"][0] / draws
        ch = out["coupling_acc_chance"][0]
        assert chance is None or torch.allclose(ch, chance)  # depends on the histories only, not on W
        chance = ch
    torch.testing.assert_close(chance, branch ** 2 * torch.cumsum(out["coupling_fwd_chance"][0], 0))
    # Monte-Carlo error of the mean of ≈ chi-square variables with a few degrees of freedom: under 10%
    assert torch.allclose(acc, chance, rtol=0.1), (acc, chance)


def test_window_bounds_the_history():
    g = torch.Generator().manual_seed(3)
    W0 = torch.randn(2, 32, 32, dtype=torch.float64, generator=g)
    tr = CouplingTracker(W0, window=2, decoupled=False, branch=1.0)
    us = [torch.randn(2, 3, 32, dtype=torch.float64, generator=g) for _ in range(5)]
    gs = [torch.randn(2, 3, 32, dtype=torch.float64, generator=g) for _ in range(5)]
    for u, gg in zip(us, gs):
        out = tr.update(u, gg)
    assert len(tr.raw) == 2 and tr.fwd.Q.shape[2] == tr.bwd.Q.shape[2] == 6
    # the last split saw only the two records before it (steps 3 and 4 of 5)
    A, B = torch.cat([v[0].T for v in us[2:4]], 1), torch.cat([v[0].T for v in gs[2:4]], 1)
    ref = C.coupling_stats(C.forward_decomposition(W0[0], A, B, us[4][0].T))
    assert out["coupling_fwd"][0][0].item() == pytest.approx(ref["coupling"], rel=1e-8)


def _init_coupling(width, depth, seeds):
    out = []
    for seed in seeds:
        cfg = RunConfig(width=width, depth=depth, steps=0, probes=8, train_size=64, batch=8, test_size=0,
                        seed=seed, device="cpu")
        run = train(cfg, _init_coupling.tmp / f"w{width}d{depth}s{seed}")
        out.append(store.read_metrics(run, metrics=["coupling_bwd"]).value.mean())  # mean over blocks
    return float(np.mean(out))


def test_init_coupling_is_a_finite_width_effect(tmp_path):
    """Issue #4: at initialisation coupling_bwd (mean over blocks) falls like 1/n and does not grow with L."""
    _init_coupling.tmp = tmp_path
    widths = [128, 256, 512, 1024]
    values = [_init_coupling(n, 8, range(2)) for n in widths]
    fit = fit_loglog(widths, values)
    assert abs(fit.slope + 1) < 0.3, (values, fit)
    deep = [_init_coupling(256, L, range(2)) for L in (4, 16)]
    assert deep[1] < 1.3 * deep[0], deep


def test_decoupled_runs_have_no_coupling(tmp_path):
    cfg = RunConfig(width=32, depth=3, steps=4, record_every=2, train_size=16, batch="full", probes=4,
                    test_size=0, backward="decoupled", device="cpu")
    run = train(cfg, tmp_path / "r")
    df = store.read_metrics(run, metrics=["coupling_fwd", "coupling_bwd", "coupling_acc"])
    assert len(df) == 3 * 3 * 3 and (df.value == 0).all()
    assert store.read_meta(run)["coupling"]["window"] >= 1


def test_reused_training_creates_coupling_far_above_chance(tmp_path):
    """THEORY §4/§5: one input, full batch, recorded every step: after the first update the forward input
    of each block carries its own past backward message, so coupling_fwd is far above projection noise."""
    cfg = RunConfig(width=512, depth=4, act="linear", steps=2, record_every=1, train_size=1, batch="full",
                    probes=1, test_size=0, lr=0.5, device="cpu", dtype="float64")
    df = store.read_metrics(train(cfg, tmp_path / "r"), steps=[1])
    fwd = df[df.metric == "coupling_fwd"].value.to_numpy()
    chance = df[df.metric == "coupling_fwd_chance"].value.to_numpy()
    assert (fwd > 20 * chance).all(), (fwd, chance)
