"""Limit-solver scale (issue 14): particle-steps per second and peak memory for a few (M, K, T·P).

    python benchmarks/limit_scale.py [--device cpu|cuda] [--dtype float64 float32] [--threads 1] [--big]

Each setting is solved in a fresh subprocess (teacher task, full batch of P inputs, T = steps + 1, one-layer
blocks, coupling full, 8 replicas, records only at the first and last step) so its peak memory is its own:
CPU peak = the child's max RSS minus its RSS after imports and data loading; CUDA peak =
torch.cuda.max_memory_allocated. Printed per setting: wall seconds, particle-steps/s = M·K·T / wall (one
particle through one block for one SGD step, forward and backward), the work rate of dynamics.limit.cost
(M·K·(T·(P+Nb))² / wall, the constant its time estimates use) and the estimate it gives. `--big` adds the
larger settings used to extrapolate the ten-minute figures in docs/performance.md; the GPU rows need a CUDA machine.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = [(1024, 4, 5, 8), (4096, 4, 5, 8), (4096, 8, 5, 8), (4096, 4, 9, 8), (4096, 4, 5, 16), (16384, 4, 9, 16)]
BIG = [(16384, 8, 11, 32), (32768, 8, 11, 32), (16384, 16, 11, 32)]

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
from dynamics.config import RunConfig
from dynamics.limit.nfd import solve_limit
from dynamics.limit.cost import estimate_seconds, work
M, K, T, P, dev, dtype = {M}, {K}, {T}, {P}, {dev!r}, {dtype!r}
cfg = RunConfig(width=64, depth=K, act="tanh", train_size=P, probes=min(P, 4), batch="full", steps=T - 1,
                record_every=T - 1, test_size=0, lr=0.5)
from dynamics.data import load_task
load_task(cfg)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if dev == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
solve_limit(cfg, particles=M, device=dev, dtype=dtype, seed=0)
if dev == "cuda":
    torch.cuda.synchronize()
wall = time.perf_counter() - t0
peak = (torch.cuda.max_memory_allocated() if dev == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
w = work(M, K, T - 1, P, cfg.probes)
print(json.dumps(dict(M=M, K=K, T=T, P=P, dtype=dtype, device=dev, wall=wall, peak_mb=peak / 2**20,
                      particle_steps=M * K * T / wall, work_rate=w / wall,
                      estimate=estimate_seconds(cfg, M, K, dtype))))
"""


def run(M: int, K: int, T: int, P: int, dev: str, dtype: str, threads: int) -> dict:
    code = _CHILD.format(root=str(ROOT), threads=threads, M=M, K=K, T=T, P=P, dev=dev, dtype=dtype)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode:
        return dict(M=M, K=K, T=T, P=P, dtype=dtype, device=dev, error=(out.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--big", action="store_true", help="also the larger settings (minutes on a CPU)")
    args = ap.parse_args()
    print(f"{'M':>6} {'K':>3} {'T':>3} {'P':>3} {'T·P':>5} {'dtype':>7} {'wall s':>8} {'est s':>7} "
          f"{'particle-steps/s':>17} {'work/s':>9} {'peak MB':>8}")
    for M, K, T, P in SMALL + (BIG if args.big else []):
        for dtype in args.dtype:
            r = run(M, K, T, P, args.device, dtype, args.threads)
            if "error" in r:
                print(f"{M:>6} {K:>3} {T:>3} {P:>3} {T * P:>5} {dtype:>7}  error: {r['error']}")
                continue
            print(f"{M:>6} {K:>3} {T:>3} {P:>3} {T * P:>5} {dtype:>7} {r['wall']:>8.2f} {r['estimate']:>7.2f} "
                  f"{r['particle_steps']:>17.3g} {r['work_rate']:>9.3g} {r['peak_mb']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
