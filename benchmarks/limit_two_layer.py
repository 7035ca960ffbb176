"""Two-layer blocks in the limit: inner feature movement a_move against depth for several inner-LR exponents α,
from the limit solver (grid K) and from finite nets (depth L), in one table.

    python benchmarks/limit_two_layer.py [--particles 2048] [--width 256] [--seeds 3]

Setting: tanh, 8 inputs (the first 4 are the probes), full batch, η = 0.5, 4 steps, depth-μP, coupling full /
reused nets.
Printed: a_move at step 4, mean over layers; limit ± its Monte-Carlo stderr, finite ± the seed stderr.
a_move counts every change of a_ℓ, including W1(0)·(φ(h(t)) − φ(h(0)))/√n from the block's moving input; only
ΔW1's share scales with depth (like K^(2α−1)).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dynamics.config import RunConfig  # noqa: E402
from dynamics.limit import solve_limit  # noqa: E402
from dynamics.runs import store  # noqa: E402
from dynamics.train import train  # noqa: E402

BASE = RunConfig(width=256, depth=4, block=2, act="tanh", train_size=8, probes=4, batch="full", steps=4,
                 record_every=4, test_size=0, lr=0.5, record_coupling="off")
DEPTHS, FINITE_DEPTHS, ALPHAS = (4, 8, 16, 32), (4, 32), (0.0, 0.5, 1.0)


def _a_move(metrics) -> tuple[float, float]:
    m = metrics[(metrics.metric == "a_move") & (metrics.step == BASE.steps)]
    return float(m.value.mean()), float(m.stderr.mean()) if "stderr" in m else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=2048)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'alpha':>5} {'K or L':>6} {'limit a_move':>18} {'finite a_move':>18}")
    with tempfile.TemporaryDirectory() as d:
        for alpha in ALPHAS:
            cfg = dataclasses.replace(BASE, width=args.width, inner_lr_exponent=alpha)
            for K in DEPTHS:
                v, se = _a_move(solve_limit(cfg, grid=K, particles=args.particles, seed=0).metrics)
                fin = ""
                if K in FINITE_DEPTHS:
                    vals = [_a_move(store.read_metrics(train(dataclasses.replace(cfg, depth=K, seed=s),
                                                             Path(d) / f"{alpha}-{K}-{s}")))[0]
                            for s in range(args.seeds)]
                    fin = f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1) / math.sqrt(len(vals)):.4f}"
                print(f"{alpha:>5} {K:>6} {f'{v:.4f} ± {se:.4f}':>18} {fin:>18}", flush=True)


if __name__ == "__main__":
    main()
