"""The limit's readout side: the loss on the centred outputs and χ = −∂loss/∂f, per replica, input and output.

    mse:  loss = Σ_μ∈batch ½‖f_μ − y_μ‖² / B,          χ_μc = (y_μc − f_μc) / B
    xent: loss = Σ_μ∈batch −log softmax(f_μ)_{label μ} / B,  χ_μc = (onehot_μc − softmax(f_μ)_c) / B

with B the batch size and χ = 0 off the batch (`mask`). These are the trainer's losses (dynamics.train.loss_fn:
mean ½‖f − y‖², F.cross_entropy) and χ is minus their gradient in f, so χ enters every SGD drift with the sign
of the finite network's update. With one-hot targets y, xent's χ at f = 0 is (onehot − 1/C)/B.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["loss_and_chi", "mean_loss"]


def loss_and_chi(loss: str, f: Tensor, y: Tensor, mask: Tensor, batch: int) -> tuple[Tensor, Tensor]:
    """f (R, P, C) outputs, y (P, C) targets (one-hot for xent), mask (P,) 1 on the batch ->
    (loss (R,), χ (R, P, C)) as in the module docstring."""
    w = mask[:, None] / batch                                            # (P, 1)
    if loss == "xent":
        logp = torch.log_softmax(f, dim=-1)
        return -(y * logp * w).sum((1, 2)), (y - logp.exp()) * w
    return 0.5 * ((f - y) ** 2 * w).sum((1, 2)), (y - f) * w


def mean_loss(loss: str, f: Tensor, y: Tensor) -> Tensor:
    """The loss averaged over all P inputs of f (R, P, C): the probe loss, per replica (R,)."""
    P = f.shape[1]
    return loss_and_chi(loss, f, y, torch.ones(P, dtype=f.dtype, device=f.device), P)[0]
