"""The conditional sampler of one Gaussian matrix W(0) at infinite width (the derivation is in nfd.py's
docstring): orthonormal histories of forward queries u (answers W u/√n) and backward queries g (answers
Wᵀ g/√n), held as M particles per direction, and `Matrix`, one block matrix with both histories and its
accumulated update D (ΔW/(b√n) in the (backward, forward) bases), whose `forward`/`backward` answer the
queries of one step and `update` adds one SGD step.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

_DROP = 1e-24           # a residual with |r|² below this × |u|² is round-off: the query is in the span
_REL = 1e-20            # ... and one below this × its own |r|² is a dependent column of the same step
_COND = 1e-8            # Cholesky-QR only when every pivot keeps this share of its column (else MGS)
# the same three in float32 (eps ≈ 1.2e-7): a residual counts as round-off below 1e-5 of its vector (80 eps:
# CGS2 leaves a few eps), so a small genuine change (an O(η) step at η = 1e-4) is still a new direction; the
# pivot share is √eps32 ≈ 3e-4 (float64 uses ≈ √eps64 there)
_TOL = {torch.float64: (_DROP, _REL, _COND), torch.float32: (1e-10, 1e-7, 3e-4)}


# --- one matrix's conditional sampler ----------------------------------------------------------------
class _Grow:
    """A (R, rows, cols) buffer that grows along rows and cols on demand (doubling, capped), so memory follows
    the history's actual rank rather than T·P."""

    def __init__(self, R: int, rows: int, cols: int, cap_rows: int, cap_cols: int, kw: dict):
        self.buf = torch.zeros(R, rows, cols, **kw)
        self.cap = (cap_rows, cap_cols)

    def reserve(self, rows: int, cols: int) -> Tensor:
        have_r, have_c = self.buf.shape[1:]
        if rows > have_r or cols > have_c:
            nr = min(max(rows, 2 * have_r), max(rows, self.cap[0])) if rows > have_r else have_r
            nc = min(max(cols, 2 * have_c), max(cols, self.cap[1])) if cols > have_c else have_c
            new = self.buf.new_zeros(self.buf.shape[0], nr, nc)
            new[:, :have_r, :have_c] = self.buf
            self.buf = new
        return self.buf


class _Side:
    """Queries of one matrix (W, or Wᵀ): orthonormal directions Q and the matrix's answers Z, both
    (R, n, m) with |q|²/m = 1 on the first n rows. A step appends only the directions that some replica keeps
    (a query in the span of the history, at round-off, opens none), so n is the history's rank, not t·P; a
    row a replica dropped is zero in that replica."""

    def __init__(self, R: int, m: int, rows: int, cap: int, kw: dict):
        self._Q, self._Z = _Grow(R, rows, m, cap, m, kw), _Grow(R, rows, m, cap, m, kw)
        self.n = 0

    @property
    def Q(self) -> Tensor:
        return self._Q.buf[:, :self.n]

    @property
    def Z(self) -> Tensor:
        return self._Z.buf[:, :self.n]

    def append(self, Qn: Tensor, Zn: Tensor) -> None:
        """Qn, Zn (R, m, k): k new rows."""
        k = Qn.shape[-1]
        m = self._Q.buf.shape[2]
        self._Q.reserve(self.n + k, m)[:, self.n:self.n + k] = Qn.mT
        self._Z.reserve(self.n + k, m)[:, self.n:self.n + k] = Zn.mT
        self.n += k


