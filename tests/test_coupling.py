"""Tests for dynamics.coupling_reference: the exact §5 identity, its parts, and the chance-level statistics (THEORY §5)."""
import math

import pytest
import torch

from dynamics.coupling_reference import (backward_decomposition, chance_level, conditional_parts, coupling_stats,
                               expected_chance, forward_decomposition)

DT = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _randn(*shape, g):
    return torch.randn(*shape, generator=g, dtype=DT)


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _perp(M, v):
    """Reference Π_M^⊥ v via torch.linalg.pinv (independent of the module's SVD path)."""
    if M.shape[1] == 0:
        return v
    return v - M @ (torch.linalg.pinv(M) @ v)


def _histories(case, n=64, k=5, m=3, seed=0):
    g = _gen(seed)
    W, A, B = _randn(n, n, g=g), _randn(n, k, g=g), _randn(n, m, g=g)
    if case == "duplicate_A":    # a probe seen twice, a rescaled copy, and a linear combination
        A = torch.cat([A, A[:, :1], 2.0 * A[:, 1:2], A[:, 2:3] - A[:, 3:4]], dim=1)
    elif case == "duplicate_B":
        B = torch.cat([B, B[:, :2]], dim=1)
    elif case == "empty_A":
        A = A[:, :0]
    elif case == "empty_B":
        B = B[:, :0]
    elif case == "empty_both":
        A, B = A[:, :0], B[:, :0]
    return W, A, B


CASES = ["full", "duplicate_A", "duplicate_B", "empty_A", "empty_B", "empty_both"]


@pytest.mark.parametrize("case", CASES)
def test_matrix_identity(case):
    """W = √n·Y A⁺ + √n·(B⁺)ᵀ Xᵀ Π_A^⊥ + Π_B^⊥ W Π_A^⊥, term by term against a pinv reference."""
    W, A, B = _histories(case)
    n = W.shape[0]
    eye = torch.eye(n, dtype=DT)
    p = forward_decomposition(W, A, B, eye)  # u = I: every part is the matrix term / √n
    total = math.sqrt(n) * (p["regression"] + p["coupling"] + p["fresh"])
    assert _rel(total, W) < 1e-10
    Y, X = W @ A / math.sqrt(n), W.T @ B / math.sqrt(n)
    reg = math.sqrt(n) * Y @ torch.linalg.pinv(A) if A.shape[1] else torch.zeros_like(W)
    coup = math.sqrt(n) * torch.linalg.pinv(B).T @ X.T @ _perp(A, eye) if B.shape[1] else torch.zeros_like(W)
    fresh = _perp(B, W @ _perp(A, eye))
    for got, ref in ((p["regression"], reg), (p["coupling"], coup), (p["fresh"], fresh)):
        assert (math.sqrt(n) * got - ref).norm() <= 1e-10 * W.norm()
    if A.shape[1] == 0:
        assert p["regression"].abs().max() == 0
    if B.shape[1] == 0:
        assert p["coupling"].abs().max() == 0


@pytest.mark.parametrize("case", CASES)
def test_backward_identity_and_shared_fresh_block(case):
    """Wᵀ = √n·X B⁺ + √n·(A⁺)ᵀ Yᵀ Π_B^⊥ + Π_A^⊥ Wᵀ Π_B^⊥, and its fresh block is the forward one transposed."""
    W, A, B = _histories(case, seed=1)
    n = W.shape[0]
    eye = torch.eye(n, dtype=DT)
    fwd, bwd = forward_decomposition(W, A, B, eye), backward_decomposition(W, A, B, eye)
    assert _rel(math.sqrt(n) * (bwd["regression"] + bwd["coupling"] + bwd["fresh"]), W.T) < 1e-10
    assert _rel(bwd["fresh"], fwd["fresh"].T) < 1e-10
    # hence both identities give the same conditional mean E[W | Y, X]
    mean_f, mean_b = fwd["regression"] + fwd["coupling"], bwd["regression"] + bwd["coupling"]
    assert (mean_b - mean_f.T).norm() <= 1e-10 * fwd["message"].norm()


