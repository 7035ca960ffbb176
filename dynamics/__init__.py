"""dynamics: train depth-μP ResNets, record per-layer feature and gradient trajectories, and compare them
with the infinite-width / infinite-depth limit (arXiv 2512.21075).

    from dynamics import RunConfig
    from dynamics.train import train
    train(RunConfig(width=256, depth=16, steps=100), "runs/my-run")

Heavy parts (torch) load on first use, so `import dynamics.store` or `dynamics.metrics` stays light for the
dashboard.

Layout: the core (config, model, data, train, probes, metrics, the CLI) sits here; `limit/` solves the
infinite-width / infinite-depth limit; `runs/` is where runs come from and go to (the run format, importers,
the recorder); `sweep/` runs grids of them; `paper/` holds the paper's experiments, fits and `reproduce`;
`figures/` turns tidy frames into Plotly figures.
"""
from __future__ import annotations

import importlib

from .config import ConfigError, RunConfig
from .metrics import METRICS

__all__ = ["RunConfig", "ConfigError", "METRICS", "ResNet", "scales",
           "read_meta", "read_metrics", "read_kernels", "read_neurons", "list_runs", "RunFormatError", "catalog",
           "record", "solve_limit"]

_LAZY = {"ResNet": "model", "scales": "model",
         "read_meta": "runs.store", "read_metrics": "runs.store", "read_kernels": "runs.store",
         "read_neurons": "runs.store", "list_runs": "runs.store", "RunFormatError": "runs.store",
         "catalog": "sweep.catalog", "record": "runs.recorder", "solve_limit": "limit.nfd"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'dynamics' has no attribute {name!r}")
