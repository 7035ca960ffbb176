"""The transpose coupling of docs/theory.md §5: an exact conditional-Gaussian split of one block's messages.

Fix a block with weight W = W_ℓ(0) (raw N(0,1), n×n) and the histories the algorithm has applied it to:
A (n×k) past forward inputs φ(h_{ℓ-1}(x,s)) with forward messages Y = W A/√n, and B (n×m) past backward
inputs ĝ_ℓ(x,s) with backward messages X = Wᵀ B/√n. Then, exactly,

    W = √n·Y A⁺ + √n·(B⁺)ᵀ Xᵀ Π_A^⊥ + Π_B^⊥ W Π_A^⊥ ,      Π_A^⊥ = I − A A⁺ ,

so a new forward message W u/√n = regression + coupling + fresh (`forward_decomposition`), and the same
identity written for Wᵀ, with (A, Y) and (B, X) swapped, splits a new backward message Wᵀ g/√n
(`backward_decomposition`). `chance_level` (Monte Carlo) and `expected_chance` (closed form) give the
projection-noise baseline.

This is the reference form of the split, written plainly with pseudo-inverses and SVDs for reading and as a
test oracle. The recorder does not call it: `dynamics.probes` computes the same split incrementally
(orthonormal histories grown one record at a time), and tests/test_coupling*.py check the two agree.
Pure tensor math: any floating dtype and device, no files, no model.

Numerics. A⁺ is the Moore–Penrose pseudo-inverse from a thin SVD truncated at rtol·σ_max
(default rtol = max(n, k)·eps, numpy's matrix_rank rule); projections use the orthonormal left singular
vectors, never (AᵀA)⁻¹. Histories are often rank-deficient (a probe seen twice, linear activations) and then
the identity holds exactly with the projection onto the numerically non-null part of span(A): directions of
A below the cutoff carry no usable information about W (their messages are round-off) and are treated as
unseen, i.e. their share goes to the fresh part. The SVD route also works on CUDA, where
torch.linalg.lstsq only offers the non-rank-revealing `gels` driver.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

PARTS = ("regression", "coupling", "fresh")
DIRECTIONS = ("forward", "backward")


class _Span(NamedTuple):
    """Truncated SVD M ≈ U_r S_r V_rᵀ of a history matrix M (n×k), enough for M⁺ and Π_M^⊥."""

    basis: Tensor  # (n, r) U_r: orthonormal basis of the numerically non-null part of span(M)
    coef: Tensor   # (k, r) V_r S_r⁻¹, so that M⁺ = coef @ basisᵀ

    def pinv(self, v: Tensor) -> Tensor:
        """M⁺ v, shape (k, q)."""
        return self.coef @ (self.basis.mT @ v)

    def pinv_t(self, w: Tensor) -> Tensor:
        """(M⁺)ᵀ w = M (MᵀM)⁻¹ w, shape (n, q)."""
        return self.basis @ (self.coef.mT @ w)

    def perp(self, v: Tensor) -> Tensor:
        """Π_M^⊥ v = v − M M⁺ v, shape (n, q)."""
        return v - self.basis @ (self.basis.mT @ v)


def _span(M: Tensor, rtol: float | None) -> _Span:
    n, k = M.shape
    if k == 0:  # empty history: M⁺ is 0×n and Π_M^⊥ = I
        return _Span(M.new_zeros(n, 0), M.new_zeros(0, 0))
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    if rtol is None:
        rtol = max(n, k) * torch.finfo(M.dtype).eps
    r = int((S > rtol * S[0]).sum())  # numerical rank; 0 for an all-zero history
    return _Span(U[:, :r], Vh[:r].mT / S[:r])


def _check(n: int, **mats: Tensor) -> None:
    for name, M in mats.items():
        if M.ndim != 2 or M.shape[0] != n:
            raise ValueError(f"{name} must be 2-D with {n} rows (one column per vector); got {tuple(M.shape)}")


def _parts(W: Tensor | None, sa: _Span, sb: _Span, X: Tensor, Y: Tensor, u: Tensor) -> dict[str, Tensor]:
    """Regression, coupling and (given W) fresh part of W u/√n; see `forward_decomposition`."""
    n = u.shape[0]
    u_perp = sa.perp(u)                       # (n, q) Π_A^⊥ u
    parts = {
        "regression": Y @ sa.pinv(u),         # (n, q) Y A⁺ u
        "coupling": sb.pinv_t(X.mT @ u_perp),  # (n, q) (B⁺)ᵀ Xᵀ Π_A^⊥ u
    }
    if W is not None:
        parts["fresh"] = sb.perp(W @ u_perp) / math.sqrt(n)  # (n, q) Π_B^⊥ W Π_A^⊥ u/√n
        parts["message"] = W @ u / math.sqrt(n)             # (n, q) W u/√n
    return parts


def conditional_parts(A: Tensor, B: Tensor, X: Tensor, Y: Tensor, u: Tensor, *,
                      rtol: float | None = None) -> tuple[Tensor, Tensor]:
    """(regression, coupling) = (Y A⁺ u, (B⁺)ᵀ Xᵀ Π_A^⊥ u) from the histories alone (docs/theory.md §5).

    Needs no W: this is the conditional mean E[W u/√n | Y, X]. Shapes A (n,k), Y (n,k), B (n,m), X (n,m),
    u (n,q); either history may be empty (k = 0 or m = 0). The backward mirror is
    `conditional_parts(B, A, Y, X, g)`. See `forward_decomposition` for the derivation.
    """
    n = u.shape[0]
    _check(n, A=A, B=B, X=X, Y=Y, u=u)
    parts = _parts(None, _span(A, rtol), _span(B, rtol), X, Y, u)
    return parts["regression"], parts["coupling"]


def forward_decomposition(W: Tensor, A: Tensor, B: Tensor, u: Tensor, *,
                          rtol: float | None = None) -> dict[str, Tensor]:
    """Split the new forward message W u/√n into regression + coupling + fresh (docs/theory.md §5).

    Y = W A/√n and X = Wᵀ B/√n are computed from W. Derivation: with P_A = A A⁺ the orthogonal projection
    onto span(A), W = W P_A + P_B W Π_A^⊥ + Π_B^⊥ W Π_A^⊥. Here W P_A = (W A) A⁺ = √n Y A⁺, and
    P_B = B B⁺ = (B⁺)ᵀ Bᵀ with Bᵀ W = √n Xᵀ gives P_B W Π_A^⊥ = √n (B⁺)ᵀ Xᵀ Π_A^⊥. Applied to u/√n the √n
    cancels:
        regression = Y A⁺ u                       (past forward messages)
        coupling   = (B⁺)ᵀ Xᵀ Π_A^⊥ u = B Ĝ⁻¹ (Xᵀ Π_A^⊥ u)/n,  Ĝ = BᵀB/n   (in span(B))
        fresh      = Π_B^⊥ W Π_A^⊥ u/√n                                   (orthogonal to span(B))
    using (B⁺)ᵀ = B (BᵀB)⁻¹ = B Ĝ⁻¹/n (full column rank; a rank-deficient B needs the pinv form). The
    coupling weights Xᵀ Π_A^⊥ u/n are empirical covariances of past backward messages with the new
    feature. For Gaussian W the block Π_B^⊥ W Π_A^⊥ is independent of (W P_A, P_B W), i.e. of (Y, X): the
    first two parts are E[W u/√n | Y, X] and the last is fresh Gaussian noise (conditionally on the
    history when A, B are themselves built from W).

    Returns tensors (n, q): regression, coupling, fresh, message (= W u/√n = their sum).
    """
    n = W.shape[0]
    if W.shape != (n, n):
        raise ValueError(f"W must be square (n, n); got {tuple(W.shape)}")
    _check(n, A=A, B=B, u=u)
    Y = W @ A / math.sqrt(n)     # (n, k)
    X = W.mT @ B / math.sqrt(n)  # (n, m)
    return _parts(W, _span(A, rtol), _span(B, rtol), X, Y, u)


def backward_decomposition(W: Tensor, A: Tensor, B: Tensor, g: Tensor, *,
                           rtol: float | None = None) -> dict[str, Tensor]:
    """Split the new backward message Wᵀ g/√n into regression + coupling + fresh (docs/theory.md §5).

    Wᵀ is an n×n matrix whose past "forward" inputs are B with messages X and whose past "backward" inputs
    are A with messages (Wᵀ)ᵀ A/√n = Y, so the forward identity for (Wᵀ; B, X; A, Y) reads
        Wᵀ = √n·X B⁺ + √n·(A⁺)ᵀ Yᵀ Π_B^⊥ + Π_A^⊥ Wᵀ Π_B^⊥ ,
    whence regression = X B⁺ g, coupling = (A⁺)ᵀ Yᵀ Π_B^⊥ g (past forward vectors weighted by covariances
    between forward messages and the new gradient, in span(A)), fresh = Π_A^⊥ Wᵀ Π_B^⊥ g/√n. Its
    transpose is a second exact form of W with the same fresh block Π_B^⊥ W Π_A^⊥ and the same conditional
    mean. This is `forward_decomposition(W.mT, B, A, g)`.
    """
    return forward_decomposition(W.mT, B, A, g, rtol=rtol)


def coupling_stats(parts: dict[str, Tensor]) -> dict[str, float]:
    """Normalised squared norms of the parts, averaged over the q new vectors (docs/theory.md §2, §5).

    For each part p present: `p` = mean_q ‖p‖²/n and `p_frac` = mean_q ‖p‖²/‖message‖², except that the
    coupling's fraction is named `frac` (the headline number; `coupling` is coupling_fwd/bwd of docs/theory.md §2).
    Parts are (n, q), or (..., n, q) with leading batch dimensions that are averaged over too. A zero
    message gives a fraction of 0 for zero parts. Needs `message` (from the *_decomposition functions).
    """
    n = parts["message"].shape[-2]
    msg = parts["message"].square().sum(-2)   # (..., q)
    msg = msg.clamp_min(torch.finfo(msg.dtype).tiny)
    stats = {}
    for name in PARTS:
        if name in parts:
            sq = parts[name].square().sum(-2)   # (..., q)
            stats[name] = (sq / n).mean().item()
            stats["frac" if name == "coupling" else f"{name}_frac"] = (sq / msg).mean().item()
    return stats


def expected_chance(A: Tensor, B: Tensor, u: Tensor, *, direction: str = "forward",
                    rtol: float | None = None) -> dict[str, float]:
    """E[coupling_stats] for W i.i.d. N(0,1) independent of A, B, u: the projection-noise baseline.

    Forward (backward: swap A and B, u = g). With ũ = Π_A^⊥ u, W ũ ~ N(0, ‖ũ‖² I), and the coupling
    part is P_B W ũ/√n, so
        E‖coupling‖²/n = r_B ‖ũ‖²/n²,   E‖regression‖²/n = ‖P_A u‖²/n,   E‖fresh‖²/n = (n − r_B)‖ũ‖²/n²,
    with r_B = rank(B), E‖message‖² = ‖u‖². For ‖u‖²/n = Θ(1) the chance coupling is ≈ r_B(1 − r_A/n)/n:
    O(m/n), linear in the backward history and only weakly dependent on k. The `*frac` entries are ratios
    of expectations, equal to E[ratio] up to O(1/n) relative (exactly r_B/n when u ⊥ span(A)).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")
    if direction == "backward":
        A, B = B, A
    n = u.shape[0]
    _check(n, A=A, B=B, u=u)
    sa, sb = _span(A, rtol), _span(B, rtol)
    r_b = sb.basis.shape[1]
    u_sq = u.square().sum(0)                  # (q,) ‖u‖²
    perp_sq = sa.perp(u).square().sum(0)      # (q,) ‖Π_A^⊥ u‖²
    expect = {"regression": (u_sq - perp_sq) / n,
              "coupling": r_b * perp_sq / n**2,
              "fresh": (n - r_b) * perp_sq / n**2}
    msg = u_sq.clamp_min(torch.finfo(u_sq.dtype).tiny)
    stats = {}
    for name in PARTS:
        stats[name] = expect[name].mean().item()
        stats["frac" if name == "coupling" else f"{name}_frac"] = (n * expect[name] / msg).mean().item()
    return stats


