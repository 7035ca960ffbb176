"""The limit engine with two-layer blocks (a = W1 φ(h)/√n, h += b W2 φ(a)/√n) and the inner-LR exponent α.

Oracles: step 0 equals the exact two-layer-block recursion (init_kernels(block=2): branch kernel V(V(H)), backward
factor V'(V(H)) ⊙ V'(H), itself checked against finite nets in test_limit_kernels); the particles' forward and
backward passes reproduce that recursion within their stderr; exact sampling of width-m two-layer-block networks
(center=False), α = 0 and 1, coupling full and none, including the inner features' movement a_move and the inner
layer's own learning a_learn (its drift ΔW1 φ(h)/√n, which equals a_move in block 1 when only hidden weights train)."""
import dataclasses

import numpy as np
import pytest

from dynamics.config import RunConfig
from dynamics.limit import init_kernels, solve_limit
from dynamics.data import load_task
from limit_exact import exact_sampling_z

BASE = RunConfig(width=32, depth=3, block=2, act="tanh", train_size=8, probes=4, batch="full", steps=4,
                 record_every=2, test_size=0, lr=0.5, dtype="float64")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _layers(metrics, name, step):
    m = metrics[(metrics.metric == name) & (metrics.step == step)].sort_values("layer")
    return m.value.to_numpy(), m.stderr.to_numpy()


@pytest.mark.parametrize("act, param, dtype", [("relu", "depth-mup", "float64"), ("tanh", "mup", "float64"),
                                               ("abs", "plain", "float64"), ("gelu", "depth-mup", "float64"),
                                               ("tanh", "depth-mup", "float32")])
def test_block2_particles_follow_the_two_layer_recursion(act, param, dtype):
    cfg = dataclasses.replace(BASE, act=act, param=param, depth=4, steps=1, record_every=1, lr=1e-9)
    res = solve_limit(cfg, particles=8192, seed=0, dtype=dtype)  # step 1 ≈ init, computed by the particles
    X = load_task(cfg)[0].x[:cfg.probes]
    ker = init_kernels(X @ X.T / X.shape[1], cfg.depth, act=act, param=param, block=2)
    for name, kind in (("h_sq", "H"), ("phi_sq", "Phi"), ("g_sq", "G")):
        exact = ker[kind].diagonal(dim1=1, dim2=2).mean(1).numpy()
        v0, se0 = _layers(res.metrics, name, 0)
        assert np.array_equal(v0, exact) and (se0 == 0).all(), name          # step 0: the recursion itself
        v1, se1 = _layers(res.metrics, name, 1)
        assert np.all(np.abs(v1 - exact) < 4 * se1 + 1e-9), (name, (v1 - exact) / se1)
        if param != "plain":  # without skips the width-m kernel noise compounds over 2K layers (≈ 7% at K = 4)
            assert np.all(se1 < 0.05 * exact), name                          # and resolved
    for name in ("a_move", "a_learn"):
        a0, _ = _layers(res.metrics, name, 0)
        a1, _ = _layers(res.metrics, name, 1)
        assert len(a0) == cfg.depth and (a0 == 0).all() and np.all(a1 < 1e-12), name


def test_block2_a_learn_is_the_inner_move_where_the_input_is_frozen():
    """Hidden weights only, one step: block 1's input h_0 = U x/√d does not move, so its inner pre-activation
    moves by ΔW_1,1 φ(h_0)/√n alone and a_learn = a_move there, to round-off; deeper blocks' inputs moved too,
    so a_move holds more than a_learn. With the readout and input trained as well the identity breaks (h_0 moves).
    α multiplies block 1's update and nothing before it, so a_learn ∝ K^(2α) in block 1 (common random numbers)."""
    cfg = dataclasses.replace(BASE, depth=4, steps=1, record_every=1, lr=0.05, trained=("hidden",))
    got = {}
    for alpha in (0.0, 0.5):
        m = solve_limit(dataclasses.replace(cfg, inner_lr_exponent=alpha), particles=2048, seed=3).metrics
        got[alpha] = learn, move = _layers(m, "a_learn", 1)[0], _layers(m, "a_move", 1)[0]
        assert learn[0] > 0 and learn[0] == pytest.approx(move[0], rel=1e-9), (learn, move)
        assert np.all(move[1:] > learn[1:] * (1 + 1e-6)), (learn, move)
    assert got[0.5][0][0] / got[0.0][0][0] == pytest.approx(cfg.depth, rel=1e-9)
    m = solve_limit(dataclasses.replace(cfg, trained=("input", "hidden", "readout")), particles=2048, seed=3).metrics
    learn, move = _layers(m, "a_learn", 1)[0], _layers(m, "a_move", 1)[0]
    assert abs(learn[0] - move[0]) > 1e-6 * move[0]


def test_block2_inner_lr_exponent_scales_the_first_inner_update():
    """Only hidden weights train, one step: in block 1, h_0 is frozen, so a_1 moves by ΔW1 φ(h_0)/√n ∝ K^α alone
    and a_move ∝ K^(2α) (same noise for every α: common random numbers); deeper blocks also feel the earlier
    W2 updates, which α does not scale, so their ratio lies strictly between 1 and K^(2α)."""
    cfg = dataclasses.replace(BASE, depth=4, steps=1, record_every=1, lr=1e-4, trained=("hidden",))
    moves = {a: _layers(solve_limit(dataclasses.replace(cfg, inner_lr_exponent=a), particles=2048, seed=5).metrics,
                        "a_move", 1)[0] for a in (0.0, 1.0)}
    ratio = moves[1.0] / moves[0.0]
    assert ratio[0] == pytest.approx(cfg.depth ** 2, rel=1e-6), ratio
    assert np.all((ratio[1:] > 1.5) & (ratio[1:] < cfg.depth ** 2 - 1)), ratio


@pytest.mark.slow
@pytest.mark.parametrize("coupling, backward, alpha, dtype", [
    ("full", "reused", 1.0, "float64"), ("none", "decoupled", 1.0, "float64"), ("full", "reused", 0.0, "float64"),
    ("none", "decoupled", 1.0, "float32")])
def test_block2_replicas_sample_finite_networks_exactly(tmp_path, coupling, backward, alpha, dtype):
    cfg = dataclasses.replace(BASE, backward=backward, inner_lr_exponent=alpha)
    z = exact_sampling_z(tmp_path, cfg, coupling, 32,
                         [("loss", -1), ("h_move", 3), ("h_move", 1), ("g_move", 1), ("g_sq", 0), ("a_move", 1),
                          ("a_move", 3), ("a_learn", 1), ("a_learn", 3), ("fg_cov", 3)], (2, 4), dtype=dtype)
    assert np.max(np.abs(z)) < 4, np.round(z, 2)


@pytest.mark.slow
def test_wide_two_layer_decoupled_nets_approach_the_limit(tmp_path):
    """Two-layer blocks, α = 1, decoupled nets at widths 256 and 1024 against the centred limit (coupling none)."""
    from limit_exact import wide_nets_vs_limit
    cfg = dataclasses.replace(BASE, width=256, depth=4, steps=8, record_every=1, backward="decoupled",
                              inner_lr_exponent=1.0)
    err, z, bound = wide_nets_vs_limit(tmp_path, cfg, "none", ("h_move", "a_move", "a_learn", "g_sq", "loss"))
    assert all(err[n, 1024] < err[n, 256] for n in ("h_move", "a_move", "a_learn", "g_sq")), err
    assert max(z.values()) < bound, (z, bound)
