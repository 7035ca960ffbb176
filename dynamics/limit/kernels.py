"""Width-limit kernels at initialisation: dual maps, the finite-depth recursions, the
infinite-depth ODE, and a particle simulation of the single-neuron SDE.

Everything works on P×P kernels over a probe set, in float64. `dual_V` / `dual_Vprime` are the
expectation maps V(K) = E[φ(u)φ(u')], V'(K) = E[φ'(u)φ'(u')] for (u, u') ~ N(0, K restricted to a pair);
`init_kernels` runs the exact width-limit recursion at finite depth L (the oracle a finite network at
initialisation is tested against); `continuum_kernels` solves the depth-μP continuum dH/dτ = β² V(H) with
RK4; `sde_particles` samples single-neuron trajectories whose covariance is H. The particle NFD solver of
§6 builds on these maps.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch import Tensor

from dynamics.activations import check_choice as _check_choice
from dynamics.activations import phi, phi_and_prime as _phi_and_prime, phi_prime  # noqa: F401  (the core's φ, φ')
from dynamics.config import ACTIVATIONS, PARAMS, READOUTS

QUAD_SPACING = 0.25  # trapezoid spacing in z, divided by max(1, max √K_ii); error ≲ 1e-13 for tanh
_GELU_SPACING = 0.45  # gelu is entire: the same accuracy on a coarser grid (measured ≈ 1e-14)
QUAD_RANGE = 9.0    # truncation |z| ≤ 9: the Gaussian tail beyond is below 1e-18
_CHUNK = 1 << 21  # quadrature points evaluated at once (bounds the working memory to about 100 MB)


# --- dual maps V and V' ---------------------------------------------------------------------------
def _scale_and_corr(K: Tensor) -> tuple[Tensor, Tensor]:
    """sqrt(K_ii K_jj) and ρ_ij = K_ij / sqrt(K_ii K_jj) clamped to [-1, 1]; ρ_ii = 1 exactly, and
    ρ_ij = 0 off the diagonal where a variance is 0 (K_ij = 0 there for a PSD K)."""
    d = K.diagonal(dim1=-2, dim2=-1)                                   # (..., P)
    norm = torch.sqrt(d.unsqueeze(-1) * d.unsqueeze(-2))               # (..., P, P)
    rho = (K / norm.clamp(min=1e-300)).clamp(-1.0, 1.0)
    rho.diagonal(dim1=-2, dim2=-1).fill_(1.0)
    return norm, rho


def _closed_form(K: Tensor, act: str) -> tuple[Tensor, Tensor]:
    """Arc-cosine kernels: relu (order 1 and 0), abs; linear V = K, V' = 1."""
    if act == "linear":
        return K, torch.ones_like(K)
    norm, rho = _scale_and_corr(K)
    s = torch.sqrt((1.0 - rho * rho).clamp(min=0.0))                   # sin θ, θ = arccos ρ
    if act == "relu":
        theta = torch.arccos(rho)
        return norm * (s + (math.pi - theta) * rho) / (2 * math.pi), (math.pi - theta) / (2 * math.pi)
    asin = torch.arcsin(rho)                                           # abs: E|u||u'|, E sign(u) sign(u')
    return norm * (2 / math.pi) * (s + rho * asin), (2 / math.pi) * asin


@functools.lru_cache(maxsize=32)
def _grid(nodes: int) -> tuple[Tensor, Tensor]:
    """Trapezoid rule for E over z ~ N(0, 1), truncated to |z| ≤ QUAD_RANGE: nodes z, weights w (sum 1)."""
    z = torch.linspace(-QUAD_RANGE, QUAD_RANGE, nodes, dtype=torch.float64)
    w = torch.exp(-0.5 * z * z)
    return z, w / w.sum()


def _auto_nodes(K: Tensor, spacing: float = QUAD_SPACING) -> int:
    """Odd node count with spacing `spacing` / max(1, max_i √K_ii): the scale on which φ(√K_ii z) varies."""
    s = max(1.0, float(K.diagonal(dim1=-2, dim2=-1).max().clamp(min=0.0).sqrt()))
    return int(math.ceil(2 * QUAD_RANGE * s / spacing)) | 1


