"""Shared fixtures: small synthetic runs written in the real run format (dynamics.runs.store.RunWriter).

`runs_dir`: two finite runs (the Runs/Trajectories/Coupling pages); `limit_dir`: those two plus a limit run
(kind "limit", metrics with a Monte-Carlo `stderr` column) made `--like` w64-d4; `scaling_dir`: a grid of
widths × depths and of learning rates × depths with a limit run, for the Limit and Scaling pages.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from dynamics.config import RunConfig
from dynamics.runs.store import NEURONS, NETWORK_LAYER, RunWriter

# A local dashboard keeps uploads in ~/.dynamics/uploads unless $DYNAMICS_UPLOAD_DIR says otherwise: tests (and
# the servers they start, which inherit the environment) never write to the home folder.
os.environ.setdefault("DYNAMICS_UPLOAD_DIR", tempfile.mkdtemp(prefix="dynamics-test-uploads-"))

DEPTH, STEPS = 4, (0, 10, 20)
QUANTILES = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99], dtype=np.float32)
COUPLING = ("coupling_fwd", "coupling_bwd", "coupling_fwd_frac", "coupling_bwd_frac", "coupling_acc")


def _z(q: np.ndarray) -> np.ndarray:
    """Standard-normal quantiles (a rational approximation is plenty for drawing fans)."""
    from statistics import NormalDist
    return np.array([NormalDist().inv_cdf(float(p)) for p in q])


def _neurons(w: RunWriter, depth: int, steps, probes: int = 2, spread: float = 1.0) -> None:
    z = _z(QUANTILES)
    for step in steps:
        for layer in range(depth + 1):
            sd = spread * np.sqrt(np.exp(0.5 * layer / depth)) * (1 + 0.01 * step)
            for probe in range(probes):
                w.add(NEURONS, step=step, layer=layer, probe=probe, quantile=QUANTILES, value=sd * z + 0.05 * probe)


def _finite(root: Path, run_id: str, cfg: RunConfig, *, offset: float = 0.0, coupling: bool = True,
            steps=STEPS, loss_scale: float = 1.0, status: str = "complete") -> str:
    """h_sq = e^{τ/2}·(1 + 0.02·step) + offset, g_sq, coupling metrics with chance levels, neurons, loss."""
    w = RunWriter(root / run_id, {"run_id": run_id, "kind": "finite", "config": cfg.to_dict()})
    L = cfg.depth
    layers, blocks = np.arange(L + 1), np.arange(1, L + 1)
    for step in steps:
        tau = layers / L
        w.add_metrics(step, layers, "h_sq", np.exp(tau / 2) * (1 + 0.02 * step) + offset)
        w.add_metrics(step, layers, "g_sq", 0.5 * np.exp((1 - tau) / 2) + 0.01 * step + offset)
        if coupling:
            tb = blocks / L
            for k, m in enumerate(COUPLING):
                w.add_metrics(step, blocks, m, (0.1 + k * 0.05) * (1 + tb) * (1 + 0.05 * step) / cfg.width * 64)
            w.add_metrics(step, blocks, "coupling_fwd_chance", np.full(L, 8 / cfg.width))
            w.add_metrics(step, blocks, "coupling_bwd_chance", np.full(L, 8 / cfg.width))
    all_steps = np.arange(steps[-1] + 1)
    w.add_metrics(all_steps, NETWORK_LAYER, "loss", loss_scale * np.exp(-0.1 * all_steps) * (1 + offset))
    _neurons(w, L, steps)
    w.finish(status)
    return run_id


def write_synthetic_runs(root: Path) -> list[str]:
    """Two complete runs (widths 64 and 128, depth 4): h_sq, g_sq on layers 0..4 at steps 0, 10, 20, the
    coupling metrics and chance levels on blocks 1..4, neuron quantiles, and the loss (layer −1) at every
    step 0..20. Values are smooth in τ and step, so curves are visible."""
    return [_finite(root, f"w{width}-d{DEPTH}", RunConfig(width=width, depth=DEPTH), offset=0.1 * k)
            for k, width in enumerate((64, 128))]


def write_limit_run(root: Path, like: str = "w64-d4", grid: int = 16, steps=STEPS) -> str:
    """A limit run (kind "limit") on a depth grid of `grid` blocks: h_sq, g_sq = the fixtures' profiles
    without offset, with a Monte-Carlo stderr column, and neuron quantiles; run.json names its twin."""
    run_id = f"limit-{like}"
    cfg = RunConfig(width=64, depth=grid).to_dict()
    w = RunWriter(root / run_id, {"run_id": run_id, "kind": "limit", "like": like, "config": cfg}, stderr=True)
    layers = np.arange(grid + 1)
    for step in steps:
        tau = layers / grid
        w.add_metrics(step, layers, "h_sq", np.exp(tau / 2) * (1 + 0.02 * step), stderr=np.full(grid + 1, 0.02))
        w.add_metrics(step, layers, "g_sq", 0.5 * np.exp((1 - tau) / 2) + 0.01 * step,
                      stderr=np.full(grid + 1, 0.02))
    _neurons(w, grid, steps, spread=0.9)
    w.finish("complete")
    return run_id


def write_scaling_runs(root: Path) -> None:
    """Widths 64..512 × depths 4, 8 (errors ≈ 3/n + 0.1/L against the limit run), and lr 0.1..2 × depths
    4, 8 at width 64 and batch 32 (a setting of their own; the best lr is 0.5 at both depths; lr 2 diverges
    at depth 8)."""
    for width in (64, 128, 256, 512):
        for depth in (4, 8):
            _finite(root, f"n{width}-L{depth}", RunConfig(width=width, depth=depth, lr=0.5),
                    offset=3 / width + 0.1 / depth, coupling=False, steps=(0, 10))
    for depth in (4, 8):
        for lr in (0.1, 0.5, 2.0):
            diverged = lr == 2.0 and depth == 8
            _finite(root, f"lr{lr}-L{depth}", RunConfig(width=64, depth=depth, lr=lr, batch=32), coupling=False,
                    steps=(0, 10), loss_scale=1 + abs(np.log(lr / 0.5)), status="diverged" if diverged else "complete")
    write_limit_run(root, like="n512-L8", grid=16, steps=(0, 10))


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    write_synthetic_runs(root)
    return root


@pytest.fixture
def limit_dir(runs_dir: Path) -> Path:
    write_limit_run(runs_dir)
    return runs_dir


@pytest.fixture
def scaling_dir(tmp_path: Path) -> Path:
    root = tmp_path / "scaling"
    write_scaling_runs(root)
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small batched matmuls (the limit solver's tests): one thread is faster on a shared 2-core machine, and
    runs are reproducible. Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch  # only the modules that ask for it pay the import
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
