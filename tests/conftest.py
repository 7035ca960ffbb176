"""Shared fixtures: small synthetic runs written in the real run format (dynamics.store.RunWriter)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dynamics.config import RunConfig
from dynamics.store import NETWORK_LAYER, RunWriter

DEPTH, STEPS = 4, (0, 10, 20)


def write_synthetic_runs(root: Path) -> list[str]:
    """Two complete runs (widths 64 and 128, depth 4): h_sq, g_sq on layers 0..4 at steps 0, 10, 20 and
    the loss (layer −1) at every step 0..20. Values are smooth in τ and step, so curves are visible."""
    ids = []
    for k, width in enumerate((64, 128)):
        run_id = f"w{width}-d{DEPTH}"
        w = RunWriter(root / run_id, {"run_id": run_id, "kind": "finite",
                                      "config": RunConfig(width=width, depth=DEPTH).to_dict()})
        layers = np.arange(DEPTH + 1)
        for step in STEPS:
            tau = layers / DEPTH
            w.add_metrics(step, layers, "h_sq", 1.0 + tau * (1 + 0.02 * step) + 0.1 * k)
            w.add_metrics(step, layers, "g_sq", 2.0 - tau + 0.01 * step * (1 + k))
        all_steps = np.arange(STEPS[-1] + 1)
        w.add_metrics(all_steps, NETWORK_LAYER, "loss", np.exp(-0.1 * all_steps) * (1 + 0.2 * k))
        w.finish("complete")
        ids.append(run_id)
    return ids


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    write_synthetic_runs(root)
    return root