@pytest.mark.parametrize("case", CASES)
def test_parts_sum_and_geometry(case):
    W, A, B = _histories(case, seed=2)
    g = _gen(12)
    n, q = W.shape[0], 7
    u, grad = _randn(n, q, g=g), _randn(n, q, g=g)
    fwd, bwd = forward_decomposition(W, A, B, u), backward_decomposition(W, A, B, grad)
    assert _rel(fwd["message"], W @ u / math.sqrt(n)) < 1e-14
    assert _rel(bwd["message"], W.T @ grad / math.sqrt(n)) < 1e-14
    for p in (fwd, bwd):
        assert _rel(p["regression"] + p["coupling"] + p["fresh"], p["message"]) < 1e-12
    scale = fwd["message"].norm() + bwd["message"].norm()
    # forward: coupling ∈ span(B), fresh ⊥ span(B); backward: coupling ∈ span(A), fresh ⊥ span(A)
    assert _perp(B, fwd["coupling"]).norm() < 1e-12 * scale
    assert _perp(A, bwd["coupling"]).norm() < 1e-12 * scale
    assert (B.T @ fwd["fresh"]).norm() < 1e-12 * scale * max(B.norm(), 1.0)
    assert (A.T @ bwd["fresh"]).norm() < 1e-12 * scale * max(A.norm(), 1.0)
    # the regression parts lie in the span of past messages
    assert _perp(W @ A, fwd["regression"]).norm() < 1e-12 * scale
    assert _perp(W.T @ B, bwd["regression"]).norm() < 1e-12 * scale


def test_conditional_parts_need_only_the_histories():
    W, A, B = _histories("full", seed=3)
    n = W.shape[0]
    u = _randn(n, 4, g=_gen(13))
    Y, X = W @ A / math.sqrt(n), W.T @ B / math.sqrt(n)
    fwd, bwd = forward_decomposition(W, A, B, u), backward_decomposition(W, A, B, u)
    reg, coup = conditional_parts(A, B, X, Y, u)
    assert _rel(reg, fwd["regression"]) < 1e-13 and _rel(coup, fwd["coupling"]) < 1e-13
    reg, coup = conditional_parts(B, A, Y, X, u)  # the backward mirror
    assert _rel(reg, bwd["regression"]) < 1e-13 and _rel(coup, bwd["coupling"]) < 1e-13


def test_theory_form_of_the_coupling():
    """THEORY §5 writes the forward coupling as B Ĝ⁻¹ (Xᵀ Π_A^⊥ u)/n with Ĝ = BᵀB/n: same as (B⁺)ᵀ Xᵀ Π_A^⊥ u."""
    W, A, B = _histories("full", seed=4)
    n = W.shape[0]
    u = _randn(n, 5, g=_gen(14))
    X = W.T @ B / math.sqrt(n)
    G_hat = B.T @ B / n
    theory = B @ torch.linalg.solve(G_hat, X.T @ _perp(A, u)) / n
    assert _rel(forward_decomposition(W, A, B, u)["coupling"], theory) < 1e-12


def test_near_collinear_history_is_truncated_not_inverted():
    """A second probe equal to the first up to 1e-14 carries no information: the rank-revealing projection
    drops it (an explicit (AᵀA)⁻¹ or an untruncated pinv would amplify round-off by ~1e14)."""
    g = _gen(5)
    n = 64
    W, a, B, u = _randn(n, n, g=g), _randn(n, 1, g=g), _randn(n, 3, g=g), _randn(n, 6, g=g)
    A = torch.cat([a, a + 1e-14 * _randn(n, 1, g=g)], dim=1)
    p, p1 = forward_decomposition(W, A, B, u), forward_decomposition(W, a, B, u)
    assert _rel(p["regression"] + p["coupling"] + p["fresh"], p["message"]) < 1e-12
    for name in ("regression", "coupling", "fresh"):
        assert _rel(p[name], p1[name]) < 1e-10


def test_coupling_stats_definitions():
    W, A, B = _histories("full", seed=6)
    n = W.shape[0]
    u = _randn(n, 3, g=_gen(16))
    p = forward_decomposition(W, A, B, u)
    s = coupling_stats(p)
    msg = p["message"].square().sum(0)
    assert s["coupling"] == pytest.approx((p["coupling"].square().sum(0) / n).mean().item(), rel=1e-14)
    assert s["frac"] == pytest.approx((p["coupling"].square().sum(0) / msg).mean().item(), rel=1e-14)
    assert s["fresh_frac"] == pytest.approx((p["fresh"].square().sum(0) / msg).mean().item(), rel=1e-14)
    assert set(s) == {"regression", "coupling", "fresh", "regression_frac", "frac", "fresh_frac"}


