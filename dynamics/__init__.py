"""dynamics: train depth-μP ResNets, record per-layer feature and gradient trajectories, and compare them
with the infinite-width / infinite-depth limit (arXiv 2512.21075).

    from dynamics import RunConfig
    from dynamics.train import train
    train(RunConfig(width=256, depth=16, steps=100), "runs/my-run")

Heavy parts (torch) load on first use, so `import dynamics.store` or `dynamics.metrics` stays light for the
dashboard.
"""
from __future__ import annotations

import importlib

from .config import ConfigError, RunConfig
from .metrics import METRICS

__all__ = ["RunConfig", "ConfigError", "METRICS", "ResNet", "scales",
           "read_meta", "read_metrics", "read_kernels", "read_neurons", "list_runs", "RunFormatError", "catalog",
           "record", "solve_limit"]

_LAZY = {"ResNet": "model", "scales": "model",
         "read_meta": "store", "read_metrics": "store", "read_kernels": "store", "read_neurons": "store",
         "list_runs": "store", "RunFormatError": "store", "catalog": "sweep_catalog",
         "record": "recorder", "solve_limit": "limit.nfd"}  # the module is recorder.py, so dynamics.record stays the function


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'dynamics' has no attribute {name!r}")
