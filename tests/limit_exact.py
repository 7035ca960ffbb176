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


def t_quantile(p: float, df: int) -> float:
    """Student-t quantile (p > 1/2) by bisection on the CDF, the density integrated with Simpson's rule."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(x: float, n: int = 4000) -> float:
        h = x / n
        f = [c * (1 + (k * h) ** 2 / df) ** (-(df + 1) / 2) for k in range(n + 1)]
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))
    lo, hi = 0.0, 1e3
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return 0.5 * (lo + hi)


def wide_nets_vs_limit(tmp_path, cfg, coupling: str, names, widths=(256, 1024), seeds: int = 8,
                       particles: int = 16384):
    """Centred limit (M particles) against finite nets at growing width, steps 1..S, every layer of each metric:
    rel_rms[name, width] = RMS(seed − limit)/RMS(limit), and z[name] = max over entries of the width-max(widths)
    seed mean's deviation over sqrt(seed variance/seeds + stderr²): Student-t with seeds − 1 degrees of freedom
    per entry (the finite-width bias O(1/n), ≈ 0.1% of the value at n = 1024, is far below the seed spread).
    Also returns the bound: the t quantile at a family-wise 1% over every entry tested (Bonferroni)."""
    res = solve_limit(cfg, particles=particles, coupling=coupling, seed=0)
    err, z = {}, {}
    for width in widths:
        fin = [store.read_metrics(train(dataclasses.replace(cfg, width=width, seed=s), tmp_path / f"{width}-{s}"))
               for s in range(seeds)]
        for name in names:
            m = res.metrics[res.metrics.metric == name]
            lim = m.pivot(index="step", columns="layer", values="value").loc[1:].to_numpy()
            se = m.pivot(index="step", columns="layer", values="stderr").loc[1:].to_numpy()
            F = np.array([f[f.metric == name].pivot(index="step", columns="layer", values="value").loc[1:].to_numpy()
                          for f in fin])
            dev = F - lim
            err[name, width] = float(np.sqrt((dev ** 2).mean()) / np.sqrt((lim ** 2).mean()))
            if width == max(widths):
                z[name] = float(np.abs(dev.mean(0) / np.sqrt(F.var(0, ddof=1) / seeds + se ** 2)).max())
                entries = entries + lim.size if name != names[0] else lim.size
    return err, z, t_quantile(1 - 0.01 / (2 * entries), seeds - 1)
