"""The residual network of docs/theory.md §1 in multiplier form: every raw weight is N(0, 1) and the scaling lives
in fixed multipliers, so one set of raw weights serves every parametrization.

    h_0 = U x/√d ;  h_ℓ = h_{ℓ−1} + branch · W_ℓ φ(h_{ℓ−1})/√n ;  f = vᵀ φ(h_L) · readout

`scales(cfg, d)` is the one place the parametrization table lives. `ResNet.forward(x, trace=True)` also
returns the features h_0..h_L (and the inner pre-activations a_ℓ of two-layer blocks) for the probes.
`backward="decoupled"` routes the backward pass of every hidden matmul through W̃(0) + ΔW (the paper's
independent backward initialisation) with the custom autograd function `_DecoupledMatmul`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import RunConfig
from .activations import phi

__all__ = ["Scales", "scales", "ResNet", "decoupled_matmul", "sgd_step"]


@dataclass(frozen=True)
class Scales:
    input: float          # h_0 = U x · input
    hidden: float         # W u · hidden  (1/√n)
    branch: float | None  # residual branch multiplier; None = no skip connection ("plain")
    readout: float        # f = vᵀφ(h_L) · readout
    lr: float             # raw SGD learning rate shared by every trained group


def scales(cfg: RunConfig, d: int) -> Scales:
    """docs/theory.md §1's parametrization table.

    depth-mup: branch β/√L, readout 1/(γ0 n), raw LR η γ0² n;  mup: branch β;  plain: no skip;
    sp: branch β, readout 1/√n, raw LR η.
    """
    n, L = cfg.width, cfg.depth
    branch = {"depth-mup": cfg.beta / math.sqrt(L), "mup": cfg.beta, "plain": None, "sp": cfg.beta}[cfg.param]
    if cfg.param == "sp":
        return Scales(1 / math.sqrt(d), 1 / math.sqrt(n), branch, 1 / math.sqrt(n), cfg.lr)
    return Scales(1 / math.sqrt(d), 1 / math.sqrt(n), branch, 1 / (cfg.gamma0 * n), cfg.lr * cfg.gamma0 ** 2 * n)


class _DecoupledMatmul(torch.autograd.Function):
    """z = u Wᵀ · s forward; backward sends grad_u = grad_z (W + D) · s with D = W̃(0) − W(0), so the
    backward matrix is W̃(0) + ΔW; the weight gradient grad_zᵀ u · s is the ordinary one."""

    @staticmethod
    def forward(ctx, u, W, D, s):
        ctx.save_for_backward(u, W, D)
        ctx.s = s
        return (u @ W.T) * s

    @staticmethod
    def backward(ctx, grad_z):
        u, W, D = ctx.saved_tensors
        grad_u = (grad_z @ (W + D)) * ctx.s if ctx.needs_input_grad[0] else None
        grad_W = (grad_z.T @ u) * ctx.s if ctx.needs_input_grad[1] else None
        return grad_u, grad_W, None, None


def decoupled_matmul(u: torch.Tensor, W: torch.Tensor, D: torch.Tensor, s: float) -> torch.Tensor:
    """u (B, n) -> (B, n): forward u Wᵀ s, backward through W + D (see _DecoupledMatmul)."""
    return _DecoupledMatmul.apply(u, W, D, s)


class ResNet(nn.Module):
    """Raw weights U (n, d), W (L, n, n) [and W2 (L, n, n) for two-layer blocks], v (n, C), all N(0, 1).

    For two-layer blocks `W` is the first inner layer (a_ℓ = W_ℓ φ(h_{ℓ−1})/√n) and `W2` the second.
    """

    def __init__(self, cfg: RunConfig, d: int, n_out: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        n, L = cfg.width, cfg.depth
        self.cfg, self.d, self.n_out = cfg, d, n_out
        self.s = scales(cfg, d)

        def draw(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

        # draw order is fixed (U, W, W2, v, then W̃) so a decoupled twin shares the reused run's init
        self.U = nn.Parameter(draw(n, d))
        self.W = nn.Parameter(draw(L, n, n))
        self.W2 = nn.Parameter(draw(L, n, n)) if cfg.block == 2 else None
        self.v = nn.Parameter(draw(n, n_out))
        self.decoupled = cfg.backward == "decoupled"
        if self.decoupled:
            self.register_buffer("D", draw(L, n, n) - self.W.detach())
            if cfg.block == 2:
                self.register_buffer("D2", draw(L, n, n) - self.W2.detach())
        groups = {"input": [self.U], "hidden": [self.W] + ([self.W2] if self.W2 is not None else []),
                  "readout": [self.v]}
        for g, params in groups.items():
            for p in params:
                p.requires_grad_(g in cfg.trained)

    def param_groups(self) -> list[dict]:
        """SGD groups with raw LRs; the first inner layer of two-layer blocks gets × L^α (inner_lr_exponent)."""
        cfg, lr = self.cfg, self.s.lr
        out = []
        if "input" in cfg.trained:
            out.append({"params": [self.U], "lr": lr, "name": "input"})
        if "hidden" in cfg.trained:
            if self.W2 is None:
                out.append({"params": [self.W], "lr": lr, "name": "hidden"})
            else:
                out.append({"params": [self.W], "lr": lr * cfg.depth ** cfg.inner_lr_exponent, "name": "inner1"})
                out.append({"params": [self.W2], "lr": lr, "name": "inner2"})
        if "readout" in cfg.trained:
            out.append({"params": [self.v], "lr": lr, "name": "readout"})
        return out

    def _matmul(self, u: torch.Tensor, W: torch.Tensor, D: torch.Tensor | None) -> torch.Tensor:
        if D is not None:
            return decoupled_matmul(u, W, D, self.s.hidden)
        return (u @ W.T) * self.s.hidden

    def forward(self, x: torch.Tensor, trace: bool = False):
        """x (B, d) -> f (B, C); with trace=True also (hs, as): lists of (B, n) tensors in the graph.

        With trace=True, h_0 is made a leaf that requires grad so ∂f/∂h_ℓ exists even when U is frozen.
        """
        act = self.cfg.act
        h = (x @ self.U.T) * self.s.input  # (B, n)
        if trace:
            h = h.detach().requires_grad_(True)
        hs, a_s = [h], []
        # unbind once: its backward stacks the L gradients, where indexing W[ℓ] would add L full-size zeros
        W1s, W2s = self.W.unbind(0), (self.W2.unbind(0) if self.W2 is not None else None)
        D1s = self.D.unbind(0) if self.decoupled else [None] * self.cfg.depth
        D2s = self.D2.unbind(0) if self.decoupled and W2s is not None else [None] * self.cfg.depth
        for layer in range(self.cfg.depth):
            z = self._matmul(phi(h, act), W1s[layer], D1s[layer])  # (B, n)
            if W2s is not None:
                a_s.append(z)
                z = self._matmul(phi(z, act), W2s[layer], D2s[layer])
            h = z if self.s.branch is None else h + self.s.branch * z
            hs.append(h)
        feat = phi(h, act) if self.cfg.readout == "phi" else h
        f = (feat @ self.v) * self.s.readout  # (B, C)
        return (f, hs, a_s) if trace else f


@torch.no_grad()
def sgd_step(groups: list[dict]) -> None:
    """Plain SGD, θ ← θ − lr·∇θ, per group of ResNet.param_groups(); clears the gradients.

    Written out because torch.optim's first use imports torch._dynamo (seconds per process), which would
    dominate short runs and sweeps; the tests check it against torch.optim.SGD.
    """
    for group in groups:
        for p in group["params"]:
            if p.grad is not None:
                p.add_(p.grad, alpha=-group["lr"])
                p.grad = None
