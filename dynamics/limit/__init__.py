"""The limit engine: width-limit kernels at initialisation (kernels.py) and the training-time particle solver
(nfd.py, with sampler.py, readout.py, records.py), written as a run of kind `limit` by run.py.

What it covers: one- and two-layer blocks (two-layer: a = W1 φ(h)/√n, inner-LR exponent α on W1, `a_move`
recorded), MSE or cross-entropy, any number of outputs C (v is a C-vector per particle; the per-layer metrics use
ĝ of the first output, as finite runs do), any task `dynamics.data.load_task` reads (classification tasks give
one-hot targets and labels), param depth-mup / mup / plain, readout phi / linear, any trained groups, every
activation, coupling full (the exact width limit of reused backprop) or none (the limit of the decoupled net),
on CPU or CUDA, in float64 (default) or float32. Refused, one line each: param sp; more than MAX_INPUTS = 256
distinct inputs; histories that would not fit in memory.

How to call:

    from dynamics.limit.run import limit_like            # a finite run's setting -> a limit run beside it
    run_dir = limit_like(Path("runs/my-run"), Path("runs"), particles=1024, grid=None, coupling=None,
                         device="auto", dtype="float64")  # coupling None: reused -> full, decoupled -> none

    from dynamics.limit import solve_limit               # frames in memory (metrics carry `stderr`)
    res = solve_limit(cfg, particles=1024, coupling="full", replicas=8)   # res.metrics, res.kernels, res.f

Cost grows like M (T·P)² K (M particles, T = steps + 1, P inputs, K grid blocks; twice for two-layer blocks);
small particle counts (256-1024) solve the usual smoke settings in seconds.

The package itself is light (the CLI registers `limit` without loading torch); the solver's and the
kernels' names load their modules on first use (PEP 562).
"""
from __future__ import annotations

import importlib
from os import PathLike

from dynamics.config import ConfigError, RunConfig

COUPLINGS = ("full", "none")


class LimitError(ConfigError):
    """The limit engine does not cover a setting, or it would not fit; the message says what to change."""


def like_config(meta: dict, like: str | PathLike) -> RunConfig:
    """The RunConfig of the --like run (its run.json `meta`); LimitError when it cannot be read back."""
    try:
        return RunConfig.from_dict(meta["config"])
    except (ConfigError, TypeError) as e:
        raise LimitError(f"{like}: its config cannot be read back ({e}); --like needs a run made by "
                         f"`python -m dynamics train`") from None


_LAZY = {"LimitResult": "nfd", "solve_limit": "nfd", "continuum_kernels": "kernels", "dual_V": "kernels",
         "dual_Vprime": "kernels", "init_kernels": "kernels", "phi": "kernels", "phi_prime": "kernels",
         "sde_particles": "kernels"}
__all__ = ["COUPLINGS", "LimitError", "like_config", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"dynamics.limit.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
