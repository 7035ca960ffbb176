"""The limit engine with C > 1 outputs and cross-entropy (dynamics.limit.readout, nfd).

Oracles: χ against autograd of the trainer's own losses; the one-step kernel per output (C independent copies of
the scalar NTK closed form of the one-layer linear net, coupling full and none); the xent step from f = 0 (uniform
softmax, χ = onehot − 1/C); exact sampling of width-m networks with C = 3 under cross-entropy (center=False)."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from dynamics.config import RunConfig
from dynamics.limit import solve_limit
from dynamics.limit.readout import loss_and_chi, mean_loss
from dynamics.train import loss_fn
from limit_exact import exact_sampling_z


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("loss", ["mse", "xent"])
def test_chi_is_minus_the_trainers_loss_gradient(loss):
    gen = torch.Generator().manual_seed(0)
    R, P, C, B = 3, 6, 4, 4
    f = torch.randn(R, P, C, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, C, (P,), generator=gen)
    y = torch.nn.functional.one_hot(labels, C).double() if loss == "xent" else torch.randn(P, C, generator=gen,
                                                                                               dtype=torch.float64)
    mask = torch.zeros(P, dtype=torch.float64)
    batch = [1, 2, 4, 5]
    mask[batch] = 1.0
    got_loss, chi = loss_and_chi(loss, f, y, mask, B)
    cfg = RunConfig(loss=loss, task="mixture" if loss == "xent" else "teacher")
    for r in range(R):
        fr = f[r, batch].clone().requires_grad_(True)
        ref = loss_fn(cfg, fr, y[batch], labels[batch])
        (grad,) = torch.autograd.grad(ref, fr)
        assert got_loss[r].item() == pytest.approx(ref.item(), rel=1e-12)
        assert torch.allclose(chi[r, batch], -grad, atol=1e-14)
        assert (chi[r, [0, 3]] == 0).all()                          # off the batch: no update
    assert torch.allclose(mean_loss(loss, f, y)[0], loss_fn(cfg, f[0], y, labels))


def test_xent_chi_at_zero_is_onehot_minus_uniform():
    C, P = 5, 3
    y = torch.nn.functional.one_hot(torch.tensor([0, 3, 4]), C).double()
    zero, ones = torch.zeros(2, P, C, dtype=torch.float64), torch.ones(P, dtype=torch.float64)
    loss, chi = loss_and_chi("xent", zero, y, ones, P)
    assert torch.allclose(chi, ((y - 1 / C) / P).expand(2, P, C))
    assert torch.allclose(loss, torch.full((2,), math.log(C), dtype=torch.float64))


def _ntk(L):
    """One SGD step of the one-layer linear depth-μP net, one input with |x|²/d = 1 (test_limit_nfd's oracle)."""
    return {"full": 2 * (1 + 1 / L) ** L + (1 + 1 / L) ** (L - 1), "none": 2 * (1 + 1 / L) ** L}


def _one_step(cfg, coupling, particles=32768, dtype="float64"):
    # 32 replicas: the 4-stderr bound then has the t-distribution of 31 degrees of freedom (p ≈ 4e-4 per value;
    # with 8 replicas, t_7, it would be p ≈ 5e-3)
    res = solve_limit(cfg, particles=particles, replicas=32, coupling=coupling, seed=3, dtype=dtype)
    assert torch.all(res.f[0] == 0)
    return (res.f[1, :, 0] - res.f[0, :, 0]) / cfg.lr, res            # (R, C) per replica


@pytest.mark.parametrize("coupling, dtype", [("full", "float64"), ("none", "float64"), ("full", "float32")])
def test_one_step_kernel_per_output(tmp_path, coupling, dtype):
    """C = 3 independent outputs (raw v_c i.i.d.): Δf_c = η K χ_c with the scalar K, no cross-talk."""
    L, eta, y = 4, 1e-4, np.array([[1.0, -2.0, 0.5]])
    np.savez(tmp_path / "c3.npz", x=np.random.default_rng(0).standard_normal((1, 8)), y=y)
    cfg = RunConfig(depth=L, act="linear", task=f"file:{tmp_path / 'c3.npz'}", train_size=1, probes=1, batch="full",
                    steps=1, test_size=0, lr=eta)
    k, _ = _one_step(cfg, coupling, dtype=dtype)   # float32 too: the O(η) change is 1e-4 of |u|, ≫ its eps
    mean, se = k.double().mean(0).numpy(), (k.double().std(0) / math.sqrt(k.shape[0])).numpy()
    exact = _ntk(L)[coupling] * y[0]
    assert np.all(np.abs(mean - exact) < 4 * se), (mean, se, exact)
    assert np.all(se < 0.03 * np.abs(exact))


@pytest.mark.parametrize("coupling", ["full", "none"])
def test_xent_first_step_from_uniform_softmax(tmp_path, coupling):
    """f(0) = 0: loss log C exactly; Δf_c = η K (δ_{c,label} − 1/C)."""
    L, eta, C = 4, 1e-4, 3
    np.savez(tmp_path / "lab.npz", x=np.random.default_rng(1).standard_normal((2, 8)), y=np.array([1, 2]))
    cfg = RunConfig(depth=L, act="linear", task=f"file:{tmp_path / 'lab.npz'}", train_size=1, probes=1,
                    batch="full", steps=1, test_size=0, lr=eta, loss="xent")
    k, res = _one_step(cfg, coupling)
    loss0 = res.metrics[(res.metrics.metric == "loss") & (res.metrics.step == 0)]
    assert loss0.value.item() == pytest.approx(math.log(C), rel=1e-14) and loss0.stderr.item() == 0
    mean, se = k.mean(0).numpy(), (k.std(0) / math.sqrt(k.shape[0])).numpy()
    exact = _ntk(L)[coupling] * (np.eye(C)[1] - 1 / C)
    assert np.all(np.abs(mean - exact) < 4 * se + 1e-9), (mean, se, exact)


XENT = RunConfig(width=32, depth=3, act="tanh", task="mixture", classes=3, loss="xent", input_dim=16,
                 train_size=8, probes=4, batch="full", steps=4, record_every=2, test_size=0, lr=0.5, dtype="float64")


@pytest.mark.slow
@pytest.mark.parametrize("coupling, backward, dtype, batch", [
    ("full", "reused", "float64", "full"), ("none", "decoupled", "float64", "full"),
    ("full", "reused", "float32", "full"), ("full", "reused", "float64", 4)])
def test_xent_c3_replicas_sample_finite_networks_exactly(tmp_path, coupling, backward, dtype, batch):
    """Cross-entropy, 3 classes: replica means of width-32 limits vs 32 width-32 finite nets, z < 4 (also with
    minibatches of 4 of the 8 inputs, so χ is zero off the batch and the probes' ĝ¹ columns differ from it)."""
    cfg = dataclasses.replace(XENT, backward=backward, batch=batch)
    z = exact_sampling_z(tmp_path, cfg, coupling, 32,
                         [("loss", -1), ("probe_loss", -1), ("h_move", 3), ("h_move", 1), ("g_move", 1),
                          ("g_sq", 0), ("fg_cov", 3)], (2, 4), dtype=dtype)
    assert np.max(np.abs(z)) < 4, np.round(z, 2)


def test_cli_limit_of_a_two_layer_xent_run_is_comparable(tmp_path):
    from dynamics.runs import store
    from dynamics.__main__ import main
    assert main(["train", "--width", "32", "--depth", "3", "--block", "2", "--inner-lr-exponent", "1",
                 "--task", "mixture", "--classes", "3", "--loss", "xent", "--steps", "3", "--train-size", "12",
                 "--batch", "4", "--probes", "3", "--record-every", "2", "--test-size", "4", "--out", str(tmp_path),
                 "--name", "fin", "--quiet"]) == 0
    assert main(["limit", "--like", str(tmp_path / "fin"), "--out", str(tmp_path), "--particles", "256",
                 "--name", "lim", "--quiet", "--dtype", "float32"]) == 0
    fin, lim = store.read_metrics(tmp_path / "fin"), store.read_metrics(tmp_path / "lim")
    meta = store.read_meta(tmp_path / "lim")
    assert meta["limit"]["dtype"] == "float32" and meta["limit"]["outputs"] == 3 and meta["limit"]["block"] == 2
    assert meta["config"] == store.read_meta(tmp_path / "fin")["config"]
    for name in ("h_sq", "g_sq", "h_move", "a_move", "fg_cov", "fg_eigmin", "diversity", "loss", "probe_loss"):
        a = fin[fin.metric == name][["step", "layer"]].sort_values(["step", "layer"]).to_numpy()
        b = lim[lim.metric == name][["step", "layer"]].sort_values(["step", "layer"]).to_numpy()
        assert np.array_equal(a, b), name
    assert set(lim.metric) <= set(fin.metric) and np.isfinite(lim.value).all()
    loss0 = lim[(lim.metric == "loss") & (lim.step == 0)].value.item()
    assert loss0 == pytest.approx(math.log(3), rel=1e-6)


@pytest.mark.slow
def test_wide_xent_nets_approach_the_limit(tmp_path):
    """Cross-entropy, 3 classes, reused nets at widths 256 and 1024 against the centred limit (coupling full)."""
    from limit_exact import wide_nets_vs_limit
    cfg = dataclasses.replace(XENT, width=256, depth=4, steps=8, record_every=1)
    err, z, bound = wide_nets_vs_limit(tmp_path, cfg, "full", ("h_move", "g_sq", "loss"))
    assert all(err[n, 1024] < err[n, 256] for n in ("h_move", "g_sq", "loss")), err
    assert max(z.values()) < bound, (z, bound)
