"""What a limit solve costs, without loading torch: the work model and the measured rates that turn a time
budget into a particle count (the dashboard's "solve from the page", the ten-minute figures in docs/performance.md).

Work model. At step t every query of a matrix projects P (or Nb) columns of M particles on histories of t·P
forward and t·Nb backward directions, so one solve does about

    work = M · K · block · (T · (P + Nb))²      (T = steps + 1; Nb = P for C = 1, Pp + P for C > 1)

multiply-adds up to a constant: cost ∝ M (T·P)² K. `RATES` holds work per second measured by
benchmarks/limit_scale.py (one thread of a 2-core CPU; float64 and float32); the estimate is only as good as
the machine is alike, and small settings are dominated by per-step overheads the model leaves out (so the
estimate adds `OVERHEAD_S` per step and block).
"""
from __future__ import annotations

import math

from dynamics.config import RunConfig

__all__ = ["RATES", "OVERHEAD_S", "MAX_INPUTS", "inputs_bound", "outputs_guess", "work", "estimate_seconds",
           "particles_for_budget"]

# work units per second, measured with `python benchmarks/limit_scale.py --big` (torch 2.13, one thread of the
# shared 2-core development machine): float64 5.9e8-7.4e8 and float32 1.5e9-2.4e9 at M = 16384-32768, K = 8-16,
# T·P = 352 (medium settings run faster, 0.9e9-1.5e9 in float64: the estimate errs on the slow side)
RATES = {"float64": 6.0e8, "float32": 1.5e9}
OVERHEAD_S = 8e-3       # seconds per step and block (Python, small kernels, records): 4-10 ms measured at
#                         M = 1024-2048, K = 3-4, T·P = 32-40. Measured actual/estimate: 0.4-1.8 over the settings
#                         of benchmarks/limit_scale.py and a two-layer, C = 3 run (slowest relative to the
#                         estimate: small two-layer runs; fastest: medium one-layer runs)
MAX_INPUTS = 256        # distinct inputs the solver conditions on (probes ∪ every batch input); it refuses more


def inputs_bound(cfg: RunConfig) -> int:
    """Distinct training inputs the solver conditions on: all of them for full batch, else at most the probes
    plus every batch (exact for full batch; an upper bound otherwise)."""
    if cfg.batch == "full":
        return cfg.train_size
    return min(cfg.train_size, cfg.probes + cfg.batch_size * (cfg.steps + 1))


def outputs_guess(cfg: RunConfig) -> int:
    """C without reading the data: 1 for teacher, `classes` for mixture, 10 otherwise (an upper guess for
    files and image tasks; C only changes Nb between P and Pp + P)."""
    if cfg.task == "teacher":
        return 1
    return cfg.classes if cfg.task == "mixture" else 10


def work(particles: int, grid: int, steps: int, inputs: int, probes: int, outputs: int = 1, block: int = 1) -> float:
    """The work model of the module docstring."""
    nb = inputs if outputs == 1 else probes + inputs
    return float(particles) * grid * block * ((steps + 1) * (inputs + nb)) ** 2


def estimate_seconds(cfg: RunConfig, particles: int, grid: int | None = None, dtype: str = "float64") -> float:
    """Seconds a solve of cfg's setting is expected to take on one CPU thread like the measured one."""
    K = grid or cfg.depth
    w = work(particles, K, cfg.steps, inputs_bound(cfg), cfg.probes, outputs_guess(cfg), cfg.block)
    return w / RATES[dtype] + OVERHEAD_S * (cfg.steps + 1) * K * cfg.block


def particles_for_budget(cfg: RunConfig, seconds: float, grid: int | None = None, replicas: int = 8,
                         dtype: str = "float64", most: int = 16384) -> int:
    """The largest particle count (a multiple of `replicas`, at most `most`) whose estimate fits in `seconds`;
    0 when not even 16 particles per replica fit."""
    K = grid or cfg.depth
    fixed = OVERHEAD_S * (cfg.steps + 1) * K * cfg.block
    per = estimate_seconds(cfg, 1, K, dtype) - fixed
    m = math.floor((seconds - fixed) / per / replicas) if seconds > fixed else 0
    m = min(m, most // replicas)
    return m * replicas if m >= 16 else 0
