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

from .coupling_tracker import CouplingTracker  # noqa: F401  (the §5 coupling at record steps, for the trainer)
from .activations import phi  # noqa: F401  (re-exported for the recorder)
from .metrics import METRICS

QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


@dataclass
class ProbeState:
    h: torch.Tensor             # (L+1, P, n) features h_0..h_L
    g_hat: torch.Tensor         # (L+1, P, n) normalised gradients ĝ_0..ĝ_L
    phi_h: torch.Tensor         # (L+1, P, n) φ(h_ℓ)
    a: torch.Tensor | None      # (L, P, n) inner pre-activations of two-layer blocks
    f: torch.Tensor             # (P, C) outputs
    a_learn: torch.Tensor | None = None  # (L,) two-layer blocks: the inner layer's own learning (inner_learning)


def probe_pass(model, x: torch.Tensor) -> ProbeState:
    """Forward the probes with trace=True and backpropagate the first output coordinate to every h_ℓ."""
    with torch.enable_grad():
        f, hs, a_s = model(x, trace=True)
        grads = torch.autograd.grad(f[:, 0].sum(), hs)
    h = torch.stack([t.detach() for t in hs])  # (L+1, P, n)
    g_hat = torch.stack(grads) / model.s.readout  # (L+1, P, n)
    a = torch.stack([t.detach() for t in a_s]) if a_s else None
    return ProbeState(h=h, g_hat=g_hat, phi_h=phi(h, model.cfg.act), a=a, f=f.detach())


@torch.no_grad()
def inner_learning(s: ProbeState, W1: torch.Tensor, W1_0: torch.Tensor, hidden: float) -> torch.Tensor:
    """a_learn per block ℓ = 1..L: mean over probes of |ΔW_ℓ,1·φ(h_ℓ−1)/√n|²/n, ΔW_ℓ,1 = W_ℓ,1(t) − W_ℓ,1(0):
    the update-driven part of the inner pre-activation a_ℓ = W_ℓ,1 φ(h_ℓ−1)/√n (docs/theory.md §2, §7); a_move
    also holds W_ℓ,1(0)·Δφ(h_ℓ−1)/√n, which the input's own movement drives. `hidden` is the model's 1/√n
    multiplier; W1, W1_0 (L, n, n) are the weights at the probe pass's step and at initialisation."""
    u = s.phi_h[:-1]                                          # (L, P, n): φ(h_ℓ−1), the inputs of blocks 1..L
    return _msq(torch.bmm(u, (W1.detach() - W1_0).transpose(1, 2)) * hidden)


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
    "a_learn": lambda s, s0, L: s.a_learn,
}
assert set(FUNCTIONS) <= set(METRICS)


def step_change(s: ProbeState, prev: ProbeState) -> torch.Tensor:
    """h_step: mean over probes of |h_ℓ(t) − h_ℓ(t′)|²/n since the previous recorded state (the per-step change
    of the μP coordinate check when every step is recorded)."""
    return _msq(s.h - prev.h)


def layer_metrics(s: ProbeState, s0: ProbeState, depth: int,
                  prev: ProbeState | None = None) -> dict[str, tuple[torch.Tensor, int]]:
    """Every per-layer metric that applies: name -> (values over layers, first layer index); h_step when the
    previous recorded state `prev` is given (none at the first record)."""
    out = {}
    for name, fn in FUNCTIONS.items():
        values = fn(s, s0, depth)
        if values is not None:
            out[name] = (values, 0 if METRICS[name][1] == "0..L" else 1)
    if prev is not None:
        out["h_step"] = (step_change(s, prev), 0)
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
