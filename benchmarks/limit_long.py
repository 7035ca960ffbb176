"""Long full-batch training: does the particle solver stay on the width limit, and does its error shrink like
1/√M? Prints, for one setting (--setting demo: the bundled demo's, tanh, depth 8, 8 inputs = probes, full batch,
lr 0.5, MSE; xent: the digits images with cross-entropy, C = 10 outputs, lr 2; block2: two-layer blocks at
α = 1/2, otherwise the demo's):

- per recorded step, the particle limit's loss and h_move at the top (value ± stderr) at each M, beside the
  width limit extrapolated from finite nets (`--method extrapolate`, widths 256-2048 × 3 seeds);
- the ratio stderr(M) / stderr(4·M) per (metric, layer, step), median over entries (1/√M predicts 2);
- the z-scores particles vs extrapolation (RMS and max over every entry).

    PYTHONPATH=. python benchmarks/limit_long.py [--setting demo|xent|block2] [--steps 60] [--particles 4096,16384]
                                                 [--out /tmp/limit_long]

Everything lands under --out (runs are reused on a second call).
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dynamics.runs import store

_COMMON = ["--depth", "8", "--act", "tanh", "--batch", "full", "--train-size", "8", "--test-size", "0", "--probes", "8",
           "--record-every", "2", "--record-coupling", "off"]
SETTINGS = {  # name -> train flags; every one full batch on 8 inputs = the probes
    "demo": _COMMON + ["--lr", "0.5", "--input-dim", "32"],                    # MSE, the bundled demo's setting
    "xent": _COMMON + ["--lr", "2.0", "--task", "digits", "--loss", "xent", "--classes", "10"],  # C = 10 outputs
    "block2": _COMMON + ["--lr", "0.5", "--input-dim", "32", "--block", "2", "--inner-lr-exponent", "0.5"],
}
SETTING = SETTINGS["demo"]


def cli(*args):
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "dynamics", *args, "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--setting", default="demo", choices=sorted(SETTINGS))
    ap.add_argument("--particles", default="4096,16384")
    ap.add_argument("--widths", default="256,512,1024,2048")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default="/tmp/limit_long")
    a = ap.parse_args()
    out = Path(a.out) / (f"steps{a.steps}" if a.setting == "demo" else f"{a.setting}_steps{a.steps}")
    base = out / "base"
    if not (base / "run.json").exists():
        cli("train", *SETTINGS[a.setting], "--width", "256", "--steps", str(a.steps), "--out", str(out),
            "--name", "base")
    x = out / "extrapolated"
    if not (x / "run.json").exists():
        took = cli("limit", "--like", str(base), "--out", str(out), "--method", "extrapolate", "--widths", a.widths,
                   "--seeds", str(a.seeds), "--name", "extrapolated")
        print(f"extrapolate: {took:.0f} s")
    Ms = [int(m) for m in a.particles.split(",")]
    for M in Ms:
        if not (out / f"M{M}" / "run.json").exists():
            took = cli("limit", "--like", str(base), "--out", str(out), "--particles", str(M), "--name", f"M{M}")
            print(f"particles M = {M}: {took:.0f} s")
    X = store.read_metrics(x)
    P = {M: store.read_metrics(out / f"M{M}") for M in Ms}
    keys = ["step", "layer", "metric"]
    top = int(X[X.metric == "h_move"].layer.max())
    print(f"\nstep | extrapolated loss | " + " | ".join(f"M={M} loss" for M in Ms) + " | extrapolated h_move(top) | "
          + " | ".join(f"M={M} h_move(top)" for M in Ms))
    def pick(d, metric, layer, step):
        r = d[(d.metric == metric) & (d.step == step) & ((d.layer == layer) if layer is not None else True)]
        return f"{r.value.iloc[0]:.4g} ± {r.stderr.iloc[0]:.2g}" if len(r) else "-"
    for step in sorted(set(X[X.metric == "loss"].step))[:: max(1, a.steps // 20)]:
        print(f"{step} | {pick(X, 'loss', None, step)} | " + " | ".join(pick(P[M], 'loss', None, step) for M in Ms)
              + f" | {pick(X, 'h_move', top, step)} | " + " | ".join(pick(P[M], 'h_move', top, step) for M in Ms))
    for M1, M2 in zip(Ms, Ms[1:]):
        j = P[M1].merge(P[M2], on=keys, suffixes=("_1", "_2"))
        j = j[(j.stderr_2 > 0)]
        print(f"stderr(M={M1}) / stderr(M={M2}): median {np.median(j.stderr_1 / j.stderr_2):.2f} over {len(j)} "
              f"entries (1/sqrt(M) predicts {np.sqrt(M2 / M1):.2f})")
    for M in Ms:
        j = P[M].merge(X, on=keys, suffixes=("_p", "_x"))
        j = j[(j.stderr_p > 0) | (j.stderr_x > 0)]
        z = (j.value_p - j.value_x) / np.hypot(j.stderr_p, j.stderr_x)
        print(f"M={M} vs extrapolated: {len(z)} entries, RMS z {np.sqrt((z ** 2).mean()):.2f}, "
              f"max |z| {np.abs(z).max():.2f} (at {j.iloc[int(np.abs(z).argmax())][keys].to_dict()})")


if __name__ == "__main__":
    main()
