"""Recording cost: wall time of a recorded run over an unrecorded run of the same model (issue #2).

    python benchmarks/record_overhead.py [--width 512 --depth 32 --batch 64 --steps 60 --repeats 3]

Prints the ratio for record_every = 1 and 10, with the coupling decomposition off and on (targets: issue #2,
≤ 1.5× and ≤ 1.1× for recording; issue #4, coupling adds ≤ 30% at record_every = 10). Each configuration is timed
`repeats` times, interleaved, and the median is used, so background load hits all of them alike. The
baseline still writes the per-step loss; it skips only the probe metrics, kernels and quantiles.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynamics.config import RunConfig  # noqa: E402
from dynamics.train import train  # noqa: E402


def _time(cfg: RunConfig, record: bool) -> float:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        train(cfg, Path(d) / "run", record_probes=record)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    base = RunConfig(width=a.width, depth=a.depth, batch=a.batch, steps=a.steps, device=a.device)
    variants = {"unrecorded": (base, False)}
    for every in (1, 10):
        for coupling in ("off", "on"):
            variants[f"every={every} coupling={coupling}"] = (
                dataclasses.replace(base, record_every=every, record_coupling=coupling), True)
    _time(dataclasses.replace(base, steps=2), True)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(a.repeats):
        for name, (cfg, record) in variants.items():
            times[name].append(_time(cfg, record))
    t0 = statistics.median(times["unrecorded"])
    print(f"width {a.width}, depth {a.depth}, batch {a.batch}, {a.steps} steps, median of {a.repeats}")
    print(f"{'variant':<26}{'seconds':>10}{'ratio':>8}")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:<26}{t:>10.2f}{t / t0:>8.2f}")
    for name, ts in times.items():  # machine-readable lines for benchmarks/run_all.py
        if name != "unrecorded":
            print(f"RESULT record_{name.replace('=', '').replace(' ', '_')}_ratio={statistics.median(ts) / t0:.3f}")


if __name__ == "__main__":
    main()
