"""Example factories for `python -m dynamics coordcheck --model examples/coordcheck_models.py:NAME`.

A factory is called as NAME(width, depth) after the check has seeded torch, numpy and random, and returns
what dynamics.record needs (the model, its residual blocks, a probe batch; optionally act, g_scale, output)
plus `step`, one step of an ordinary training loop (docs/coordcheck.md). Here:

- `mlp`: a plain MLP (no skips) in μP: N(0, 1) weights with multipliers 1/√d, 1/√n, and a 1/n readout,
  SGD at learning rate η·n; `mlp_sp` is the same network in the standard parametrization (readout 1/√n,
  learning rate η), which a check over widths flags (its features stop moving as n grows).
- `cnn`: a small residual CNN in depth-μP: `depth` blocks h + conv(relu(h))/√L on `width` channels of 8×8 maps,
  global average pooling and a 1/C readout, SGD at η·C; one fixed batch of random images against a random
  teacher. The recorder counts C·H·W coordinates per feature map (dynamics.runs.recorder), so ĝ = C·H·W·∂f/∂h
  is O(1) under this readout. `cnn_mup` drops the 1/√L (width-only μP), which a check over depths flags.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

D_IN, BATCH, PROBES, LR = 16, 64, 8, 0.5


class _Dense(nn.Module):
    """One hidden layer h -> W relu(h)/√n with W ~ N(0, 1)."""

    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width, width))

    def forward(self, h):
        return F.relu(h) @ self.weight.T / math.sqrt(h.shape[-1])


class MLP(nn.Module):
    def __init__(self, width: int, depth: int, readout: float):
        super().__init__()
        self.inp = nn.Parameter(torch.randn(width, D_IN))
        self.blocks = nn.ModuleList(_Dense(width) for _ in range(depth))
        self.out = nn.Parameter(torch.randn(1, width))
        self.readout = readout

    def forward(self, x):
        h = x @ self.inp.T / math.sqrt(D_IN)
        for block in self.blocks:
            h = block(h)
        return F.relu(h) @ self.out.T * self.readout


def _task(d_in_shape: tuple[int, ...]):
    """A fixed batch and a random linear teacher's targets, standardised."""
    x = torch.randn(BATCH, *d_in_shape)
    y = x.flatten(1) @ torch.randn(x[0].numel(), 1) / math.sqrt(x[0].numel())
    return x, (y - y.mean()) / y.std()


def _sgd_step(model: nn.Module, opt: torch.optim.Optimizer, x, y):
    def step():
        opt.zero_grad()
        loss = 0.5 * (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        return loss.item()
    return step


def mlp(width: int, depth: int) -> dict:
    """μP MLP: readout 1/n, SGD learning rate η·n."""
    model = MLP(width, depth, readout=1 / width)
    x, y = _task((D_IN,))
    opt = torch.optim.SGD(model.parameters(), lr=LR * width)
    return {"model": model, "blocks": list(model.blocks), "probe": x[:PROBES], "act": "relu",
            "step": _sgd_step(model, opt, x, y)}


def mlp_sp(width: int, depth: int) -> dict:
    """The same MLP in the standard parametrization: readout 1/√n, learning rate η; ĝ = √n·∂f/∂h."""
    model = MLP(width, depth, readout=1 / math.sqrt(width))
    x, y = _task((D_IN,))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    return {"model": model, "blocks": list(model.blocks), "probe": x[:PROBES], "act": "relu",
            "g_scale": math.sqrt(width), "step": _sgd_step(model, opt, x, y)}


class _ResBlock(nn.Module):
    """h -> h + branch · conv3x3(relu(h))/√(9C), conv weights N(0, 1)."""

    def __init__(self, channels: int, depth: int, branch: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels, channels, 3, 3))
        self.scale = branch / math.sqrt(9 * channels)

    def forward(self, h):
        return h + F.conv2d(F.relu(h), self.weight, padding=1) * self.scale


class ResCNN(nn.Module):
    def __init__(self, channels: int, depth: int, branch: float):
        super().__init__()
        self.stem = nn.Parameter(torch.randn(channels, 3, 3, 3))
        self.blocks = nn.ModuleList(_ResBlock(channels, depth, branch) for _ in range(depth))
        self.head = nn.Parameter(torch.randn(1, channels))

    def forward(self, x):
        h = F.conv2d(x, self.stem, padding=1) / math.sqrt(27)
        for block in self.blocks:
            h = block(h)
        return h.mean(dim=(2, 3)) @ self.head.T / self.head.shape[1]   # global average pool, μP readout 1/C


def cnn(width: int, depth: int) -> dict:
    """Depth-μP residual CNN on 3×8×8 inputs: `width` channels, `depth` blocks with branch 1/√L, SGD at η·C."""
    return _cnn(width, depth, branch=1 / math.sqrt(depth))


def cnn_mup(width: int, depth: int) -> dict:
    """The same CNN in width-only μP (branch 1): right in width, its features grow with depth."""
    return _cnn(width, depth, branch=1.0)


def _cnn(width: int, depth: int, branch: float) -> dict:
    model = ResCNN(width, depth, branch)
    x, y = _task((3, 8, 8))
    opt = torch.optim.SGD(model.parameters(), lr=LR * width)
    return {"model": model, "blocks": list(model.blocks), "probe": x[:PROBES], "act": "relu",
            "step": _sgd_step(model, opt, x, y)}
