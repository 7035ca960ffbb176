"""The limit engine: width-limit kernels at initialisation (docs/theory.md §3; kernels.py) and the training-time
particle solver (docs/theory.md §6; nfd.py, written as a run by run.py).

The package itself is light (the CLI registers `limit` without loading torch); the solver's and the
kernels' names load their modules on first use (PEP 562).
"""
from __future__ import annotations

import importlib

from dynamics.config import ConfigError

COUPLINGS = ("full", "none")


class LimitError(ConfigError):
    """The limit engine does not cover a setting, or it would not fit; the message says what to change."""


_LAZY = {"LimitResult": "nfd", "solve_limit": "nfd", "continuum_kernels": "kernels", "dual_V": "kernels",
         "dual_Vprime": "kernels", "init_kernels": "kernels", "phi": "kernels", "phi_prime": "kernels",
         "sde_particles": "kernels"}
__all__ = ["COUPLINGS", "LimitError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"dynamics.limit.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
