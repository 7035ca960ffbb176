"""Two-layer blocks in the limit: the inner layer's own feature learning a_learn and its whole movement a_move
against depth for several inner-LR exponents α, from the limit solver (grid K) and from finite nets (depth L), in
one table, with the slope of log a_learn vs log K per α (power counting: 2α − 1).

    python benchmarks/limit_two_layer.py [--particles 2048] [--width 256] [--seeds 3]

Setting: tanh, 8 inputs (the first 4 are the probes), full batch, η = 0.5, 4 steps, depth-μP, coupling full /
reused nets.
Printed: a_learn and a_move at step 4, mean over layers; limit ± its Monte-Carlo stderr, finite ± the seed
stderr. a_move counts every change of a_ℓ, including W1(0)·(φ(h(t)) − φ(h(0)))/√n from the block's moving input;
a_learn is ΔW1's share alone, the part that scales with depth (like K^(2α−1)).
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


def _mean(metrics, name: str) -> tuple[float, float]:
    m = metrics[(metrics.metric == name) & (metrics.step == BASE.steps)]
    return float(m.value.mean()), float(m.stderr.mean()) if "stderr" in m else 0.0


def _pm(v: float, se: float) -> str:
    return f"{v:.4g} ± {se:.2g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=2048)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = ("a_learn", "a_move")
    print(f"{'alpha':>5} {'K or L':>6} " + " ".join(f"{'limit ' + n:>20} {'finite ' + n:>20}" for n in names))
    with tempfile.TemporaryDirectory() as d:
        for alpha in ALPHAS:
            cfg = dataclasses.replace(BASE, width=args.width, inner_lr_exponent=alpha)
            learn = []
            for K in DEPTHS:
                lim = solve_limit(cfg, grid=K, particles=args.particles, seed=0).metrics
                learn.append(_mean(lim, "a_learn")[0])
                fin = {n: "" for n in names}
                if K in FINITE_DEPTHS:
                    runs = [store.read_metrics(train(dataclasses.replace(cfg, depth=K, seed=s),
                                                     Path(d) / f"{alpha}-{K}-{s}", progress=False))
                            for s in range(args.seeds)]
                    for n in names:
                        vals = [_mean(r, n)[0] for r in runs]
                        fin[n] = _pm(np.mean(vals), np.std(vals, ddof=1) / math.sqrt(len(vals)))
                print(f"{alpha:>5} {K:>6} " + " ".join(f"{_pm(*_mean(lim, n)):>20} {fin[n]:>20}" for n in names),
                      flush=True)
            slope = np.polyfit(np.log(DEPTHS), np.log(learn), 1)[0]
            print(f"alpha {alpha}: slope of log a_learn (limit) vs log K = {slope:+.3f} (power counting "
                  f"{2 * alpha - 1:+.1f})", flush=True)


if __name__ == "__main__":
    main()
