"""NEGATIVE CONTROL, not library code: the limit's conditional sampler as it was before commit 7216f22
(verbatim copy of `git show f223ad6:dynamics/limit/sampler.py`, only this docstring prepended).

It orthonormalises each step's residuals with one Gram-Schmidt projection (a second one only under heavy
cancellation) and no re-projection of the step's new directions after their QR, so its bases lose
orthonormality over long full-batch training and the two sides of W disagree (the limit's loss turns round
and blows up). tests/test_limit_longrun.py drives it through the solver to show that its invariant checks
fail here and pass on the current `dynamics.limit.sampler`. Its interface differs: forward/backward/update
take the step t first. Do not import it from library code.

Original module docstring:
The conditional sampler of one Gaussian matrix W(0) at infinite width (the derivation is in nfd.py's
docstring): orthonormal histories of forward queries u (answers W u/√n) and backward queries g (answers
Wᵀ g/√n), held as M particles per direction, and `Matrix`, one block matrix with both histories and its
accumulated update D (ΔW/(b√n) in the (backward, forward) bases), whose `forward`/`backward` answer the
queries of one step and `update` adds one SGD step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

_DROP = 1e-24           # a residual with |r|² below this × |u|² is round-off: the query is in the span
_REL = 1e-20            # ... and one below this × its own |r|² is a dependent column of the same step
_COND = 1e-8            # Cholesky-QR only when every pivot keeps this share of its column (else MGS)
_REORTH = 1e-8          # project a second time when |r|² < this × |x|² (CGS2; one pass loses ~eps|x|/|r|)
# the same four in float32 (eps ≈ 1.2e-7): a residual counts as round-off below 1e-5 of its vector (80 eps:
# CGS2 leaves a few eps), so a small genuine change (an O(η) step at η = 1e-4) is still a new direction; the
# pivot and reorthogonalisation shares are √eps32 ≈ 3e-4 (float64 uses ≈ √eps64 there)
_TOL = {torch.float64: (_DROP, _REL, _COND, _REORTH), torch.float32: (1e-10, 1e-7, 3e-4, 3e-4)}


# --- one matrix's conditional sampler ----------------------------------------------------------------
@dataclass
class _Side:
    """Queries of one matrix (W, or Wᵀ): orthonormal directions Q and the matrix's answers Z, both
    (R, capacity, m) with |q|²/m = 1; rows [tP, (t+1)P) are the P directions opened at step t (zero if dropped)."""
    Q: Tensor
    Z: Tensor


def _orthonormalise(r: Tensor, x_sq: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    """r (R, m, P), already ⊥ the history -> (Qn (R, m, P), Rn (R, P, P) upper, keep (R, P)) with r ≈ Qn Rn,
    Qnᵀ Qn/m = diag(keep). Columns at round-off (in the span) are dropped: zero in Qn and Rn. Cholesky-QR
    twice when well conditioned (smooth in r, so common random numbers stay common), else modified
    Gram–Schmidt with reorthogonalisation, column by column."""
    drop, rel, cond, _ = _TOL[r.dtype]
    S = r.mT @ r / m                                                   # (R, P, P)
    d = S.diagonal(dim1=-2, dim2=-1)                                   # (R, P) |r_k|²/m
    small = d <= drop * x_sq
    if bool(small.all()):
        return torch.zeros_like(r), r.new_zeros(S.shape), torch.zeros_like(small)
    keep = ~small
    unit = torch.diag_embed(small.to(r.dtype))                         # round-off columns: identity pivots
    r = r * keep[:, None, :]
    S = S * (keep[:, :, None] & keep[:, None, :]) + unit
    L, info = torch.linalg.cholesky_ex(S)
    if bool((info == 0).all()) and bool((L.diagonal(dim1=-2, dim2=-1) ** 2 > cond * (d + small)).all()):
        Q1 = torch.linalg.solve_triangular(L, r.mT, upper=False).mT              # r L⁻ᵀ
        L2 = torch.linalg.cholesky(Q1.mT @ Q1 / m + unit)
        Q = torch.linalg.solve_triangular(L2, Q1.mT, upper=False).mT
        return Q, (L @ L2).mT * keep[:, :, None], keep
    Q, Rn = torch.zeros_like(r), r.new_zeros(S.shape)
    keep = torch.zeros_like(small)
    for k in range(r.shape[-1]):
        v, c = r[..., k:k + 1], r.new_zeros(r.shape[0], r.shape[-1], 1)
        for _ in range(2):
            dc = Q.mT @ v / m                                          # (R, P, 1)
            v, c = v - Q @ dc, c + dc
        nrm2 = (v * v).sum(1)[:, 0] / m                                # (R,)
        ok = (nrm2 > drop * x_sq[:, k]) & (nrm2 > rel * d[:, k])
        nrm = torch.where(ok, nrm2, 1.0).sqrt()
        Q[..., k] = torch.where(ok[:, None], v[..., 0] / nrm[:, None], 0.0)
        Rn[:, :, k] = c[..., 0]
        Rn[:, k, k] = torch.where(ok, nrm, 0.0)
        keep[:, k] = ok
    return Q, Rn, keep


def _coords(Q: Tensor, x: Tensor) -> Tensor:
    """Q (R, n, m) · x (R, m, P) -> (R, n, P), i.e. q_k·x; computed as (xᵀQᵀ)ᵀ, the faster BLAS orientation."""
    return (x.mT @ Q.mT).mT


def _comb(Q: Tensor, c: Tensor) -> Tensor:
    """Σ_k q_k c_k: Qᵀ (R, m, n) · c (R, n, P) -> (R, m, P), computed as (cᵀQ)ᵀ (row-major Q read once)."""
    return (c.mT @ Q).mT


def _query(side: _Side, other: _Side, x: Tensor, eps: Tensor, n: int, n_other: int, couple: bool,
           drift: Callable[[Tensor], Tensor] | None) -> tuple[Tensor, Tensor]:
    """Answer of the matrix for new queries x (R, m, P) given its n past directions, and the coordinates of x
    in its basis (R, n + P, P); opens P new directions at rows n..n+P. `other` holds the transposed matrix's
    queries (first n_other rows): with couple=True they add the coupling and project ε; couple=False is the
    decoupled case. drift(a) gives the update's coefficients on other's rows (R, n_other, P), added in the
    same pass over other's basis."""
    m = x.shape[1]
    Q, Z = side.Q[:, :n], side.Z[:, :n]                                # (R, n, m)
    a = _coords(Q, x) / m                                              # (R, n, P)
    r = x - _comb(Q, a)
    x_sq, r_sq = (x * x).sum(1) / m, (r * r).sum(1) / m                # (R, P)
    if n and bool((r_sq < _TOL[x.dtype][3] * x_sq).any()):                      # cancellation: project once more
        a2 = _coords(Q, r) / m
        r, a = r - _comb(Q, a2), a + a2
    Qn, Rn, keep = _orthonormalise(r, x_sq, m)
    Qo = other.Q[:, :n_other]                                          # (R, n_o, m)
    coef = drift(a) if drift is not None and n_other else None         # (R, n_o, P)
    P = x.shape[-1]
    if couple and n_other:
        C = (_coords(other.Z[:, :n_other], Qn) - _coords(Qo, eps)) / m  # coupling weights; −projection of ε
        both = _comb(Qo, C if coef is None else torch.cat([C, coef], -1))  # one pass over Qo
        Zn, extra = eps + both[..., :P], (both[..., P:] if coef is not None else None)
    else:
        Zn, extra = eps, (_comb(Qo, coef) if coef is not None else None)
    Zn = Zn * keep[:, None, :]
    side.Q[:, n:n + P] = Qn.mT
    side.Z[:, n:n + P] = Zn.mT
    msg = _comb(Z, a) + Zn @ Rn
    return (msg if extra is None else msg + extra), torch.cat([a, Rn], dim=1)