def _dual_quadrature(K: Tensor, fns: Callable[[Tensor], tuple[Tensor, ...]], nodes: int | None = None,
                     spacing: float = QUAD_SPACING) -> tuple[Tensor, ...]:
    """E[f(u_i)f(u_j)] for each f in fns(x) = (f_1(x), f_2(x), ...) by a tensor-product rule in
    u_i = √K_ii z1, u_j = √K_jj (ρ z1 + √(1−ρ²) z2), z1, z2 i.i.d. N(0, 1): 2-D for the pairs i < j,
    1-D for the diagonal (ρ = 1). Why trapezoid, not Gauss–Hermite: for f analytic in a strip (tanh has
    poles at ±iπ/2) the trapezoid rule on the truncated Gaussian converges geometrically in 1/spacing
    (≈1e-13 at the default spacing, whatever K is), while Gauss–Hermite converges like exp(−c√nodes) and
    degrades once √K ≫ 1. At a kink (relu, abs) both are only algebraic, hence the closed forms there."""
    P = K.shape[-1]
    Kb = K.reshape(-1, P, P)                                           # (B, P, P)
    _, rho = _scale_and_corr(Kb)
    sd = torch.sqrt(Kb.diagonal(dim1=-2, dim2=-1).clamp(min=0.0))     # (B, P)
    z, w = (t.to(K.device) for t in _grid(nodes or _auto_nodes(Kb, spacing)))  # (nodes,)
    diag = [(f * f) @ w for f in fns(sd.unsqueeze(-1) * z)]            # (B, P) each
    iu, ju = torch.triu_indices(P, P, offset=1)
    si = sd[:, iu].reshape(-1, 1)                                      # (pairs, 1)
    sj = sd[:, ju].reshape(-1, 1, 1)                                   # (pairs, 1, 1)
    r = rho[:, iu, ju].reshape(-1, 1, 1)
    cj, sj2 = sj * r, sj * torch.sqrt((1.0 - r * r).clamp(min=0.0))   # u_j = cj z1 + sj2 z2
    zz1, zz2 = z.reshape(-1, 1), z.reshape(1, -1)
    chunks = [[torch.zeros(0, dtype=K.dtype, device=K.device) for _ in diag]]
    step = max(1, _CHUNK // z.numel() ** 2)
    for start in range(0, si.shape[0], step):                          # chunks of pairs, not entries
        sl = slice(start, start + step)
        ui = si[sl] * z                                                # (chunk, nodes): z1 only
        uj = cj[sl] * zz1 + sj2[sl] * zz2                              # (chunk, nodes z1, nodes z2)
        chunks.append([((fi * w) * (fj @ w)).sum(-1) for fi, fj in zip(fns(ui), fns(uj))])  # E_z2, then E_z1
    mats = []
    for dg, off in zip(diag, map(torch.cat, zip(*chunks))):
        M = torch.diag_embed(dg)
        M[:, iu, ju] = off.reshape(Kb.shape[0], -1)
        M[:, ju, iu] = off.reshape(Kb.shape[0], -1)
        mats.append(M.reshape(K.shape))
    return tuple(mats)


def _duals(K: Tensor, act: str, *, quadrature: bool = False, nodes: int | None = None) -> tuple[Tensor, Tensor]:
    """(V(K), V'(K)) in one pass; `quadrature=True` forces the quadrature even where a closed form exists."""
    _check_choice("act", act, ACTIVATIONS)
    K = torch.as_tensor(K, dtype=torch.float64)
    if act in ("linear", "relu", "abs") and not quadrature:
        return _closed_form(K, act)
    spacing = _GELU_SPACING if act == "gelu" else QUAD_SPACING
    V, Vp = _dual_quadrature(K, lambda x: _phi_and_prime(x, act), nodes, spacing)
    return V, Vp


def dual_V(K: Tensor, act: str) -> Tensor:
    """V(K)_ij = E[φ(u_i)φ(u_j)], (u_i, u_j) ~ N(0, [[K_ii, K_ij], [K_ij, K_jj]]).
    relu: √(K_ii K_jj)(sin θ + (π−θ) cos θ)/(2π), θ = arccos ρ; abs: (2/π)√(K_ii K_jj)(√(1−ρ²) + ρ arcsin ρ);
    linear: K; tanh, gelu: 2-D quadrature (`_dual_quadrature`). K may carry leading batch dimensions (..., P, P)."""
    return _duals(K, act)[0]


def dual_Vprime(K: Tensor, act: str) -> Tensor:
    """V'(K)_ij = E[φ'(u_i)φ'(u_j)]: linear 1; relu (π−θ)/(2π); abs (2/π) arcsin ρ; else quadrature."""
    return _duals(K, act)[1]


# --- finite-depth recursions ----------------------------------------------------------------------
def _block_maps(H: Tensor, act: str, block: int) -> tuple[Tensor, Tensor, Tensor]:
    """At block input kernel H: (Φ = V(H), branch-output kernel, backward factor).
    block 1: branch V(H), factor V'(H). block 2: a = W1 φ(h)/√n has kernel A = V(H), the branch
    W2 φ(a)/√n has kernel V(A), and the gradient picks up V'(A) ⊙ V'(H) through the two layers."""
    V, Vp = _duals(H, act)
    if block == 1:
        return V, V, Vp
    VA, VpA = _duals(V, act)
    return V, VA, VpA * Vp


def _branch_coef(param: str, beta: float, depth: int) -> float | None:
    """Squared branch multiplier of the parametrization table (dynamics.model.scales); None for `plain`
    (no skip connection)."""
    return {"depth-mup": beta * beta / depth, "mup": beta * beta, "sp": beta * beta}.get(param)


def _check_kernel(H0: Tensor) -> Tensor:
    H0 = torch.as_tensor(H0, dtype=torch.float64)
    if H0.dim() == 1:                                                  # diagonal given: orthogonal probes
        H0 = torch.diag(H0)
    if H0.dim() != 2 or H0.shape[0] != H0.shape[1]:
        raise ValueError(f"H0 must be a square (P, P) kernel or a (P,) diagonal; got shape {tuple(H0.shape)}")
    return H0


def init_kernels(H0: Tensor, depth: int, *, act: str, beta: float = 1.0, param: str = "depth-mup",
                 readout: str = "phi", gamma0: float = 1.0, block: int = 1) -> dict[str, Tensor]:
    """Exact width-limit kernels at initialisation for finite depth L.

    Forward, with c = β²/L (depth-mup), β² (mup, sp) and branch kernel B = V (block 1) or V∘V (block 2):
        H_ℓ = H_{ℓ-1} + c B(H_{ℓ-1})   (plain: H_ℓ = B(H_{ℓ-1}), β unused);   Φ_ℓ = V(H_ℓ)
    Backward (gradient independence, valid at init), with D = V'(H) (block 1) or V'(V(H)) ⊙ V'(H) (block 2):
        G_L = V'(H_L) (readout 'phi') or all-ones (readout 'linear');  G_{ℓ-1} = G_ℓ ⊙ (1 + c D(H_{ℓ-1}))
        (plain: G_{ℓ-1} = G_ℓ ⊙ D(H_{ℓ-1})).
    G is the kernel of ĝ_ℓ = γ0 n ∂f/∂h_ℓ with f = vᵀφ(h_L)/(γ0 n): γ0 cancels, ĝ_L = v ⊙ φ'(h_L) with
    raw v ~ N(0, 1), so G does not depend on γ0 (accepted for a uniform signature). Under `sp` the readout
    is 1/√n, and G is the kernel of the same v-normalised backward message (ĝ of §2 would be γ0² n × G).
    For block 2 the inner kernel of block ℓ, A_ℓ = V(H_{ℓ-1}), is Phi[ℓ-1].
    Returns 'H', 'Phi', 'G', each (depth+1, P, P), indexed by layer ℓ = 0..L.
    """
    _check_choice("param", param, PARAMS)
    _check_choice("readout", readout, READOUTS)
    _check_choice("block", block, (1, 2))
    if depth < 1 or gamma0 <= 0:
        raise ValueError(f"depth and gamma0 must be positive; got depth={depth}, gamma0={gamma0}")
    H0 = _check_kernel(H0)
    c = _branch_coef(param, beta, depth)
    H, Phi, D = [H0], [], []
    for _ in range(depth):
        V, branch, factor = _block_maps(H[-1], act, block)
        Phi.append(V)
        D.append(factor)
        H.append(branch if c is None else H[-1] + c * branch)
    V_L, Vp_L = _duals(H[-1], act)
    Phi.append(V_L)
    G = [Vp_L if readout == "phi" else torch.ones_like(H0)]
    for factor in reversed(D):
        G.append(G[-1] * (factor if c is None else 1.0 + c * factor))
    return {"H": torch.stack(H), "Phi": torch.stack(Phi), "G": torch.stack(G[::-1])}


# --- the infinite-depth continuum (depth-μP) ------------------------------------------------------
def continuum_kernels(H0: Tensor, tau: Tensor, *, act: str, beta: float = 1.0, readout: str = "phi",
                      block: int = 1, steps: int = 1024) -> dict[str, Tensor]:
    """Depth-μP continuum: dH/dτ = β² B(H), H(0) = H0, and
    G(τ) = G(1) ⊙ exp(β² ∫_τ^1 D(H(σ)) dσ), G(1) = V'(H(1)) ('phi') or ones ('linear'); B, D as in
    `init_kernels` (block 1: V, V'). RK4 with about `steps` steps per unit τ on the augmented state
    (H, I = ∫_0^τ D(H)), stepping exactly onto every requested τ (no interpolation).
    Returns 'H', 'Phi', 'G', each (len(tau), P, P), in the order of `tau` (values in [0, 1])."""
    _check_choice("readout", readout, READOUTS)
    _check_choice("block", block, (1, 2))
    H0 = _check_kernel(H0)
    tau = torch.as_tensor(tau, dtype=torch.float64).reshape(-1)
    if tau.numel() == 0 or tau.min() < 0 or tau.max() > 1:
        raise ValueError("tau must be a non-empty set of depth times in [0, 1]")
    if steps < 1:
        raise ValueError(f"steps must be positive; got {steps}")
    b2 = beta * beta

    def rhs(H: Tensor) -> tuple[Tensor, Tensor]:
        _, branch, factor = _block_maps(H, act, block)
        return b2 * branch, factor

    knots = torch.unique(torch.cat([tau, torch.tensor([0.0, 1.0], dtype=torch.float64)]))  # sorted
    H, I = H0, torch.zeros_like(H0)
    states = [(H, I)]
    for a, b in zip(knots[:-1].tolist(), knots[1:].tolist()):
        n = max(1, math.ceil((b - a) * steps))
        h = (b - a) / n
        for _ in range(n):
            k1 = rhs(H)
            k2 = rhs(H + 0.5 * h * k1[0])
            k3 = rhs(H + 0.5 * h * k2[0])
            k4 = rhs(H + h * k3[0])
            H = H + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
            I = I + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        states.append((H, I))
    Hk = torch.stack([s[0] for s in states])                           # (knots, P, P)
    Ik = torch.stack([s[1] for s in states])
    _, Vp1 = _duals(Hk[-1], act)
    G1 = Vp1 if readout == "phi" else torch.ones_like(H0)
    idx = torch.searchsorted(knots, tau)
    Ht = Hk[idx]
    return {"H": Ht, "Phi": _duals(Ht, act)[0], "G": G1 * torch.exp(b2 * (Ik[-1] - Ik[idx]))}


# --- single-neuron SDE particles ------------------------------------------------------------------
def _psd_factor(C: Tensor) -> Tensor:
    """S with S Sᵀ = C for a symmetric PSD C (eigendecomposition, negative round-off clamped to 0;
    exact for singular kernels, where Cholesky would need a jitter that biases the covariance)."""
    lam, Q = torch.linalg.eigh(0.5 * (C + C.mT))
    return Q * lam.clamp(min=0.0).sqrt()


def sde_particles(H0: Tensor, depth_grid: int, particles: int, *, act: str, beta: float = 1.0,
                  block: int = 1, generator: torch.Generator | None = None) -> Tensor:
    """Particles of the single-neuron SDE at initialisation on a grid of K blocks:
    h_0 ~ N(0, H0) jointly over the P probes, h_k = h_{k-1} + (β/√K) ξ_k, ξ_k ~ N(0, B(H_{k-1})) independent
    of the past, with H_{k-1} the exact kernel of `init_kernels` (McKean–Vlasov: the law is known at init).
    Hence Cov(h_k, h_j) = H_{min(k,j)}. H0 may be (P, P) or a (P,) diagonal. Returns (K+1, particles, P)."""
    H0 = _check_kernel(H0)
    K, P = depth_grid, H0.shape[0]
    Phi = init_kernels(H0, K, act=act, beta=beta, block=block)["Phi"]  # (K+1, P, P): V(H_k)
    branch = Phi[:-1] if block == 1 else dual_V(Phi[:-1], act)         # (K, P, P): B(H_{k-1}), k = 1..K
    kw = dict(dtype=torch.float64, generator=generator)
    h = torch.empty(K + 1, particles, P, dtype=torch.float64)
    h[0] = torch.randn(particles, P, **kw) @ _psd_factor(H0).mT       # (particles, P)
    for k in range(1, K + 1):
        S = _psd_factor(branch[k - 1])
        h[k] = h[k - 1] + (beta / math.sqrt(K)) * (torch.randn(particles, P, **kw) @ S.mT)
    return h