def test_chance_coupling_scales_as_one_over_width():
    """A, B, u independent of W (k = 5, m = 3 fixed): E[coupling_fwd] = O(1/n), log-log slope ≈ −1."""
    widths, means = (128, 256, 512, 1024), []
    for n in widths:
        vals = []
        for seed in range(4):
            g = _gen(100 + seed)
            W, A, B, u = _randn(n, n, g=g), _randn(n, 5, g=g), _randn(n, 3, g=g), _randn(n, 32, g=g)
            vals.append(coupling_stats(forward_decomposition(W, A, B, u))["coupling"])
        means.append(sum(vals) / len(vals))
    x = torch.log(torch.tensor(widths, dtype=DT))
    y = torch.log(torch.tensor(means, dtype=DT))
    slope = (((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum()).item()
    assert abs(slope + 1.0) < 0.2, (slope, means)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_monte_carlo_chance_matches_expectation(direction):
    """E‖coupling‖²/n = r_B ‖Π_A^⊥ u‖²/n² for Gaussian W (roles swapped backward); MC error here ≈ 1.5 %."""
    g = _gen(7)
    n = 64
    A = _randn(n, 5, g=g)
    A = torch.cat([A, A[:, :1]], dim=1)           # rank 5 from 6 columns: the formula uses the rank
    B, u = _randn(n, 3, g=g), _randn(n, 8, g=g)
    mc = chance_level(n, A, B, u, _gen(8), draws=400, direction=direction)
    ex = expected_chance(A, B, u, direction=direction)
    for key in ("regression", "coupling", "fresh", "frac", "regression_frac", "fresh_frac"):
        assert mc[key] == pytest.approx(ex[key], rel=0.1), key
    r_b = 3 if direction == "forward" else 5
    assert ex["frac"] == pytest.approx(r_b / n, rel=0.15)  # u generic: ‖Π^⊥ u‖²/‖u‖² ≈ 1 − rank/n


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_coupling_is_large_when_the_input_contains_a_past_message(direction):
    """After an SGD step a feature picks up the gradient direction, and ĝ_{ℓ-1} contains the backward message
    Wᵀĝ_ℓ/√n of block ℓ. Model that: u = fresh + X c (forward; backward: g = fresh + Y c). Then
    W u/√n ∋ W Wᵀ b/n with b = B c, whose projection on span(B) is b(1 + O(n^-1/2)): coupling ≈ ‖b‖²/n = Θ(1),
    frac ≈ ‖b‖²/(‖u‖² + 2‖b‖²) ≈ 1/3 (E‖WWᵀb‖²/n² ≈ 2‖b‖², Marchenko–Pastur), against chance r_B/n."""
    g = _gen(9)
    n, q = 1024, 8
    W, A, B = _randn(n, n, g=g), _randn(n, 5, g=g), _randn(n, 3, g=g)
    past_in, past_msg = (B, W.T @ B / math.sqrt(n)) if direction == "forward" else (A, W @ A / math.sqrt(n))
    c = _randn(past_in.shape[1], q, g=g) / math.sqrt(past_in.shape[1])
    u = _randn(n, q, g=g) + past_msg @ c
    decompose = forward_decomposition if direction == "forward" else backward_decomposition
    s = coupling_stats(decompose(W, A, B, u))
    chance = expected_chance(A, B, u, direction=direction)
    predicted = ((past_in @ c).square().sum(0) / n).mean().item()
    assert s["coupling"] == pytest.approx(predicted, rel=0.25)  # seeds 0-4: within 15 %
    # seeds 0-4: coupling 86-190× chance, frac 0.26-0.35 = 57-109× chance (chance frac ≈ r/n ≈ 0.003-0.005)
    assert s["coupling"] > 50 * chance["coupling"]
    assert 0.2 < s["frac"] < 0.5 and s["frac"] > 30 * chance["frac"]


def test_float32_and_validation():
    g = _gen(10)
    n = 32
    W, A, B, u = (torch.randn(*s, generator=g) for s in ((n, n), (n, 4), (n, 2), (n, 3)))
    p = forward_decomposition(W, A, B, u)
    assert p["coupling"].dtype == torch.float32
    assert _rel(p["regression"] + p["coupling"] + p["fresh"], p["message"]) < 1e-5
    with pytest.raises(ValueError, match="u must be 2-D"):
        forward_decomposition(W, A, B, u[:, 0])
    with pytest.raises(ValueError, match="B must be 2-D with 32 rows"):
        forward_decomposition(W, A, B[:-1], u)
    with pytest.raises(ValueError, match="direction"):
        expected_chance(A, B, u, direction="sideways")
