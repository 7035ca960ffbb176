"""The activation φ of docs/theory.md §1 and its derivative φ', one definition for the network (model.py), the
probes (probes.py) and the limit engine (dynamics.limit: its kernels' quadrature and the particle solver).

    from dynamics.activations import phi, phi_prime
    phi(x, "tanh"), phi_prime(x, "relu")     # elementwise, any shape, dtype and device of x

Choices are `dynamics.config.ACTIVATIONS`: linear, relu, abs, tanh, gelu (the exact x·Φ(x)).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .config import ACTIVATIONS

__all__ = ["phi", "phi_prime", "phi_and_prime", "check_choice"]

_SQRT2 = math.sqrt(2.0)


def phi(x: Tensor, act: str) -> Tensor:
    """φ(x): linear, relu, abs, tanh, gelu (exact form x·Φ(x), Φ the standard normal CDF)."""
    check_choice("act", act, ACTIVATIONS)
    if act == "linear":
        return x
    if act == "relu":
        return x.clamp(min=0)
    if act == "abs":
        return x.abs()
    if act == "tanh":
        return torch.tanh(x)
    return 0.5 * x * (1.0 + torch.erf(x / _SQRT2))


def phi_prime(x: Tensor, act: str) -> Tensor:
    """φ'(x), with the conventions relu'(0) = 0 and abs'(0) = 0 (what autograd uses)."""
    check_choice("act", act, ACTIVATIONS)
    if act == "linear":
        return torch.ones_like(x)
    if act == "relu":
        return (x > 0).to(x.dtype)
    if act == "abs":
        return torch.sign(x)
    if act == "tanh":
        return 1.0 - torch.tanh(x) ** 2
    return 0.5 * (1.0 + torch.erf(x / _SQRT2)) + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def phi_and_prime(x: Tensor, act: str) -> tuple[Tensor, Tensor]:
    """(φ(x), φ'(x)) sharing the expensive transcendental (the limit kernels' quadrature inner loop)."""
    if act == "tanh":
        t = torch.tanh(x)
        return t, 1.0 - t * t
    if act == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(x / _SQRT2))
        return x * cdf, cdf + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return phi(x, act), phi_prime(x, act)


def check_choice(name: str, value, allowed) -> None:
    """ValueError naming the field and the allowed values when `value` is not one of them."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(str, allowed))}")
