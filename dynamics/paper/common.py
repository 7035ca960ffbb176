"""Helpers shared by the claim builders of `python -m dynamics reproduce`: page paths, writing a points file,
strict JSON for claims.json, reading a per-layer profile of a run, and making (or reusing) a limit run of a
finite run's setting."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..runs import store

CLAIMS_JSON = "claims.json"
LIMIT_PAGE, COUPLING_PAGE, SCALING_PAGE, TRAJ_PAGE = ("pages/3_Limit.py", "pages/4_Coupling.py",
                                                      "pages/5_Scaling.py", "pages/2_Trajectories.py")
RUNS_PAGE = "pages/1_Runs.py"


def save(out: Path, name: str, points: pd.DataFrame) -> str:
    """Write out/points-<name>.parquet atomically; returns the file name."""
    import pyarrow as pa
    file = f"points-{name}.parquet"
    store.write_parquet_atomic(out / file, pa.Table.from_pandas(points, preserve_index=False))
    return file


def clean_json(obj):
    """NaN/inf -> None, numpy scalars -> Python, so claims.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def profile(run: Path, metric: str, step: int, column: str = "value") -> tuple[np.ndarray, np.ndarray]:
    """(τ = layer/depth, value) of a per-layer metric at a step (column 'stderr' for a limit run's MC error)."""
    df = store.read_metrics(run, metrics=[metric], steps=[step])
    df = df[df.layer >= 0].sort_values("layer")
    depth = store.read_meta(run)["config"]["depth"]
    return df.layer.to_numpy() / depth, df[column].to_numpy(float)


def limit(like: Path, out: Path, grid: int, particles: int, coupling: str, device: str) -> Path:
    """The limit run of `like` on a K = grid depth grid, reused when already complete."""
    from ..limit.run import limit_like
    name = f"{like.name}_limit-{coupling}-K{grid}-M{particles}"
    run = out / name
    if (run / store.RUN_JSON).exists() and store.read_meta(run)["status"] in ("complete", "diverged"):
        return run
    if run.exists():
        import shutil
        shutil.rmtree(run)
    return limit_like(like, out, grid=grid, particles=particles, coupling=coupling, device=device,
                      replicas=4, name=name)
