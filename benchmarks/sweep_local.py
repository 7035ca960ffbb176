"""Sweep speed-up (issue #7): a 2-worker local sweep of 8 small runs against running them one by one.

    python benchmarks/sweep_local.py [--workers 2 --width 128 --depth 8 --steps 100 --repeats 1]

Both sides start from a fresh Python process and are timed end to end, so each pays its own start-up: the
one-by-one side imports torch once and trains the 8 configs in a loop (the cheapest way to run them
serially; 8 separate `python -m dynamics train` calls would each pay the import again); the sweep side
starts a pool whose workers are forks of a forkserver that imported torch once (beside the driver).
With --cli the runs are also timed as 8 `python -m dynamics train` commands (what a user without the sweep
command would type; each pays the import). The in-process loop is timed with torch's default threads (one
per core, what a plain loop gets) and with one thread (immune to oversubscription). Target: sweep ≤ 0.6×
one by one. Against the in-process loop the ratio is bounded by the cores and by the fixed start-up
(driver + one torch import, ≈3 s here), so it reaches 0.6 only once the runs outweigh that start-up.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SERIAL = """
import sys; sys.path.insert(0, {repo!r})
from dynamics.sweep import plan_sweep
from dynamics.config import RunConfig
from dynamics.train import train
import torch
if {threads}:
    torch.set_num_threads({threads})
sweep = plan_sweep({base!r}, {grid!r}, {out!r})
for t in sweep.tasks:
    train(RunConfig.from_dict(t.config), {out!r} + "/" + t.name)
"""
SWEEP = """
import sys; sys.path.insert(0, {repo!r})
from dynamics.sweep import plan_sweep, run_sweep
m = run_sweep(plan_sweep({base!r}, {grid!r}, {out!r}), workers={workers})
assert m["counts"] == {{"complete": 8}}, m["counts"]
"""


def _time_cli(base: dict, grid: str, out: str) -> float:
    """The 8 runs as 8 `python -m dynamics train` commands, one after another (each imports torch)."""
    sys.path.insert(0, str(REPO))
    from dynamics.sweep import plan_sweep
    tasks = plan_sweep(base, grid, out).tasks
    t0 = time.perf_counter()
    for t in tasks:
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in t.config.items() if k in {**base, **t.point}]
        subprocess.run([sys.executable, "-m", "dynamics", "train", *flags, "--out", out, "--name", t.name],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _time(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-default-threads", action="store_true",
                    help="skip the one-by-one run with torch's default threads (slow on a loaded machine)")
    ap.add_argument("--cli", action="store_true",
                    help="also time the 8 runs as 8 `python -m dynamics train` commands (each pays the import)")
    a = ap.parse_args()
    base = {"width": a.width, "depth": a.depth, "steps": a.steps, "train_size": 256, "batch": 32,
            "test_size": 64, "device": "cpu"}
    grid = "lr=0.05,0.1 seed=0,1,2,3"  # 8 runs
    serial, serial1, pool, cli = [], [], [], []
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(a.repeats):  # interleaved, so background load hits all alike
            kw = dict(repo=str(REPO), base=base, grid=grid, workers=a.workers)
            if not a.skip_default_threads:
                serial.append(_time(SERIAL.format(out=f"{tmp}/serial{k}", threads=0, **kw)))
            serial1.append(_time(SERIAL.format(out=f"{tmp}/serial1_{k}", threads=1, **kw)))
            pool.append(_time(SWEEP.format(out=f"{tmp}/sweep{k}", **kw)))
            if a.cli:
                cli.append(_time_cli(base, grid, f"{tmp}/cli{k}"))
    s = statistics.median(serial) if serial else float("nan")
    s1, p = statistics.median(serial1), statistics.median(pool)
    print(f"8 runs (width {a.width}, depth {a.depth}, {a.steps} steps) on {os.cpu_count()} cores, "
          f"load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"one by one (torch default threads): {s:.1f} s   one by one (1 thread): {s1:.1f} s   "
          f"{a.workers}-worker sweep: {p:.1f} s")
    print(f"ratio sweep / one by one: {p / s:.2f} (default threads), {p / s1:.2f} (1 thread); target ≤ 0.6")
    if cli:
        c = statistics.median(cli)
        print(f"as 8 `python -m dynamics train` commands: {c:.1f} s; ratio sweep / those: {p / c:.2f}")
    print(f"RESULT sweep_over_serial_1thread={p / s1:.3f}")  # for benchmarks/run_all.py


if __name__ == "__main__":
    main()
