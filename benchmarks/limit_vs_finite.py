"""The limit solver against the finite run it replaces (issue #3), and its convergence in M and K.

    python benchmarks/limit_vs_finite.py [--particles 2048,4096 --grid 8 --inputs 8 --steps 49 --threads 1]

1. Speed: `solve_limit` with M particles on a grid of K blocks against `train` of a width-M, depth-K network
   with the same steps, inputs (full batch of `inputs` = probes) and record steps, coupling recording off
   (the limit does not produce it); target: ratio ≤ 1 at M ≥ 2048 with T·P ≤ 400. The finite run is timed in
   float32 (the trainer's default) and float64 (the solver's precision); median of `repeats`, interleaved.
2. Cost against T: the solver's history grows with T, so a step costs O(M·K·t·P²) and a run O(M·K·T²·P²);
   the finite run is O(M²·K·T·P). Prints wall times and the fitted exponent of each.
3. Convergence in M (THEORY §6): metrics at the last step for growing M with their Monte-Carlo stderr.
4. Convergence in K (depth-μP continuum): the one-step NTK against its closed form for K = 4..64 (O(1/K) to
   3e), then training metrics for K = 4..32; successive differences shrinking by about 2 mean O(1/K).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dynamics.config import RunConfig  # noqa: E402
from dynamics.limit import solve_limit  # noqa: E402
from dynamics.train import train  # noqa: E402


def _time_finite(cfg: RunConfig) -> float:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        train(cfg, Path(d) / "run")
        return time.perf_counter() - t0


def _time_limit(cfg: RunConfig, M: int, replicas: int = 8) -> float:
    t0 = time.perf_counter()
    solve_limit(cfg, particles=M, replicas=replicas, device=cfg.device)
    return time.perf_counter() - t0


def _last(res, name: str, layer: int) -> tuple[float, float]:
    m = res.metrics
    row = m[(m.metric == name) & (m.layer == layer)].sort_values("step").iloc[-1]
    return float(row.value), float(row.stderr)


def speed(a, base: RunConfig) -> None:
    print(f"\n1. speed: grid/depth {a.grid}, {a.inputs} inputs, {a.steps} steps (T·P = {(a.steps + 1) * a.inputs}), "
          f"record_every {base.record_every}, median of {a.repeats}, {torch.get_num_threads()} thread(s)")
    lims = [f"limit R={R}" for R in a.replicas]
    print(f"{'M = width':>10}" + "".join(f"{k + ' s':>14}" for k in lims) + f"{'finite32 s':>12}{'finite64 s':>12}"
          + "".join(f"{f'R={R}: /f32 /f64':>18}" for R in a.replicas))
    for M in a.particles:
        cfg = dataclasses.replace(base, width=M)
        runs = {f"limit R={R}": (lambda R=R: _time_limit(cfg, M, R)) for R in a.replicas}
        runs.update({"f32": lambda: _time_finite(cfg),
                     "f64": lambda: _time_finite(dataclasses.replace(cfg, dtype="float64"))})
        times = {k: [] for k in runs}
        for _ in range(a.repeats):
            for k, fn in runs.items():
                times[k].append(fn())
        t = {k: statistics.median(v) for k, v in times.items()}
        print(f"{M:>10}" + "".join(f"{t[k]:>14.2f}" for k in lims) + f"{t['f32']:>12.2f}{t['f64']:>12.2f}"
              + "".join(f"{t[k] / t['f32']:>10.2f}{t[k] / t['f64']:>8.2f}" for k in lims))
        print(f"RESULT limit_over_finite32_M{M}={t[lims[0]] / t['f32']:.3f}")  # for benchmarks/run_all.py


def cost_vs_T(a, base: RunConfig) -> None:
    M = a.particles[0]
    cfg0 = dataclasses.replace(base, width=M)
    print(f"\n2. cost against T (M = width = {M}, K = {a.grid}, P = {a.inputs}; solver with R = {a.replicas[-1]} "
          f"replicas, so the history T·P stays below M/R and is not capped)")
    print(f"{'T':>6}{'limit s':>10}{'finite32 s':>12}")
    Ts, tl, tf = [], [], []
    for steps in (9, 19, 39, 79):
        cfg = dataclasses.replace(cfg0, steps=steps, record_every=10)
        Ts.append(steps + 1)
        tl.append(_time_limit(cfg, M, a.replicas[-1]))
        tf.append(_time_finite(cfg))
        print(f"{Ts[-1]:>6}{tl[-1]:>10.2f}{tf[-1]:>12.2f}")
    slope = lambda t: math.log(t[-1] / t[-2]) / math.log(Ts[-1] / Ts[-2])  # noqa: E731
    print(f"exponent over the last doubling: limit T^{slope(tl):.2f}, finite T^{slope(tf):.2f}")


def convergence(a) -> None:
    cfg = RunConfig(depth=4, act="tanh", train_size=8, probes=4, batch="full", steps=8, record_every=4,
                    test_size=0, lr=0.5)
    cols = [("loss", -1), ("h_move", cfg.depth), ("g_sq", 0)]
    print(f"\n3. convergence in M (tanh, depth-muP, K = 4, 8 inputs, step {cfg.steps}; value ± stderr)")
    print(f"{'M':>7}" + "".join(f"{f'{n}[{l}]':>22}" for n, l in cols) + f"{'s':>7}")
    for M in (1024, 4096, 16384, 65536):
        t0 = time.perf_counter()
        res = solve_limit(cfg, particles=M, seed=1)
        cells = "".join(f"{'%.4f ± %.4f' % _last(res, n, l):>22}" for n, l in cols)
        print(f"{M:>7}{cells}{time.perf_counter() - t0:>7.1f}")
    print("\n4a. convergence in K, one SGD step (THEORY §4: linear, one input, eta = 1e-4, M = 65536, "
          "coupling full): the solver's (f1 - f0)/eta against 2(1+1/K)^K + (1+1/K)^(K-1) -> 3e")
    print(f"{'K':>5}{'solver':>20}{'closed form':>13}{'K*(3e - closed)':>17}")
    with tempfile.TemporaryDirectory() as d:
        import numpy as np
        np.savez(Path(d) / "one.npz", x=np.random.default_rng(0).standard_normal((1, 8)), y=np.array([1.0]))
        one = RunConfig(act="linear", task=f"file:{Path(d) / 'one.npz'}", train_size=1, probes=1, batch="full",
                        steps=1, test_size=0, lr=1e-4)
        for K in (4, 8, 16, 32, 64):
            res = solve_limit(dataclasses.replace(one, depth=K), particles=65536, seed=2)
            k = (res.f[1, :, 0, 0] - res.f[0, :, 0, 0]) / 1e-4
            exact = 2 * (1 + 1 / K) ** K + (1 + 1 / K) ** (K - 1)
            print(f"{K:>5}{'%.3f ± %.3f' % (k.mean(), k.std() / math.sqrt(len(k))):>20}{exact:>13.4f}"
                  f"{K * (3 * math.e - exact):>17.3f}")
    print("\n4b. convergence in K during training (setting of 3., M = 65536; loss and h_move at tau = 1, g_sq at "
          "tau = 0; diff = change from the previous K)")
    print(f"{'K':>5}" + "".join(f"{f'{n}[{l}]':>22}{'diff':>9}" for n, l in (("loss", "net"), ("h_move", "tau=1"),
                                                                            ("g_sq", "tau=0"))))
    prev = None
    for K in (4, 8, 16, 32):
        res = solve_limit(cfg, grid=K, particles=65536, seed=1)
        vals = [_last(res, n, K if l == cfg.depth else l) for n, l in cols]
        diffs = ["" if prev is None else f"{v[0] - p[0]:+.4f}" for v, p in zip(vals, prev or vals)]
        print(f"{K:>5}" + "".join(f"{'%.4f ± %.4f' % v:>22}{d:>9}" for v, d in zip(vals, diffs)))
        prev = vals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", default="2048,4096", help="M values (= finite widths), comma-separated")
    ap.add_argument("--replicas", default="8,2", help="solver replicas to time (M/R particles each)")
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--inputs", type=int, default=8, help="training inputs = probes, full batch")
    ap.add_argument("--steps", type=int, default=49)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: speed,cost,convergence")
    a = ap.parse_args()
    a.particles = [int(v) for v in a.particles.split(",")]
    a.replicas = [int(v) for v in a.replicas.split(",")]
    if a.threads:
        torch.set_num_threads(a.threads)
    base = RunConfig(depth=a.grid, act="tanh", train_size=a.inputs, probes=a.inputs, batch="full",
                     steps=a.steps, record_every=10, test_size=0, lr=0.5, device=a.device,
                     record_coupling="off")  # the limit does not measure the §5 split: time like with like
    skip = set(a.skip.split(","))
    if "speed" not in skip:
        speed(a, base)
    if "cost" not in skip:
        cost_vs_T(a, base)
    if "convergence" not in skip:
        convergence(a)


if __name__ == "__main__":
    main()
