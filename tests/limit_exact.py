"""Shared oracle of the limit tests: with center=False every replica of the particle solver is an exact sample
of a width-m network (m = particles per replica), so the replica mean of any metric must agree with the seed mean
of finite width-m runs within the two Monte-Carlo errors alone (no finite-width error to allow for)."""
import dataclasses
import math

import numpy as np

from dynamics.runs import store
from dynamics.limit import solve_limit
from dynamics.train import train


def _table(metrics, name, layer):
    m = metrics[(metrics.metric == name) & (metrics.layer == layer)]
    return m.set_index("step")


def exact_sampling_z(tmp_path, cfg, coupling: str, seeds: int, checks, steps, solver_seed: int = 11,
                     dtype: str = "float64"):
    """z-scores (limit − finite seed mean) / combined stderr for each (metric, layer) in checks at each step;
    cfg.width is the particles per replica, one replica per finite seed."""
    fin = [store.read_metrics(train(dataclasses.replace(cfg, seed=s), tmp_path / f"s{s}")) for s in range(seeds)]
    res = solve_limit(cfg, particles=cfg.width * seeds, replicas=seeds, coupling=coupling, seed=solver_seed,
                      center=False, dtype=dtype)
    zs = []
    for name, layer in checks:
        lim = _table(res.metrics, name, layer)
        for step in steps:
            v = np.array([_table(f, name, layer).loc[step, "value"] for f in fin])
            se = math.hypot(v.std(ddof=1) / math.sqrt(seeds), lim.loc[step, "stderr"])
            zs.append((lim.loc[step, "value"] - v.mean()) / se)
    return np.array(zs)