class Matrix:
    """One block matrix W(0) ~ N(0, 1)^{n×n} at infinite width, with what SGD has done to it.

    Forward queries open P directions per step (rows [tP, (t+1)P) of `fwd`), backward queries Nb directions
    per step (rows [t·Nb, (t+1)·Nb) of `bwd`). D (R, T·Nb, T·P) holds ΔW/(b√n) in the (bwd, fwd) bases:
    ΔW u/√n = b Q_Bᵀ D a and ΔWᵀ g/√n = b Q_Aᵀ Dᵀ (Q_B·g/m). `lr` is ηγ0 times the matrix's own LR factor
    (L^α for the first inner layer of a two-layer block, else 1)."""

    def __init__(self, R: int, m: int, T: int, P: int, Nb: int, lr: float, coupled: bool, b: float, kw: dict):
        self.fwd = _Side(torch.zeros(R, T * P, m, **kw), torch.zeros(R, T * P, m, **kw))
        self.bwd = _Side(torch.zeros(R, T * Nb, m, **kw), torch.zeros(R, T * Nb, m, **kw))
        self.D = torch.zeros(R, T * Nb, T * P, **kw)
        self.P, self.Nb, self.lr, self.coupled, self.b = P, Nb, lr, coupled, b

    def forward(self, t: int, u: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """W(t) u/√n for u (R, m, P) at step t (before the step's backward) and u's coordinates α."""
        nf, nb, b = t * self.P, t * self.Nb, self.b
        D = self.D[:, :nb, :nf]
        return _query(self.fwd, self.bwd, u, eps, nf, nb, self.coupled, lambda a: b * (D @ a))

    def backward(self, t: int, g: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """W(t)ᵀ g/√n (W̃(0) + ΔW when uncoupled) for g (R, m, Nb) after step t's forward; g's coordinates β."""
        nf, nb, b, P = t * self.P, t * self.Nb, self.b, self.P
        D = self.D[:, :nb, :nf].mT
        return _query(self.bwd, self.fwd, g, eps, nb, nf + P, self.coupled,
                      lambda a: torch.nn.functional.pad(b * (D @ a), (0, 0, 0, P)))

    def update(self, t: int, alpha: Tensor, beta: Tensor, weights: Tensor) -> None:
        """ΔW/(b√n) += lr Σ_{j,μ} w_jμ g_j φ_μᵀ/n: D += lr β w αᵀ, weights w (R, Nb, P) = how much of backward
        column j enters the update with forward input μ (χ_μ on the diagonal for a scalar output)."""
        n1, f1 = (t + 1) * self.Nb, (t + 1) * self.P
        self.D[:, :n1, :f1] += self.lr * beta @ (weights @ alpha.mT)