def _cholqr(Q: Tensor, unit: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """One Cholesky-QR step: Q (R, m, P) -> (Q', Lᵀ) with Q = Q' Lᵀ and Q'ᵀQ'/m = I on Q's nonzero columns;
    `unit` puts identity pivots on its zero (dropped) columns, which stay zero."""
    L = torch.linalg.cholesky(Q.mT @ Q / m + unit)
    return torch.linalg.solve_triangular(L, Q.mT, upper=False).mT, L.mT


def _orthonormalise(r: Tensor, x_sq: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    """r (R, m, P), already ⊥ the history -> (Qn (R, m, P), Rn (R, P, P) upper, keep (R, P)) with r ≈ Qn Rn,
    Qnᵀ Qn/m = diag(keep). Columns at round-off (in the span) are dropped: zero in Qn and Rn. Cholesky-QR
    twice when well conditioned (smooth in r, so common random numbers stay common), else modified
    Gram–Schmidt with reorthogonalisation, column by column."""
    drop, rel, cond = _TOL[r.dtype]
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
        Q, L2t = _cholqr(Q1, unit, m)
        return Q, (L2t @ L.mT) * keep[:, :, None], keep
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


def _query(side: _Side, other: _Side, x: Tensor, eps: Tensor, couple: bool,
           drift: Callable[[Tensor], Tensor] | None) -> tuple[Tensor, Tensor | None, Tensor]:
    """Answer of the matrix at initialisation for new queries x (R, m, P) given its past directions, the
    update's part ΔW x/√n (None before any update), and the coordinates of x in its basis (R, n + k, P) after
    it appended the k ≤ P new directions some replica keeps. `other` holds the transposed matrix's queries: with
    couple=True they add the coupling and project ε; couple=False is the decoupled case. drift(a) gives the
    update's coefficients on other's rows (R, other.n, P), computed in the same pass over other's basis."""
    m, n, n_other = x.shape[1], side.n, other.n
    Q, Z = side.Q, side.Z                                              # (R, n, m)
    a = _coords(Q, x) / m                                              # (R, n, P)
    r = x - _comb(Q, a)
    x_sq = (x * x).sum(1) / m                                          # (R, P)
    if n:                                                              # CGS2: always project twice
        a2 = _coords(Q, r) / m
        r, a = r - _comb(Q, a2), a + a2
    Qn, Rn, keep = _orthonormalise(r, x_sq, m)
    if n and bool(keep.any()):
        # The step's QR divides by its pivots, so whatever of the history r still holds (a few eps of |r|) is
        # amplified by r's condition number among the step's columns; project the new directions out once
        # more and re-normalise them (block CGS2). Without this the bases drift from orthonormal over long
        # training and the two sides of W disagree (docs/theory.md §6).
        c = _coords(Q, Qn) / m                                         # (R, n, P)
        Qn, a = Qn - _comb(Q, c), a + c @ Rn
        Qn, R2 = _cholqr(Qn, torch.diag_embed((~keep).to(Qn.dtype)), m)
        Rn = R2 @ Rn
    Qo = other.Q                                                       # (R, n_o, m)
    coef = drift(a) if drift is not None and n_other else None         # (R, n_o, P)
    P = x.shape[-1]
    if couple and n_other:
        C = (_coords(other.Z, Qn) - _coords(Qo, eps)) / m              # coupling weights; −projection of ε
        both = _comb(Qo, C if coef is None else torch.cat([C, coef], -1))  # one pass over Qo
        Zn, extra = eps + both[..., :P], (both[..., P:] if coef is not None else None)
    else:
        Zn, extra = eps, (_comb(Qo, coef) if coef is not None else None)
    Zn = Zn * keep[:, None, :]
    msg = _comb(Z, a) + Zn @ Rn
    new = keep.any(0)                                                  # (P,) kept by some replica
    if not bool(new.all()):
        Qn, Zn, Rn = Qn[..., new], Zn[..., new], Rn[:, new]
    side.append(Qn, Zn)
    return msg, extra, torch.cat([a, Rn], dim=1)


class Matrix:
    """One block matrix W(0) ~ N(0, 1)^{n×n} at infinite width, with what SGD has done to it.

    Forward queries (P per step) and backward queries (Nb per step) append the directions they open to `fwd`
    and `bwd` (at most P and Nb per step; none for a query already in the span). D (R, bwd.n, fwd.n) holds
    ΔW/(b√n) in the (bwd, fwd) bases: ΔW u/√n = b Q_Bᵀ D a and ΔWᵀ g/√n = b Q_Aᵀ Dᵀ (Q_B·g/m). `lr` is ηγ0
    times the matrix's own LR factor (L^α for the first inner layer of a two-layer block, else 1). Buffers
    start at `start` steps' worth of rows and grow on demand, up to T steps' worth. With track_learning, each
    forward keeps its update-driven part ΔW u/√n in `learned` (the first inner layer's a_learn)."""

    def __init__(self, R: int, m: int, T: int, P: int, Nb: int, lr: float, coupled: bool, b: float, kw: dict,
                 start: int = 4, track_learning: bool = False):
        s = min(T, start)
        self.fwd = _Side(R, m, s * P, T * P, kw)
        self.bwd = _Side(R, m, s * Nb, T * Nb, kw)
        self._D = _Grow(R, s * Nb, s * P, T * Nb, T * P, kw)
        self.P, self.Nb, self.lr, self.coupled, self.b = P, Nb, lr, coupled, b
        self.track_learning, self.learned = track_learning, None

    @property
    def D(self) -> Tensor:
        return self._D.reserve(self.bwd.n, self.fwd.n)[:, :self.bwd.n, :self.fwd.n]

    def forward(self, u: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """W(t) u/√n for u (R, m, P) at the current step (before its backward) and u's coordinates α. The
        update's own part ΔW u/√n stays in `learned` until the next forward when track_learning is set (zero
        before any update): a_learn of a two-layer block's first inner layer is its mean square."""
        D, b = self.D, self.b
        msg, extra, coords = _query(self.fwd, self.bwd, u, eps, self.coupled, lambda a: b * (D @ a))
        if self.track_learning:
            self.learned = torch.zeros_like(msg) if extra is None else extra
        return (msg if extra is None else msg + extra), coords

    def backward(self, g: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """W(t)ᵀ g/√n (W̃(0) + ΔW when uncoupled) for g (R, m, Nb) after the step's forward; g's coordinates β.
        D's columns for the step's new forward directions are still zero (the update comes after)."""
        D, b = self.D.mT, self.b
        msg, extra, coords = _query(self.bwd, self.fwd, g, eps, self.coupled, lambda a: b * (D @ a))
        return (msg if extra is None else msg + extra), coords

    def update(self, alpha: Tensor, beta: Tensor, weights: Tensor) -> None:
        """ΔW/(b√n) += lr Σ_{j,μ} w_jμ g_j φ_μᵀ/n: D += lr β w αᵀ, weights w (R, Nb, P) = how much of backward
        column j enters the update with forward input μ (χ_μ on the diagonal for a scalar output); α (R, nf, P)
        and β (R, nb, Nb) are the coordinates the step's queries returned (nf, nb ≤ the current ranks)."""
        nb, nf = beta.shape[1], alpha.shape[1]
        self.D[:, :nb, :nf] += self.lr * beta @ (weights @ alpha.mT)
