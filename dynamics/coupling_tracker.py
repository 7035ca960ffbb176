"""The transpose coupling (docs/theory.md §5) as recorded in runs: per block, at record steps, the split of each
new message of W(0) given the histories of the vectors W(0) and W(0)ᵀ were applied to (`CouplingTracker`).

Vectors are kept as rows, (L, k, n) for k vectors of width n in each of L blocks, so every product on the
CPU is a plain batched GEMM (no transposed big operand) and dropping the oldest vectors is a slice.
"""
from __future__ import annotations

from typing import Callable

import torch


NAMES = ("coupling_fwd", "coupling_bwd", "coupling_fwd_frac", "coupling_bwd_frac", "coupling_acc",
         "coupling_fwd_chance", "coupling_bwd_chance", "coupling_acc_chance")


def _span_qr(V: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orthonormal basis of span(V) for V (L, n, k) by Householder QR: (Q, R, keep). A column whose |R_jj| is
    below 1e-10 of scale (L, k) lies in the span of the columns before it and is dropped (a zero column of Q).
    LAPACK still gives a dependent column a direction of its own, an arbitrary one, and the columns after it
    lose their component along that direction when it is zeroed; so when a column is dropped the dependent
    columns are moved last (per layer, order kept) and the kept ones factored again: Q then has the kept
    columns' span first and zero columns after (R is then only meaningful where nothing was dropped)."""
    Q, R = torch.linalg.qr(V)
    keep = R.diagonal(dim1=1, dim2=2).abs() > 1e-10 * scale.clamp_min(1e-300)
    if bool(keep.all()):
        return Q, R, keep
    order = torch.argsort((~keep).to(torch.int8), dim=-1, stable=True)     # kept columns first
    Q, R = torch.linalg.qr(V.gather(2, order[:, None, :].expand_as(V)))
    first = torch.arange(V.shape[-1], device=V.device) < keep.sum(-1, keepdim=True)  # (L, k)
    return Q * first[:, None, :], R, first


def _tri_inv(R: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(R.shape[-1], dtype=R.dtype, device=R.device)
    return torch.linalg.solve_triangular(R, eye, upper=True)


class _Side:
    """One side of a block's history: an orthonormal basis of the vectors W(0) (or W(0)ᵀ) was applied to, as
    rows Q (L, k, n), and their messages as rows M = (W Qᵀ/√n)ᵀ (or with Wᵀ), side by side in one buffer
    (L, capacity, 2n) whose rows s..s+k are in use. Working in an orthonormal basis turns docs/theory.md §5's
    pseudo-inverses into products: with B = Q_B R, (B⁺)ᵀXᵀ = Q_B (Wᵀ Q_B/√n)ᵀ = Q_B M_Bᵀ, so every split costs
    O(n·k) per vector and the basis grows by Gram–Schmidt (twice, in float64). New directions whose residual
    is below 1e-10 of the vector's norm are dropped (zero rows), as a rank-revealing factorisation would: a
    repeated probe adds nothing.

    Sliding window, fast path: while no direction was dropped, the side also keeps C⁻¹, the inverse of
    C = Q V (k, k), the history vectors V (oldest first) in the basis. Dropping the oldest d vectors removes
    from the span exactly span(Qᵀ X), X = (first d rows of C⁻¹)ᵀ (the dual vectors of the dropped ones:
    orthogonal to every kept vector); one block Householder reflector H = I − Y T Yᵀ (k × k, Y: k × d) whose
    first d columns span X rotates the basis, the messages and C⁻¹ so that their last k − d rows (and
    columns) are a basis of the kept vectors, its messages and the new C⁻¹: O(n·k·d) per slide, in place,
    instead of a QR of the window, O(n·k²), and W(0)·Q, O(n²·k). Once a direction was dropped
    (rank-deficient histories) a slide rebuilds the basis from the window's vectors by one QR; `refresh`
    fast slides in a row also rebuild, so rounding cannot accumulate."""

    refresh = 256  # fast slides between two exact rebuilds

    def __init__(self, A: torch.Tensor):
        """A (L, n, n): message rows of basis rows q are q A/√n (A = W(0)ᵀ forward, W(0) backward)."""
        L, n, _ = A.shape
        self.A, self.n, self.s, self.k = A, n, 0, 0
        self.buf = torch.zeros(L, 16, 2 * n, dtype=torch.float64, device=A.device)
        self.cib: torch.Tensor | None = torch.zeros(L, 16, 16, dtype=torch.float64, device=A.device)  # C⁻¹
        self.slides = 0  # fast slides since the last rebuild

    @property
    def fast(self) -> bool:
        return self.cib is not None                           # False once a direction was dropped

    @property
    def rows(self) -> torch.Tensor:
        return self.buf[:, self.s:self.s + self.k]            # (L, k, 2n) basis and message rows

    @property
    def Qr(self) -> torch.Tensor:
        return self.rows[..., :self.n]                        # (L, k, n) basis rows

    @property
    def Mr(self) -> torch.Tensor:
        return self.rows[..., self.n:]                        # (L, k, n) message rows

    @property
    def Q(self) -> torch.Tensor:
        return self.Qr.mT                                     # (L, n, k) the basis as columns

    @property
    def Cinv(self) -> torch.Tensor | None:
        s, k = self.s, self.k
        return None if self.cib is None else self.cib[:, s:s + k, s:s + k]

    def perp_coef(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Π^⊥ v, coefficients v Qᵀ) for rows v (L, q, n): one projection."""
        c = v @ self.Qr.mT                                    # (L, q, k)
        return v - c @ self.Qr, c

    def split(self, w: torch.Tensor) -> torch.Tensor:
        """Q_B M_Bᵀ w for rows w (L, q, n) (the coupling part of docs/theory.md §5), as rows: (w Mᵀ) Q."""
        return (w @ self.Mr.mT) @ self.Qr

    def rank(self) -> torch.Tensor:
        if self.fast:                                         # nothing dropped: every row counts
            return self.buf.new_full((self.buf.shape[0],), float(self.k))
        return (self.Qr.abs().sum(-1) > 0).sum(-1).to(self.buf.dtype)  # (L,)

    def _messages(self, rows: torch.Tensor) -> torch.Tensor:
        return (rows.to(self.A.dtype) @ self.A).double() / self.n ** 0.5

    def _room(self, q: int) -> None:
        """Make rows s+k..s+k+q free: move the rows in use to the top, into a larger buffer when needed
        (a quarter to spare, so this happens once every ≈ k/(4q) slides)."""
        s, k, cap = self.s, self.k, self.buf.shape[1]
        if s + k + q <= cap:
            return
        want = k + q + max(q, (k + q) // 4)
        new_cap = cap if want <= cap else want
        buf = self.buf.new_empty(self.buf.shape[0], new_cap, self.buf.shape[2])  # rows are written before read
        buf[:, :k] = self.buf[:, s:s + k]
        if self.cib is not None:
            cib = self.cib.new_empty(self.cib.shape[0], new_cap, new_cap)
            cib[:, :k, :k] = self.cib[:, s:s + k, s:s + k]
            self.cib = cib
        self.buf, self.s = buf, 0

    def rebuild(self, V: torch.Tensor) -> None:
        """Replace the history by the span of the rows V (L, k, n) in one Householder QR (stable without a
        second pass); dependent directions are dropped as in `add`."""
        Q, R, keep = _span_qr(V.mT, V.norm(dim=-1))          # (L, n, k), (L, k, k), (L, k)
        self.s = self.k = 0
        self._room(V.shape[1])
        k = self.k = V.shape[1]
        self.buf[:, :k, :self.n] = Q.mT
        self.buf[:, :k, self.n:] = self._messages(Q.mT)
        self.slides = 0
        if bool(keep.all()):
            cap = self.buf.shape[1]
            self.cib = self.buf.new_zeros(self.buf.shape[0], cap, cap)
            self.cib[:, :k, :k] = _tri_inv(R)
        else:
            self.cib = None

    def add(self, v: torch.Tensor, first: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Append the rows v (L, q, n); `first` = perp_coef(v) when the caller already has it. Returns v's own
        messages v A/√n (one product with A for the new basis rows and v together)."""
        r1, c1 = first if first is not None else self.perp_coef(v)
        r, c2 = self.perp_coef(r1)                           # twice: classical GS is then stable
        Qn, R, keep = _span_qr(r.mT, v.norm(dim=-1))         # (L, n, q), (L, q, q), (L, q)
        rows, q = Qn.mT, R.shape[-1]
        self._room(q)
        s, k = self.s, self.k
        self.buf[:, s + k:s + k + q, :self.n] = rows
        msg = self._messages(torch.cat([rows, v], 1))
        self.buf[:, s + k:s + k + q, self.n:] = msg[:, :q]
        if self.fast and bool(keep.all()):                  # V_new = [Q; Qn]ᵀ [[C, c], [0, R]]: block inverse
            Rinv, ci = _tri_inv(R), self.cib
            ci[:, s:s + k, s + k:s + k + q] = -(self.Cinv @ (c1 + c2).mT) @ Rinv
            ci[:, s + k:s + k + q, s:s + k] = 0
            ci[:, s + k:s + k + q, s + k:s + k + q] = Rinv
        else:
            self.cib = None
        self.k += q
        return msg[:, q:]

    def slide(self, d: int, window: Callable[[], torch.Tensor]) -> None:
        """Forget the oldest d vectors; window() gives the kept vectors as rows (L, k − d, n) for a rebuild."""
        if not self.fast or self.slides >= self.refresh:
            self.k -= d
            return self.rebuild(window())
        ci = self.Cinv                                       # (L, k, k) view
        X = ci[:, :d, :].mT                                  # (L, k, d) dual vectors of the dropped ones
        a, tau = torch.geqrf(X)
        Y = a.tril(-1)
        Y[:, :d, :].diagonal(dim1=1, dim2=2).fill_(1.0)      # unit lower trapezoidal reflector vectors
        H1 = torch.linalg.householder_product(a, tau)        # (L, k, d) first d columns of H
        L1, eye = Y[:, :d, :], torch.eye(d, dtype=X.dtype, device=X.device)
        B = torch.linalg.solve_triangular(L1, eye - H1[:, :d, :], upper=False, unitriangular=True)
        T = torch.linalg.solve_triangular(L1.mT, B, upper=True, left=False, unitriangular=True)  # H = I − Y T Yᵀ
        YTt = Y @ T.mT                                       # (L, k, d)
        rows = self.rows
        # (Hᵀ [Q M])[d:] = [Q M][d:] − (Y Tᵀ)[d:] (Yᵀ [Q M]) and (C⁻¹ H)[d:, d:], in place
        rows[:, d:].baddbmm_(YTt[:, d:], Y.mT @ rows, alpha=-1)
        ci[:, d:, d:].baddbmm_((ci @ Y)[:, d:], YTt.mT[:, :, d:], alpha=-1)
        self.s, self.k = self.s + d, self.k - d
        self.slides += 1


class CouplingTracker:
    """Histories of one matrix per block and the §5 split of each new message, on the probe set.

    The matrix is W_ℓ(0) (one-layer blocks) or W_{ℓ,2}(0) (two-layer blocks: the one whose message enters
    the residual stream). At each record step t, in the order the network applies it: the forward message
    W(0)u/√n of u = the matrix's input at t is split given the histories of steps before t; then the backward
    message W(0)ᵀĝ_ℓ/√n given forward inputs up to t and backward inputs before t. In `decoupled` runs the
    backward pass uses W̃(0), so W(0) never sees a backward vector and the coupling is zero by construction
    (recorded as such). Histories hold the probe vectors of past *recorded* steps within the window: exact
    when the probes are the whole training set, trained full-batch, recorded every step; otherwise a probe
    proxy for what SGD applied W to. Chance levels are the expectation of the same split with an independent
    Gaussian matrix (dynamics.coupling_reference.expected_chance), r_B‖Π_A^⊥u‖²/n² (forward; backward mirrored);
    coupling_acc's chance level is the same accumulation over independent matrices, whose expectation is
    branch²·Σ_{k≤ℓ} coupling_fwd_chance(k) (independent zero-mean terms: no cross terms).
    dynamics.coupling_reference holds the reference (SVD) form of the same split; the tests compare the two.
    """

    def __init__(self, W0: torch.Tensor, window: int, decoupled: bool, branch: float):
        self.W0 = W0.detach().clone()            # (L, n, n) in the model's dtype
        self.W0t = self.W0.mT.contiguous()       # W(0)ᵀ: forward messages as rows are u W(0)ᵀ
        self.window, self.decoupled, self.branch = window, decoupled, branch
        self.raw: list[tuple[torch.Tensor, torch.Tensor]] = []  # (u, g) rows per recorded step, for the window
        self.fwd = _Side(self.W0t)               # inputs u of W(0), messages W u/√n
        self.bwd = _Side(self.W0)                # inputs ĝ of W(0)ᵀ, messages Wᵀĝ/√n

    def update(self, u: torch.Tensor, g: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
        """u, g: (L, P, n) forward inputs and ĝ_ℓ of every block at this record step -> metrics (layers 1..L).
        Every vector is a row: (L, P, n)."""
        n, dt = u.shape[-1], self.W0.dtype
        if self.decoupled:  # W(0) never sees a backward vector: every part and chance level is zero, no history
            zero = u.new_zeros(u.shape[0], dtype=torch.float64)
            return {name: (zero, 1) for name in NAMES}
        u, g = u.double(), g.double()
        u_first = self.fwd.perp_coef(u)
        u_perp = u_first[0]                                  # Π_A^⊥ u, A = inputs before t
        c_fwd = self.bwd.split(u_perp)                       # (B⁺)ᵀ Xᵀ Π_A^⊥ u
        ch_fwd = self.bwd.rank() * u_perp.pow(2).sum(-1).mean(-1) / n ** 2
        y = self.fwd.add(u, u_first)                         # (L, P, n) forward messages W u/√n
        g_first = self.bwd.perp_coef(g)
        g_perp = g_first[0]                                  # Π_B^⊥ ĝ, B = backward inputs before t
        c_bwd = self.fwd.split(g_perp)                       # (A⁺)ᵀ Yᵀ Π_B^⊥ ĝ, A = inputs up to t
        ch_bwd = self.fwd.rank() * g_perp.pow(2).sum(-1).mean(-1) / n ** 2
        self.raw.append((u, g))
        if self.window and len(self.raw) > self.window:     # slide: forget the oldest record
            d = self.raw.pop(0)[0].shape[1]
            us = lambda: torch.cat([ru for ru, _ in self.raw], 1)
            gs = lambda: torch.cat([rg for _, rg in self.raw], 1)
            self.fwd.slide(d, us)
            if not self.bwd.fast:                            # rank-deficient: the rebuild replaces the add
                self.bwd.rebuild(gs())
                x = (g.to(dt) @ self.W0).double() / n ** 0.5
            else:
                x = self.bwd.add(g, g_first)
                self.bwd.slide(d, gs)
        else:
            x = self.bwd.add(g, g_first)                     # (L, P, n) backward messages Wᵀĝ/√n
        sq = lambda t: t.pow(2).sum(-1)                      # (L, P, n) -> (L, P) squared norms
        acc = torch.cumsum(self.branch * c_fwd, dim=0)       # (L, P, n) Σ_{k≤ℓ} branch·(2)_k
        return {"coupling_fwd": (sq(c_fwd).mean(-1) / n, 1),
                "coupling_bwd": (sq(c_bwd).mean(-1) / n, 1),
                "coupling_fwd_frac": ((sq(c_fwd) / sq(y).clamp_min(1e-300)).mean(-1), 1),
                "coupling_bwd_frac": ((sq(c_bwd) / sq(x).clamp_min(1e-300)).mean(-1), 1),
                "coupling_acc": (sq(acc).mean(-1) / n, 1),
                "coupling_fwd_chance": (ch_fwd, 1),
                "coupling_bwd_chance": (ch_bwd, 1),
                # E‖Σ_{k≤ℓ} branch·(2)'_k‖²/n with an independent W'_k per block: the blocks' chance
                # couplings are independent with mean zero, so cross terms vanish and the squares add
                "coupling_acc_chance": (self.branch ** 2 * torch.cumsum(ch_fwd, dim=0), 1)}
