"""The transpose coupling (docs/theory.md §5) as recorded in runs: per block, at record steps, the split of each
new message of W(0) given the histories of the vectors W(0) and W(0)ᵀ were applied to (`CouplingTracker`).

Only orthonormal bases of the two histories are kept, never their messages: with P_B the projection onto the
span of the backward inputs B, the coupling part of a forward message is (B⁺)ᵀXᵀΠ_A^⊥u = P_B·W Π_A^⊥u/√n
(X = WᵀB/√n, so (B⁺)ᵀXᵀ = P_B W/√n), the projection of the message of Π_A^⊥u onto span(B); the backward part
mirrors it. Vectors are rows, (L, k, n) for k vectors of width n in each of L blocks, so every product is a
plain batched GEMM and dropping the oldest vectors is a slice. Each product of a basis with a few vectors
reads the whole basis for little work (memory- and small-GEMM-bound), so products that can share a read
share it: `CouplingTracker.update` reads each basis four times a record (twice for Gram–Schmidt, once for
the coupling's coefficients together with the second pass's, once for the correction) and the slide's
rotation shares the next record's second read.
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


def _reflector(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Block Householder reflector H = I − Y T Yᵀ (k × k) whose first d columns span X (L, k, d), from X's
    QR: (Yᵀ (L, d, k), Y Tᵀ (L, k, d))."""
    d = X.shape[-1]
    a, tau = torch.geqrf(X)
    Y = a.tril(-1)
    Y[:, :d, :].diagonal(dim1=1, dim2=2).fill_(1.0)          # unit lower trapezoidal reflector vectors
    H1 = torch.linalg.householder_product(a, tau)            # (L, k, d) first d columns of H
    L1, eye = Y[:, :d, :], torch.eye(d, dtype=X.dtype, device=X.device)
    B = torch.linalg.solve_triangular(L1, eye - H1[:, :d, :], upper=False, unitriangular=True)
    T = torch.linalg.solve_triangular(L1.mT, B, upper=True, left=False, unitriangular=True)
    return Y.mT.contiguous(), Y @ T.mT


