"""The depth term of Fig. 1 measured on its own, without width noise: the limit engine on a K = L grid is the
infinite-width limit of the depth-L network, so its distance to a fine-grid reference (K = --ref) is the depth
error of training alone, and its Monte-Carlo error is known.

    python benchmarks/limit_depth_term.py [--particles 16384] [--depths 2,4,8,16] [--ref 64] [--coupling full]

Setting: the reproduce cpu profile's Fig. 1 task (teacher, 8 inputs = probes, full batch, ReLU, lr 0.5,
depth-μP, 5 steps). Per depth: e(L) = RMS over the K = L grid's τ of h_move(K = L) − h_move(K = ref) at the
last step, with the two runs' Monte-Carlo variance subtracted (e² = mean(d² − se²)). Because the reference is
itself at finite depth, the exponent q is fitted on e(L) = C·(L^−q − ref^−q), with a parametric bootstrap
(each e drawn from its Monte-Carlo error). Prints one line per depth and `RESULT` lines.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynamics.config import RunConfig  # noqa: E402
from dynamics.paper.common import limit, profile  # noqa: E402
from dynamics.paper.experiments import run_or_reuse  # noqa: E402

QS = np.linspace(0.05, 4.0, 791)


def fit_q(L: np.ndarray, e: np.ndarray, ref: int) -> float:
    """q minimising the squared log residual of e = C·(L^-q − ref^-q) (C profiled out); NaN if some e ≤ 0."""
    if np.any(~np.isfinite(e)) or np.any(e <= 0):
        return float("nan")
    basis = np.log(L[None, :] ** -QS[:, None] - float(ref) ** -QS[:, None])  # (q, depths)
    r = np.log(e)[None, :] - basis
    sse = ((r - r.mean(1, keepdims=True)) ** 2).sum(1)
    return float(QS[int(np.argmin(sse))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=16384)
    ap.add_argument("--depths", default="2,4,8,16")
    ap.add_argument("--ref", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--coupling", default="full", choices=["full", "none"])
    ap.add_argument("--out", default=None, help="runs folder (default: a temporary one)")
    a = ap.parse_args()
    depths = [int(v) for v in a.depths.split(",")]
    out = Path(a.out or tempfile.mkdtemp(prefix="depth-term-"))
    out.mkdir(parents=True, exist_ok=True)
    S, quiet = a.steps, (lambda m: None)
    cfg = RunConfig(task="teacher", train_size=8, probes=8, batch="full", test_size=0, lr=0.5, act="relu",
                    device="cpu", steps=S, record_every=S, test_every=S, record_coupling="off", width=64,
                    backward="reused" if a.coupling == "full" else "decoupled")
    t0 = time.monotonic()
    ref = limit(run_or_reuse(dataclasses.replace(cfg, depth=a.ref), out, quiet), out, a.ref, a.particles,
                a.coupling, "cpu")
    rt, rv = profile(ref, "h_move", S)
    _, rse = profile(ref, "h_move", S, column="stderr")
    print(f"reference K = {a.ref}, M = {a.particles}: {time.monotonic() - t0:.0f} s", flush=True)
    es, ses = [], []
    for L in depths:
        lim = limit(run_or_reuse(dataclasses.replace(cfg, depth=L), out, quiet), out, L, a.particles,
                    a.coupling, "cpu")
        tau, v = profile(lim, "h_move", S)
        _, se = profile(lim, "h_move", S, column="stderr")
        d = v - np.interp(tau, rt, rv)
        s2 = se ** 2 + np.interp(tau, rt, rse) ** 2
        e2 = float(np.mean(d ** 2 - s2))
        e = float(np.sqrt(e2)) if e2 > 0 else float("nan")
        se_e = float(np.sqrt(4 * np.sum(d ** 2 * s2)) / len(d) / (2 * e)) if e2 > 0 else float("nan")
        es.append(e)
        ses.append(se_e)
        print(f"L = {L:3d}: e = {e:.4g} ± {se_e:.2g} (raw RMS {np.sqrt(np.mean(d ** 2)):.4g}, MC RMS "
              f"{np.sqrt(np.mean(s2)):.2g}, mean h_move {v.mean():.3g})", flush=True)
    Ls, es, ses = np.array(depths, float), np.array(es), np.array(ses)
    q = fit_q(Ls, es, a.ref)
    rng = np.random.default_rng(0)
    draws = np.array([fit_q(Ls, es + ses * rng.standard_normal(len(es)), a.ref) for _ in range(400)])
    good = draws[np.isfinite(draws)]
    lo, hi = (np.quantile(good, [0.025, 0.975]) if len(good) > 0.975 * len(draws) else (np.nan, np.nan))
    print(f"RESULT depth_exponent_q={q:.3g}")
    print(f"RESULT q_interval=[{lo:.3g}, {hi:.3g}]")
    print(f"RESULT wall_s={time.monotonic() - t0:.0f}")


if __name__ == "__main__":
    main()
