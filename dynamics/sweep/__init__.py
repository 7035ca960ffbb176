"""Grids of runs: `plan` (expand a grid into tasks, the manifest, resume, the CLI), `execute` (one task and
the local or Dask backends that run them) and `catalog` (DuckDB over every run's Parquet, `dynamics.catalog`).

    from dynamics.sweep import plan_sweep, run_sweep
"""
from __future__ import annotations

from .execute import DONE, MANIFEST
from .plan import Sweep, SweepError, Task, parse_grid, plan_sweep, register, run_sweep, run_task

__all__ = ["SweepError", "Task", "Sweep", "parse_grid", "plan_sweep", "run_sweep", "run_task", "register",
           "MANIFEST", "DONE"]