def _tri_inv(R: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(R.shape[-1], dtype=R.dtype, device=R.device)
    return torch.linalg.solve_triangular(R, eye, upper=True)


class _Side:
    """One side of the blocks' history: an orthonormal basis of the vectors W(0) (or W(0)ᵀ) was applied
    to, as float64 rows Q (L, k, n): rows s..s+k of a buffer (L, capacity, n). Callers project new vectors off
    it twice (classical Gram–Schmidt twice is stable) and `append` the residuals; new directions whose
    residual is below 1e-10 of the vector's norm are dropped (zero rows), as a rank-revealing factorisation
    would: a repeated probe adds nothing.

    Sliding window, fast path: while no direction was dropped, the side also keeps C⁻¹ (stored transposed,
    C⁻ᵀ, so that its products are of the fast row-times-matrix kind), the inverse of C = Q V (k, k), the
    history vectors V (oldest first) in the basis. Dropping the oldest d vectors removes
    from the span exactly span(Qᵀ X), X = (first d rows of C⁻¹)ᵀ (the dual vectors of the dropped ones:
    orthogonal to every kept vector); one block Householder reflector H = I − Y T Yᵀ (k × k, Y: k × d) whose
    first d columns span X rotates the basis and C⁻¹ so that their last k − d rows (and columns) are a basis
    of the kept vectors and the new C⁻¹: O(n·k·d) per slide, in place, instead of a QR of the window,
    O(n·k²). The rotation of the basis waits for the next projection (`coef`, `project`), which reads the
    basis anyway and takes Yᵀ Q from the same read. Once a direction was dropped (rank-deficient histories) a
    slide rebuilds the basis from the window's vectors by one QR; `refresh` fast slides in a row also
    rebuild, so rounding cannot accumulate."""

    refresh = 256  # fast slides between two exact rebuilds

    def __init__(self, L: int, n: int, device: torch.device):
        self.n, self.s, self.k = n, 0, 0
        self.buf = torch.zeros(L, 16, n, dtype=torch.float64, device=device)
        self.cit: torch.Tensor | None = torch.zeros(L, 16, 16, dtype=torch.float64, device=device)  # C⁻ᵀ
        self.slides = 0  # fast slides since the last rebuild
        # a slide's rotation not yet applied: (Yᵀ (L, d, k + d), Y Tᵀ (L, k + d, d)); rows s−d..s+k are then
        # the basis before the slide (the d dropped directions first after rotation)
        self.pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._slid: tuple[torch.Tensor, ...] | None = None  # (Yᵀ, Y Tᵀ, Yᵀ C⁻ᵀ) of the next slide, from `append`

    @property
    def fast(self) -> bool:
        return self.cit is not None                           # False once a direction was dropped

    @property
    def Qr(self) -> torch.Tensor:
        if self.pending is not None:
            self._rotate()
        return self.buf[:, self.s:self.s + self.k]            # (L, k, n) basis rows

    def _rotate(self, YtQ: torch.Tensor | None = None) -> None:
        """Apply the pending slide: (Hᵀ Q)[d:] = Q[d:] − (Y Tᵀ)[d:] (Yᵀ Q), in place; YtQ = Yᵀ Q if known."""
        Yt, YTt = self.pending
        d = Yt.shape[1]
        raw = self.buf[:, self.s - d:self.s + self.k]
        raw[:, d:].baddbmm_(YTt[:, d:], Yt @ raw if YtQ is None else YtQ, alpha=-1)
        self.pending = None

    def coef(self, v: torch.Tensor) -> torch.Tensor:
        """v Qᵀ (L, q, k) for rows v (L, q, n); with a pending slide from the basis before it: c H, less the
        dropped coordinates."""
        if self.pending is None:
            return v @ self.Qr.mT
        Yt, YTt = self.pending
        c = v @ self.buf[:, self.s - Yt.shape[1]:self.s + self.k].mT
        return (c - (c @ Yt.mT) @ YTt.mT)[:, :, Yt.shape[1]:]  # H = I − Y T Yᵀ

    def project(self, v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """v − c Q for rows v (L, q, n) and coefficients c (L, q, k); a pending slide is applied, its Yᵀ Q taken
        from the same product: c Hᵀ-rows = [0, c] Hᵀ times the basis before the slide."""
        if self.pending is None:
            return torch.baddbmm(v, c, self.Qr, alpha=-1)
        Yt, YTt = self.pending
        d, q = Yt.shape[1], c.shape[1]
        full = torch.cat([c.new_zeros(c.shape[0], q, d), c], -1)
        t = torch.cat([full - (full @ YTt) @ Yt, Yt], 1) @ self.buf[:, self.s - d:self.s + self.k]
        r = v - t[:, :q]
        self._rotate(t[:, q:])
        return r

    @property
    def Q(self) -> torch.Tensor:
        return self.Qr.mT                                     # (L, n, k) the basis as columns

    @property
    def CinvT(self) -> torch.Tensor | None:
        s, k = self.s, self.k
        return None if self.cit is None else self.cit[:, s:s + k, s:s + k]

    def rank(self) -> torch.Tensor:
        if self.fast:                                         # nothing dropped: every row counts
            return self.buf.new_full((self.buf.shape[0],), float(self.k))
        return (self.Qr.abs().sum(-1) > 0).sum(-1).to(self.buf.dtype)  # (L,)

    def _room(self, q: int) -> None:
        """Make rows s+k..s+k+q free: move the rows in use to the top of the buffer (in pieces that do not
        overlap, no new memory), or into a larger buffer when they do not fit (half as many again to spare,
        so a move happens once every ≈ k/(2q) slides)."""
        if self.pending is not None:
            self._rotate()
        s, k, cap = self.s, self.k, self.buf.shape[1]
        if s + k + q <= cap:
            return
        want = k + q + max(2 * q, (k + q) // 2)
        if want > cap:                                         # rows are written before they are read
            buf = self.buf.new_empty(self.buf.shape[0], want, self.buf.shape[2])
            buf[:, :k] = self.buf[:, s:s + k]
            if self.cit is not None:
                cit = self.cit.new_empty(self.cit.shape[0], want, want)
                cit[:, :k, :k] = self.cit[:, s:s + k, s:s + k]
                self.cit = cit
            self.buf = buf
        else:                                                  # s > 0 here: pieces of s rows never overlap
            for i in range(0, k, s):
                j = min(i + s, k)
                self.buf[:, i:j] = self.buf[:, s + i:s + j]
                if self.cit is not None:
                    self.cit[:, i:j, :k] = self.cit[:, s + i:s + j, s:s + k]
        self.s = 0

    def rebuild(self, V: torch.Tensor) -> None:
        """Replace the history by the span of the rows V (L, k, n) in one Householder QR (stable without a
        second pass); dependent directions are dropped as in `append`."""
        Q, R, keep = _span_qr(V.mT, V.norm(dim=-1))          # (L, n, k), (L, k, k), (L, k)
        self.s = self.k = 0
        self.pending = self._slid = None
        self._room(V.shape[1])
        k = self.k = V.shape[1]
        self.buf[:, :k] = Q.mT
        self.slides = 0
        if bool(keep.all()):
            cap = self.buf.shape[1]
            self.cit = self.buf.new_zeros(self.buf.shape[0], cap, cap)
            self.cit[:, :k, :k] = _tri_inv(R).mT
        else:
            self.cit = None

    def append(self, r: torch.Tensor, c: torch.Tensor, scale: torch.Tensor, drop: int = 0) -> torch.Tensor:
        """Append new vectors v (L, q, n) given r = Π^⊥v (projected off the basis twice), c = v Qᵀ (both
        passes' coefficients, (L, q, k)) and scale = ‖v‖ (L, q). Returns the new basis rows (L, q', n): a view,
        valid until the next change of the side. drop > 0: `slide(drop)` comes next; its update of C⁻ᵀ is done
        here, from the same read of C⁻ᵀ as the block inverse's."""
        Qn, R, keep = _span_qr(r.mT, scale)                 # (L, n, q), (L, q, q), (L, q)
        q = R.shape[-1]
        self._room(q)
        s, k = self.s, self.k
        self.buf[:, s + k:s + k + q] = Qn.mT
        if not (self.fast and bool(keep.all())):
            self.cit = None
            self.k += q
            return self.buf[:, s + k:s + k + q]
        # V_new = [Q; Qn]ᵀ [[C, cᵀ], [0, R]]: C_new⁻¹ = [[C⁻¹, −C⁻¹cᵀR⁻¹], [0, R⁻¹]], kept transposed
        RinvT, ct, old, new = _tri_inv(R).mT, self.cit, slice(s, s + k), slice(s + k, s + k + q)
        CiT = self.CinvT
        if not drop or self.slides >= self.refresh:         # (a refresh rebuilds: no reflector)
            ct[:, new, old] = -RinvT @ (c @ CiT)
        else:                                                # the slide's X = first `drop` columns of C_new⁻ᵀ
            X = torch.cat([CiT[:, :, :drop], -RinvT @ (c @ CiT[:, :, :drop])], 1)
            Yt, YTt = _reflector(X)                          # (L, d, k + q), (L, k + q, d)
            t = torch.cat([c, Yt[:, :, :k]], 1) @ CiT         # c C⁻ᵀ and Yᵀ's old part times C⁻ᵀ: one read
            ct[:, new, old] = -RinvT @ t[:, :q]
            self._slid = (Yt, YTt, t[:, q:])
        ct[:, old, new] = 0
        ct[:, new, new] = RinvT
        self.k += q
        return self.buf[:, s + k:s + k + q]

    def slide(self, d: int, window: Callable[[], torch.Tensor]) -> None:
        """Forget the oldest d vectors; window() gives the kept vectors as rows (L, k − d, n) for a rebuild."""
        if not self.fast or self.slides >= self.refresh:
            self.k -= d
            return self.rebuild(window())
        if self.pending is not None:
            self._rotate()
        ct = self.CinvT                                      # (L, k, k) view of C⁻ᵀ
        if self._slid is not None:                           # append read C⁻ᵀ for this slide already
            Yt, YTt, YtC = self._slid
            k0 = YtC.shape[-1]                               # Yᵀ C⁻ᵀ: the old rows' part, plus the new rows'
            YtC = torch.cat([YtC + Yt[:, :, k0:] @ ct[:, k0:, :k0], Yt[:, :, k0:] @ ct[:, k0:, k0:]], -1)
            self._slid = None
        else:
            Yt, YTt = _reflector(ct[:, :, :d])               # X = dual vectors of the dropped ones
            YtC = Yt @ ct
        # (C⁻¹ H)ᵀ[d:, d:] = (C⁻ᵀ − Y Tᵀ Yᵀ C⁻ᵀ)[d:, d:] in place now; the basis's rotation waits (`pending`)
        ct[:, d:, d:].baddbmm_(YTt[:, d:], YtC[:, :, d:], alpha=-1)
        self.pending = (Yt, YTt)
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
        L, n, _ = W0.shape
        self.fwd = _Side(L, n, W0.device)        # inputs u of W(0), forward
        self.bwd = _Side(L, n, W0.device)        # inputs ĝ of W(0)ᵀ, backward

    def _messages(self, vs: tuple[torch.Tensor, ...], M: torch.Tensor) -> torch.Tensor:
        """Rows [v₁; v₂; …] M/√n in float64, the product in the matrix's dtype (as the network computes
        messages): M = W(0)ᵀ gives forward messages W v/√n, M = W(0) backward ones."""
        L, n = M.shape[0], M.shape[-1]
        rows = torch.empty(L, sum(v.shape[1] for v in vs), n, dtype=M.dtype, device=M.device)
        torch.cat(vs, 1, out=rows)                           # one copy, cast on the way
        return (rows @ M).double().div_(n ** 0.5)

    def update(self, u: torch.Tensor, g: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
        """u, g: (L, P, n) forward inputs and ĝ_ℓ of every block at this record step -> metrics (layers 1..L).
        Every vector is a row: (L, P, n)."""
        n, P = u.shape[-1], u.shape[1]
        if self.decoupled:  # W(0) never sees a backward vector: every part and chance level is zero, no history
            zero = u.new_zeros(u.shape[0], dtype=torch.float64)
            return {name: (zero, 1) for name in NAMES}
        u, g = u.double(), g.double()
        A, B = self.fwd, self.bwd
        c1u = A.coef(u)
        ru = A.project(u, c1u)                               # Π_A^⊥ u, A = forward inputs before t
        c1g = B.coef(g)
        rg = B.project(g, c1g)                               # Π_B^⊥ ĝ, B = backward inputs before t
        QA, QB = A.Qr, B.Qr
        ym, xm = self._messages((u, ru), self.W0t), self._messages((g, rg), self.W0)
        y, yp, x, xp = ym[:, :P], ym[:, P:], xm[:, :P], xm[:, P:]  # W u/√n, W Π_A^⊥u/√n, Wᵀĝ/√n, WᵀΠ_B^⊥ĝ/√n
        ch_fwd = B.rank() * ru.pow(2).sum(-1).mean(-1) / n ** 2
        d = self.raw[0][0].shape[1] if self.window and len(self.raw) >= self.window else 0  # to forget after
        # forward side: the second Gram–Schmidt pass of u and, from the same read of A's basis, the backward
        # coupling's coefficients xp Qᵀ (A = inputs up to t: the rows u adds are taken after the add)
        t = torch.cat([ru, xp], 1) @ QA.mT
        c2u, cb = t[:, :P], t[:, P:]
        new = A.append(torch.baddbmm(ru, c2u, QA, alpha=-1), c1u + c2u, u.norm(dim=-1), d)
        cb2 = cb.pow(2).sum(-1) + (xp @ new.mT).pow(2).sum(-1)  # ‖P_A WᵀΠ_B^⊥ĝ/√n‖² (orthonormal rows)
        ch_bwd = A.rank() * rg.pow(2).sum(-1).mean(-1) / n ** 2
        # backward side: the second pass of ĝ and the forward coupling's coefficients yp Qᵀ from one read,
        # then the correction and the forward coupling part P_B W Π_A^⊥u/√n (as a vector) from another
        t = torch.cat([rg, yp], 1) @ QB.mT
        c2g, cf = t[:, :P], t[:, P:]
        t = torch.cat([c2g, cf], 1) @ QB
        c_fwd = t[:, P:]                                     # (L, P, n)
        self.raw.append((u, g))
        if d:                                                # slide: forget the oldest record
            self.raw.pop(0)
            A.slide(d, lambda: torch.cat([ru_ for ru_, _ in self.raw], 1))
            if not B.fast:                                   # rank-deficient: the rebuild replaces the add
                B.rebuild(torch.cat([rg_ for _, rg_ in self.raw], 1))
            else:
                B.append(rg - t[:, :P], c1g + c2g, g.norm(dim=-1), d)
                B.slide(d, lambda: torch.cat([rg_ for _, rg_ in self.raw], 1))
        else:
            B.append(rg - t[:, :P], c1g + c2g, g.norm(dim=-1))
        sq = lambda v: v.pow(2).sum(-1)                      # (L, P, ·) -> (L, P) squared norms
        acc = torch.cumsum(self.branch * c_fwd, dim=0)       # (L, P, n) Σ_{k≤ℓ} branch·(2)_k
        return {"coupling_fwd": (sq(c_fwd).mean(-1) / n, 1),
                "coupling_bwd": (cb2.mean(-1) / n, 1),
                "coupling_fwd_frac": ((sq(c_fwd) / sq(y).clamp_min(1e-300)).mean(-1), 1),
                "coupling_bwd_frac": ((cb2 / sq(x).clamp_min(1e-300)).mean(-1), 1),
                "coupling_acc": (sq(acc).mean(-1) / n, 1),
                "coupling_fwd_chance": (ch_fwd, 1),
                "coupling_bwd_chance": (ch_bwd, 1),
                # E‖Σ_{k≤ℓ} branch·(2)'_k‖²/n with an independent W'_k per block: the blocks' chance
                # couplings are independent with mean zero, so cross terms vanish and the squares add
                "coupling_acc_chance": (self.branch ** 2 * torch.cumsum(ch_fwd, dim=0), 1)}
