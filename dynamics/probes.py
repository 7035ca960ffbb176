"""What is measured per layer on the probe set (docs/theory.md §2).

`probe_pass` runs the probe inputs through the network once, keeping every feature h_ℓ (and a_ℓ for two-layer
blocks) and the normalised backward signal ĝ_ℓ = (∂f_1/∂h_ℓ) / readout multiplier (γ0 n ∂f/∂h_ℓ under μP;
√n ∂f/∂h_ℓ under sp). In `decoupled` mode ĝ is the signal the algorithm propagates (through W̃(0) + ΔW).
`FUNCTIONS` maps each per-layer metric name of `dynamics.metrics.METRICS` to its function: (state, state
at step 0, depth) -> a (layers,) tensor, computed on whatever device the model lives on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .limit.kernels import phi  # noqa: F401  (re-exported for the recorder)
from .metrics import METRICS

QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


@dataclass
class ProbeState:
    h: torch.Tensor             # (L+1, P, n) features h_0..h_L
    g_hat: torch.Tensor         # (L+1, P, n) normalised gradients ĝ_0..ĝ_L
    phi_h: torch.Tensor         # (L+1, P, n) φ(h_ℓ)
    a: torch.Tensor | None      # (L, P, n) inner pre-activations of two-layer blocks
    f: torch.Tensor             # (P, C) outputs


def probe_pass(model, x: torch.Tensor) -> ProbeState:
    """Forward the probes with trace=True and backpropagate the first output coordinate to every h_ℓ."""
    with torch.enable_grad():
        f, hs, a_s = model(x, trace=True)
        grads = torch.autograd.grad(f[:, 0].sum(), hs)
    h = torch.stack([t.detach() for t in hs])  # (L+1, P, n)
    g_hat = torch.stack(grads) / model.s.readout  # (L+1, P, n)
    a = torch.stack([t.detach() for t in a_s]) if a_s else None
    return ProbeState(h=h, g_hat=g_hat, phi_h=phi(h, model.cfg.act), a=a, f=f.detach())


def _msq(t: torch.Tensor) -> torch.Tensor:
    """mean over probes of |t|²/n: (layers, P, n) -> (layers,)"""
    return t.pow(2).mean(dim=(1, 2))


def _fg_cov(s: ProbeState, s0: ProbeState, depth: int) -> torch.Tensor:
    return (s.phi_h * s.g_hat).mean(dim=(1, 2))


def _fg_eigmin(s: ProbeState, s0: ProbeState, depth: int) -> torch.Tensor:
    """λ_min of the 2P×2P Gram of the stacked vectors [φ(h_ℓ(x_μ)); ĝ_ℓ(x_μ)]/n, per layer (in float64): how
    far features and gradients are from degenerate (the paper's Fig. 3 tracks it over training). For P = 1
    it is the closed form (a+b)/2 − √(((a−b)/2)² + c²) with a = phi_sq, b = g_sq, c = fg_cov."""
    v = torch.cat([s.phi_h, s.g_hat], dim=1).double()  # (L+1, 2P, n)
    return torch.linalg.eigvalsh(v @ v.transpose(1, 2) / v.shape[-1])[:, 0].to(s.h.dtype)


def _diversity(s: ProbeState, s0: ProbeState, depth: int) -> torch.Tensor:
    return _msq(s.h[1:] - s.h[:-1]) * depth


Fn = Callable[[ProbeState, ProbeState, int], torch.Tensor | None]

# per-layer metric name (dynamics.metrics.METRICS) -> function; network scalars are computed by the trainer
FUNCTIONS: dict[str, Fn] = {
    "h_sq": lambda s, s0, L: _msq(s.h),
    "phi_sq": lambda s, s0, L: _msq(s.phi_h),
    "g_sq": lambda s, s0, L: _msq(s.g_hat),
    "h_move": lambda s, s0, L: _msq(s.h - s0.h),
    "g_move": lambda s, s0, L: _msq(s.g_hat - s0.g_hat),
    "fg_cov": _fg_cov,
    "fg_eigmin": _fg_eigmin,
    "diversity": _diversity,
    "a_move": lambda s, s0, L: _msq(s.a - s0.a) if s.a is not None else None,
}
assert set(FUNCTIONS) <= set(METRICS)


def layer_metrics(s: ProbeState, s0: ProbeState, depth: int) -> dict[str, tuple[torch.Tensor, int]]:
    """Every per-layer metric that applies: name -> (values over layers, first layer index)."""
    out = {}
    for name, fn in FUNCTIONS.items():
        values = fn(s, s0, depth)
        if values is not None:
            out[name] = (values, 0 if METRICS[name][1] == "0..L" else 1)
    return out


def kernels(s: ProbeState) -> dict[str, torch.Tensor]:
    """H, Phi, G over the probe set: each (L+1, P, P), entries x·x'/n."""
    n = s.h.shape[-1]
    return {k: t @ t.transpose(1, 2) / n for k, t in (("H", s.h), ("Phi", s.phi_h), ("G", s.g_hat))}


def neuron_quantiles(s: ProbeState) -> torch.Tensor:
    """Quantiles of the single-neuron distribution of h_ℓ(x): (L+1, P, len(QUANTILES)), torch.quantile's
    linear rule: with h sorted over neurons and r = q·(n−1), Q(q) = lerp(h_(⌊r⌋), h_(⌈r⌉), r − ⌊r⌋);
    a row holding NaN gives NaN. On the CPU the sort is numpy's (≈30× faster than torch.sort on rows of a few
    hundred), elsewhere torch's."""
    h = s.h.detach()
    n = h.shape[-1]
    if h.device.type == "cpu" and h.dtype in (torch.float32, torch.float64):
        srt = torch.from_numpy(np.sort(h.numpy(), axis=-1))
    else:
        srt = h.sort(dim=-1).values
    r = torch.tensor(QUANTILES, dtype=h.dtype, device=h.device) * (n - 1)
    lo, hi = r.floor(), r.ceil()
    out = torch.lerp(srt[..., lo.long()], srt[..., hi.long()], r - lo)
    return out.masked_fill(torch.isnan(h).any(-1, keepdim=True), float("nan"))


# --- the transpose coupling (docs/theory.md §5), per block, at record steps ------------------------------------
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


class _Side:
    """One side of a block's history: an orthonormal basis Q (L, n, k) of the vectors W(0) (or W(0)ᵀ) was
    applied to, and their messages M = W Q/√n (or Wᵀ Q/√n). Working in an orthonormal basis turns docs/theory.md
    §5's pseudo-inverses into products: with B = Q_B R, (B⁺)ᵀXᵀ = Q_B (Wᵀ Q_B/√n)ᵀ = Q_B M_Bᵀ, so every
    split costs O(n·k) per vector and the basis grows by Gram–Schmidt (twice, in float64). New directions
    whose residual is below 1e-10 of the vector's norm are dropped (zero columns), as a rank-revealing
    factorisation would: a repeated probe adds nothing.

    Sliding window, fast path: while no direction was dropped, the side also keeps C = Qᵀ V (k, k), the
    history vectors V (oldest first) in the basis, and C⁻¹. Dropping the oldest d vectors removes from span(Q)
    exactly span(Q X), X = (first d rows of C⁻¹)ᵀ (the dual vectors of the dropped ones: orthogonal to every
    kept vector); one block Householder reflector H = I − Y T Yᵀ (k × k, Y: k × d) with span(H[:, :d]) =
    span(X) rotates Q, M, C and C⁻¹ so that the last k − d columns are a basis of the kept vectors, their
    messages, their coordinates and its inverse: O(n·k·d) per slide instead of a QR of the window, O(n·k²),
    and W(0)·Q, O(n²·k). Once a direction was dropped (rank-deficient histories) a slide rebuilds the basis
    from the window's vectors by one QR, as before; `refresh` slides in a row also rebuild, so rounding
    cannot accumulate."""

    refresh = 64  # fast slides between two exact rebuilds

    def __init__(self, L: int, n: int, dev, transpose: bool):
        self.Q = torch.zeros(L, n, 0, dtype=torch.float64, device=dev)
        self.M = torch.zeros_like(self.Q)
        self.C: torch.Tensor | None = self.Q.new_zeros(L, 0, 0)  # None: a direction was dropped
        self.Cinv: torch.Tensor | None = self.C
        self.transpose = transpose
        self.slides = 0  # fast slides since the last rebuild

    def perp_coef(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Π^⊥ v, Qᵀ v) for v (L, n, q): one projection."""
        c = self.Q.mT @ v
        return v - self.Q @ c, c

    def perp(self, v: torch.Tensor) -> torch.Tensor:
        return self.perp_coef(v)[0]                          # (L, n, q) Π^⊥ v

    def rank(self) -> torch.Tensor:
        return (self.Q.abs().sum(1) > 0).sum(-1).to(self.Q.dtype)  # (L,)

    def _messages(self, Q: torch.Tensor, W0: torch.Tensor) -> torch.Tensor:
        Wt = W0.mT if self.transpose else W0
        return (Wt @ Q.to(W0.dtype)).double() / Q.shape[1] ** 0.5

    def rebuild(self, V: torch.Tensor, W0: torch.Tensor) -> None:
        """Replace the history by the span of V (L, n, k) in one Householder QR (stable without a second
        pass); directions with |R_ii| below 1e-10 of their column's norm are dropped as in `add`."""
        self.Q, R, keep = _span_qr(V, V.norm(dim=1))          # (L, n, k), (L, k, k), (L, k)
        self.M = self._messages(self.Q, W0)
        self.slides = 0
        if bool(keep.all()):
            self.C = R
            self.Cinv = torch.linalg.solve_triangular(R, torch.eye(R.shape[-1], dtype=R.dtype, device=R.device),
                                                      upper=True)
        else:
            self.C = self.Cinv = None

    def add(self, v: torch.Tensor, W0: torch.Tensor,
            first: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Append the vectors v (L, n, q); `first` = perp_coef(v) when the caller already has it."""
        r1, c1 = first if first is not None else self.perp_coef(v)
        r, c2 = self.perp_coef(r1)                           # twice: classical GS is then stable
        Qn, R, keep = _span_qr(r, v.norm(dim=1))             # (L, n, q), (L, q, q), (L, q)
        Mn = self._messages(Qn, W0)
        if self.C is not None and bool(keep.all()):         # V_new = [Q Qn] [[C, c], [0, R]]
            c = c1 + c2
            Rinv = torch.linalg.solve_triangular(R, torch.eye(R.shape[-1], dtype=R.dtype, device=R.device),
                                                 upper=True)
            k, q = self.C.shape[-1], R.shape[-1]
            C = self.C.new_zeros(R.shape[0], k + q, k + q)
            Ci = torch.zeros_like(C)
            C[:, :k, :k], C[:, :k, k:], C[:, k:, k:] = self.C, c, R
            Ci[:, :k, :k], Ci[:, :k, k:], Ci[:, k:, k:] = self.Cinv, -(self.Cinv @ c) @ Rinv, Rinv
            self.C, self.Cinv = C, Ci
        else:
            self.C = self.Cinv = None
        self.Q, self.M = torch.cat([self.Q, Qn], 2), torch.cat([self.M, Mn], 2)

    def slide(self, d: int, window: Callable[[], torch.Tensor], W0: torch.Tensor) -> None:
        """Forget the oldest d vectors; window() gives the kept vectors (L, n, k − d) for a rebuild."""
        if self.C is None or self.slides >= self.refresh:
            return self.rebuild(window(), W0)
        X = self.Cinv[:, :d, :].mT                           # (L, k, d) dual vectors of the dropped ones
        a, tau = torch.geqrf(X)
        Y = a.tril(-1)
        Y[:, :d, :].diagonal(dim1=1, dim2=2).fill_(1.0)      # unit lower trapezoidal reflector vectors
        H1 = torch.linalg.householder_product(a, tau)        # (L, k, d) first d columns of H
        L1 = Y[:, :d, :]
        eye = torch.eye(d, dtype=X.dtype, device=X.device)
        B = torch.linalg.solve_triangular(L1, eye - H1[:, :d, :], upper=False, unitriangular=True)
        T = torch.linalg.solve_triangular(L1.mT, B, upper=True, left=False, unitriangular=True)  # H = I − Y T Yᵀ
        TYt = T @ Y.mT                                       # (L, d, k)
        right = lambda A: torch.baddbmm(A[:, :, d:], A @ Y, TYt[:, :, d:], alpha=-1)  # (A H)[:, :, d:]
        self.Q, self.M, self.Cinv = right(self.Q), right(self.M), right(self.Cinv)[:, d:, :]
        HtC = torch.baddbmm(self.C, TYt.mT, Y.mT @ self.C, alpha=-1)  # Hᵀ C = C − Y Tᵀ Yᵀ C
        self.C = HtC[:, d:, d:]
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
        self.window, self.decoupled, self.branch = window, decoupled, branch
        self.raw: list[tuple[torch.Tensor, torch.Tensor]] = []  # (u, g) per recorded step, for the window
        self._reset()

    def _reset(self) -> None:
        L, n, _ = self.W0.shape
        self.fwd = _Side(L, n, self.W0.device, transpose=False)  # inputs u of W(0), messages W u/√n
        self.bwd = _Side(L, n, self.W0.device, transpose=True)   # inputs ĝ of W(0)ᵀ, messages Wᵀĝ/√n

    def update(self, u: torch.Tensor, g: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
        """u, g: (L, P, n) forward inputs and ĝ_ℓ of every block at this record step -> metrics (layers 1..L)."""
        n = u.shape[-1]
        u = u.double().transpose(1, 2)                       # (L, n, P)
        g = g.double().transpose(1, 2)
        y = (self.W0 @ u.to(self.W0.dtype)).double() / n ** 0.5     # (L, n, P) forward messages
        x = (self.W0.mT @ g.to(self.W0.dtype)).double() / n ** 0.5  # (L, n, P) backward messages
        zero = torch.zeros_like(u)
        u_first = self.fwd.perp_coef(u)
        u_perp = u_first[0]                                  # (L, n, P) Π_A^⊥ u, A = inputs before t
        if self.decoupled:
            c_fwd, ch_fwd = zero, u.new_zeros(u.shape[0])
        else:
            c_fwd = self.bwd.Q @ (self.bwd.M.mT @ u_perp)    # (B⁺)ᵀ Xᵀ Π_A^⊥ u
            ch_fwd = self.bwd.rank() * u_perp.pow(2).sum(1).mean(-1) / n ** 2
        self.fwd.add(u, self.W0, u_first)
        g_first = self.bwd.perp_coef(g)
        g_perp = g_first[0]                                  # Π_B^⊥ ĝ, B = backward inputs before t
        if self.decoupled:
            c_bwd, ch_bwd = zero, u.new_zeros(u.shape[0])
        else:
            c_bwd = self.fwd.Q @ (self.fwd.M.mT @ g_perp)    # (A⁺)ᵀ Yᵀ Π_B^⊥ ĝ, A = inputs up to t
            ch_bwd = self.fwd.rank() * g_perp.pow(2).sum(1).mean(-1) / n ** 2
        self.raw.append((u, g))
        slide = bool(self.window and len(self.raw) > self.window)
        if slide:
            d = self.raw.pop(0)[0].shape[-1]
            us = lambda: torch.cat([ru for ru, _ in self.raw], 2)
            gs = lambda: torch.cat([rg for _, rg in self.raw], 2)
            self.fwd.slide(d, us, self.W0)
            if self.bwd.C is None:                           # rank-deficient: the rebuild replaces the add
                self.bwd.rebuild(gs(), self.W0)
            else:
                self.bwd.add(g, self.W0, g_first)
                self.bwd.slide(d, gs, self.W0)
        else:
            self.bwd.add(g, self.W0, g_first)
        sq = lambda t: t.pow(2).sum(1)                        # (L, n, P) -> (L, P) squared norms
        acc = torch.cumsum(self.branch * c_fwd, dim=0)       # (L, n, P) Σ_{k≤ℓ} branch·(2)_k
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
