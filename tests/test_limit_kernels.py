"""Tests for dynamics.limit.kernels (THEORY §3): closed forms, dual maps against Monte Carlo and against
each other, finite depth → continuum at rate 1/L, multi-input structure, SDE particles, and the width
limit against finite networks built here from scratch (one- and two-layer blocks)."""
import math

import numpy as np
import pytest
import torch

from dynamics.limit import continuum_kernels, dual_V, dual_Vprime, init_kernels, phi, phi_prime, sde_particles
from dynamics.limit.kernels import _dual_quadrature, _duals

ACTS = ("linear", "relu", "abs", "tanh", "gelu")
ONE = torch.ones(1, 1, dtype=torch.float64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _probe_kernel(P: int = 3, d: int = 5, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    X = torch.randn(P, d, dtype=torch.float64, generator=_gen(seed))
    H = scale * X @ X.T / d
    return 0.5 * (H + H.T)


def _close(a, b, atol):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    err = (a - b).abs().max().item()
    assert err <= atol, f"max error {err:.3g} > {atol:.3g}"


# --- closed forms of THEORY §3 (single input, H0 = 1) -----------------------------------------------
@pytest.mark.parametrize("L", [1, 4, 16, 64])
@pytest.mark.parametrize("act, rate, g_top", [("linear", 1.0, 1.0), ("abs", 1.0, 1.0), ("relu", 0.5, 0.5)])
def test_recursion_closed_forms(L, act, rate, g_top):
    out = init_kernels(ONE, L, act=act)
    ell = torch.arange(L + 1, dtype=torch.float64)
    _close(out["H"][:, 0, 0], (1 + rate / L) ** ell, 1e-10)
    _close(out["Phi"][:, 0, 0], rate * (1 + rate / L) ** ell, 1e-10)
    _close(out["G"][:, 0, 0], g_top * (1 + rate / L) ** (L - ell), 1e-10)


@pytest.mark.parametrize("act, rate, g_top", [("linear", 1.0, 1.0), ("relu", 0.5, 0.5)])
def test_continuum_closed_forms(act, rate, g_top):
    tau = torch.tensor([0.7, 0.0, 0.25, 1.0, 0.5, 0.123], dtype=torch.float64)  # unsorted, off-grid
    out = continuum_kernels(ONE, tau, act=act)
    _close(out["H"][:, 0, 0], torch.exp(rate * tau), 1e-8)
    _close(out["G"][:, 0, 0], g_top * torch.exp(rate * (1 - tau)), 1e-8)


def test_closed_form_variants():
    L, ell = 8, torch.arange(9, dtype=torch.float64)
    # β scales the branch variance: H_ℓ = (1 + β²/L)^ℓ, continuum e^{β²τ}
    _close(init_kernels(ONE, L, act="linear", beta=2.0)["H"][:, 0, 0], (1 + 4 / L) ** ell, 1e-10)
    _close(continuum_kernels(ONE, [1.0], act="linear", beta=2.0)["H"][0, 0, 0], math.exp(4), 1e-8)
    # mup: no 1/L; plain: no skip (β unused)
    out = init_kernels(ONE, L, act="linear", param="mup")
    _close(out["H"][:, 0, 0], 2.0 ** ell, 1e-10)
    _close(out["G"][:, 0, 0], 2.0 ** (L - ell), 1e-10)
    out = init_kernels(ONE, L, act="relu", param="plain", beta=3.0)
    _close(out["H"][:, 0, 0], 0.5 ** ell, 1e-12)
    _close(out["G"][:, 0, 0], 0.5 * 0.5 ** (L - ell), 1e-12)
    # linear readout: G_L = 1; γ0 cancels in ĝ = γ0 n ∂f/∂h
    _close(init_kernels(ONE, L, act="relu", readout="linear")["G"][:, 0, 0], (1 + 0.5 / L) ** (L - ell), 1e-10)
    H0 = _probe_kernel()
    for key in ("H", "Phi", "G"):
        _close(init_kernels(H0, L, act="tanh", gamma0=3.0)[key], init_kernels(H0, L, act="tanh")[key], 0.0)
    # two-layer relu block: branch kernel V(V(H)) = H/4, backward factor 1/2 · 1/2
    out = init_kernels(ONE, L, act="relu", block=2)
    _close(out["H"][:, 0, 0], (1 + 0.25 / L) ** ell, 1e-10)
    _close(out["G"][:, 0, 0], 0.5 * (1 + 0.25 / L) ** (L - ell), 1e-10)
    tau = torch.linspace(0, 1, 5, dtype=torch.float64)
    out = continuum_kernels(ONE, tau, act="relu", block=2, steps=256)
    _close(out["H"][:, 0, 0], torch.exp(tau / 4), 1e-8)
    _close(out["G"][:, 0, 0], 0.5 * torch.exp((1 - tau) / 4), 1e-8)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="act"):
        dual_V(ONE, "sigmoid")
    with pytest.raises(ValueError, match="param"):
        init_kernels(ONE, 4, act="relu", param="ntk")
    with pytest.raises(ValueError, match="tau"):
        continuum_kernels(ONE, [1.5], act="relu")


# --- dual maps ----------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
def test_dual_maps_against_monte_carlo(act):
    K = _probe_kernel(P=3, seed=1, scale=1.5)
    K[2] *= -1  # a negatively correlated probe
    K[:, 2] *= -1
    n = 1_000_000
    u = torch.randn(n, 3, dtype=torch.float64, generator=_gen(2)) @ torch.linalg.cholesky(K).T
    for exact, f in ((dual_V(K, act), phi(u, act)), (dual_Vprime(K, act), phi_prime(u, act))):
        prod = f[:, :, None] * f[:, None, :]                                   # (n, 3, 3)
        mean, se = prod.mean(0), prod.std(0) / math.sqrt(n)
        assert ((exact - mean).abs() <= 5 * se + 1e-12).all(), (exact, mean, se)


@pytest.mark.parametrize("act", ACTS)
def test_dual_maps_batched(act):
    Ks = torch.stack([_probe_kernel(P=3, seed=s) for s in (20, 21)])          # (2, P, P)
    for batched, single in zip(_duals(Ks, act), zip(*(_duals(K, act) for K in Ks))):
        _close(batched, torch.stack(single), 1e-12)


def test_quadrature_exact_on_smooth_closed_forms():
    K = _probe_kernel(P=4, seed=3, scale=2.0)
    # linear through the quadrature: V = K, V' = 1 (checks the Cholesky-style parametrisation)
    V, Vp = _duals(K, "linear", quadrature=True)
    _close(V, K, 1e-12)
    _close(Vp, torch.ones_like(K), 1e-12)
    # E[cos u cos u'] = e^{-(K_ii+K_jj)/2} cosh K_ij, E[sin u sin u'] = e^{-(K_ii+K_jj)/2} sinh K_ij
    d = K.diagonal()
    damp = torch.exp(-0.5 * (d[:, None] + d[None, :]))
    C, S = _dual_quadrature(K, lambda x: (torch.cos(x), torch.sin(x)))
    _close(C, damp * torch.cosh(K), 1e-12)
    _close(S, damp * torch.sinh(K), 1e-12)


@pytest.mark.parametrize("act", ["relu", "abs"])
def test_quadrature_matches_arc_cosine_closed_forms(act):
    # at a kink the quadrature is only algebraic (V: O(h²), V' has a jump: O(h)), hence fine grids
    K = _probe_kernel(P=3, seed=4)
    V, Vp = _duals(K, act)
    Vq, Vpq = _duals(K, act, quadrature=True, nodes=1001)
    _close(Vq, V, 5e-5)
    _close(Vpq, Vp, 5e-3)


@pytest.mark.parametrize("act", ["tanh", "gelu"])
@pytest.mark.parametrize("scale", [0.5, 4.0, 25.0])
def test_quadrature_self_converged(act, scale):
    # the automatic grid tracks max √K_ii: at every scale it agrees with a far finer grid to round-off
    K = _probe_kernel(P=3, seed=5, scale=scale)
    for a, b in zip(_duals(K, act), _duals(K, act, quadrature=True, nodes=1001)):
        _close(a, b, 1e-12 * max(1.0, scale))


# --- finite depth → continuum at rate 1/L --------------------------------------------------------
def _loglog_slope(Ls, errs):
    return np.polyfit(np.log(Ls), np.log(errs), 1)[0]


@pytest.mark.parametrize("act, H0", [("linear", ONE), ("relu", _probe_kernel(P=3, seed=6))])
def test_finite_depth_converges_at_rate_one_over_L(act, H0):
    ref = continuum_kernels(H0, [0.0, 1.0], act=act, steps=256)  # RK4 error ~1e-12 ≪ 1/L
    Ls = [8, 16, 32, 64, 128, 256]
    errs_H, errs_G = [], []
    for L in Ls:
        out = init_kernels(H0, L, act=act)
        errs_H.append((out["H"][-1] - ref["H"][1]).abs().max().item())
        errs_G.append((out["G"][0] - ref["G"][0]).abs().max().item())
    slope_H, slope_G = _loglog_slope(Ls, errs_H), _loglog_slope(Ls, errs_G)
    print(f"{act}: slope H_L {slope_H:.4f}, slope G_0 {slope_G:.4f}")
    assert abs(slope_H + 1) < 0.1 and abs(slope_G + 1) < 0.1


# --- multi-input structure -------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("block", [1, 2])
def test_multi_input_kernels(act, block):
    H0 = _probe_kernel(P=4, seed=7)
    H0[3], H0[:, 3] = H0[0], H0[:, 0]      # a duplicated probe: H0 is singular
    H0[3, 3] = H0[0, 0]
    L = 6
    out = init_kernels(H0, L, act=act, block=block)
    tau = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    cont = continuum_kernels(H0, tau, act=act, block=block, steps=8)  # structure only
    for M in [*out.values(), *cont.values()]:
        assert M.shape[1:] == (4, 4)
        _close(M, M.mT, 0.0)
        lam = torch.linalg.eigvalsh(M)
        assert (lam >= -1e-10 * lam.abs().max()).all()
        _close(M[:, 3], M[:, 0], 1e-12)     # the duplicate stays a duplicate
    assert out["H"].shape[0] == out["G"].shape[0] == out["Phi"].shape[0] == L + 1
    # each diagonal entry is the single-input recursion of its own probe
    for i in range(3):
        single = init_kernels(H0[i:i + 1, i:i + 1], L, act=act, block=block)
        for key in ("H", "Phi", "G"):
            _close(out[key][:, i, i], single[key][:, 0, 0], 1e-10)  # quadrature grids differ
    if act == "relu" and block == 1:
        ell = torch.arange(L + 1, dtype=torch.float64)
        _close(out["H"].diagonal(dim1=1, dim2=2), H0.diagonal() * ((1 + 0.5 / L) ** ell)[:, None], 1e-12)
        _close(out["G"].diagonal(dim1=1, dim2=2), (0.5 * (1 + 0.5 / L) ** (L - ell))[:, None].expand(-1, 4), 1e-12)


# --- SDE particles -----------------------------------------------------------------------------------
@pytest.mark.parametrize("act, block", [("relu", 1), ("tanh", 1), ("gelu", 2)])
def test_sde_particles_covariance(act, block):
    H0 = _probe_kernel(P=3, seed=8)
    K, M = 16, 20_000
    h = sde_particles(H0, K, M, act=act, block=block, generator=_gen(9))      # (K+1, M, P)
    assert h.shape == (K + 1, M, 3)
    H = init_kernels(H0, K, act=act, block=block)["H"]
    emp = torch.einsum("kmi,kmj->kij", h, h) / M                              # mean zero is known
    d = H.diagonal(dim1=1, dim2=2)
    se = torch.sqrt((d[:, :, None] * d[:, None, :] + H ** 2) / M)
    assert ((emp - H).abs() <= 5 * se).all()
    # independent increments: Cov(h_K, h_k) = H_k
    cross = torch.einsum("mi,mj->ij", h[K], h[K // 2]) / M
    assert ((cross - H[K // 2]).abs() <= 5 * se[K]).all()


@pytest.mark.parametrize("act, rate", [("linear", 1.0), ("relu", 0.5)])
def test_sde_particles_second_moment_closed_form(act, rate):
    K, M = 32, 40_000
    h = sde_particles(torch.ones(1, dtype=torch.float64), K, M, act=act, generator=_gen(10))[-1, :, 0]
    exact = (1 + rate / K) ** K                                               # → e^{rate} as K → ∞
    assert abs((h * h).mean().item() - exact) <= 5 * math.sqrt(2 / M) * exact


def test_sde_particles_singular_kernel():
    H0 = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)          # two identical probes
    h = sde_particles(H0, 4, 1000, act="relu", generator=_gen(11))
    _close(h[..., 0], h[..., 1], 1e-6)


# --- width limit against finite networks (built here, independently of the library) ------------------
def _finite_net_kernels(X, *, act, depth, block, param, readout, gamma0, beta, width, draws, gen):
    """`draws` independent draws of the THEORY §1 network at once; per draw and layer the kernels
    H = h hᵀ/n and G = ĝ ĝᵀ/n, ĝ = γ0 n ∂f/∂h by autograd. Returns two (draws, depth+1, P, P) tensors."""
    P, d = X.shape
    n = width
    act_fn = {"linear": lambda x: x, "relu": torch.relu, "abs": torch.abs, "tanh": torch.tanh,
              "gelu": torch.nn.functional.gelu}[act]
    randn = lambda *s: torch.randn(draws, *s, dtype=torch.float64, generator=gen)  # noqa: E731
    h = (X @ randn(d, n) / math.sqrt(d)).requires_grad_()                     # (draws, P, n)
    hs = [h]
    mult = {"depth-mup": beta / math.sqrt(depth), "mup": beta}.get(param)     # plain: no skip
    for _ in range(depth):
        z = act_fn(hs[-1]) @ randn(n, n) / math.sqrt(n)
        if block == 2:
            z = act_fn(z) @ randn(n, n) / math.sqrt(n)
        hs.append(z if mult is None else hs[-1] + mult * z)
    out = act_fn(hs[-1]) if readout == "phi" else hs[-1]
    f = (out @ randn(n, 1)).squeeze(-1) / (gamma0 * n)                        # (draws, P)
    grads = torch.autograd.grad(f.sum(), hs)
    H = torch.stack([x @ x.mT / n for x in hs], 1)
    G = torch.stack([(gamma0 * n * g) @ (gamma0 * n * g).mT / n for g in grads], 1)
    return H.detach(), G.detach()


CASES = [("relu", 1, "depth-mup", "phi"), ("tanh", 2, "depth-mup", "phi"),
         ("gelu", 2, "mup", "linear"), ("abs", 1, "plain", "phi")]


@pytest.mark.parametrize("act, block, param, readout", CASES)
def test_width_limit_against_finite_network(act, block, param, readout):
    # many narrow nets: Monte-Carlo error O(1/√(n·draws)) per entry, while the O(1/n) width bias stays
    # below it at n = 128 (checked: |z| ≤ 2.5 at n = 128 with 256 draws, bias visible from n = 64)
    X = torch.randn(3, 8, dtype=torch.float64, generator=_gen(12))
    X = X / X.norm(dim=1, keepdim=True) * math.sqrt(8)                        # |x|²/d = 1
    kw = dict(act=act, block=block, param=param, readout=readout, beta=1.5)
    draws = 128
    H, G = _finite_net_kernels(X, depth=3, gamma0=2.0, width=128, draws=draws, gen=_gen(13), **kw)
    lim = init_kernels(X @ X.T / 8, 3, gamma0=2.0, **kw)
    other = init_kernels(X @ X.T / 8, 3, **{**kw, "block": 3 - block})
    for key, M in (("H", H), ("G", G)):
        mean, se = M.mean(0), M.std(0) / math.sqrt(draws)
        z = ((mean - lim[key]).abs() / se).max().item()
        z_other = ((mean - other[key]).abs() / se).max().item()
        assert z < 5, f"{key}: finite nets deviate from the limit by {z:.1f} standard errors"
        assert z_other > 8, f"{key}: the check cannot tell block depth 1 from 2 (z = {z_other:.1f})"