def chance_level(n: int, A: Tensor, B: Tensor, u: Tensor, generator: torch.Generator, *,
                 draws: int = 1, direction: str = "forward", rtol: float | None = None) -> dict[str, float]:
    """Monte-Carlo chance level: `coupling_stats` of the §5 split with W replaced by independent N(0,1).

    Averaged over `draws` matrices drawn from `generator` (which must live on A's device) in A's dtype;
    the histories A, B and the new inputs u are kept, their messages are recomputed from each draw. Draws
    are batched (about 2^24 matrix entries at a time). Its expectation is `expected_chance`.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1; got {draws}")
    _check(n, A=A, B=B, u=u)
    if direction == "backward":  # backward_decomposition(W, A, B, g) = forward split of Wᵀ; Wᵀ ~ W
        A, B = B, A
    sa, sb = _span(A, rtol), _span(B, rtol)  # the histories are fixed: factor them once
    chunk = max(1, 2**24 // (n * n))
    totals: dict[str, float] = {}
    for start in range(0, draws, chunk):
        d = min(chunk, draws - start)
        W = torch.randn(d, n, n, generator=generator, dtype=A.dtype, device=A.device)  # (d, n, n)
        Y, X = W @ A / math.sqrt(n), W.mT @ B / math.sqrt(n)                         # (d, n, k), (d, n, m)
        for key, value in coupling_stats(_parts(W, sa, sb, X, Y, u)).items():
            totals[key] = totals.get(key, 0.0) + value * d / draws
    return totals
