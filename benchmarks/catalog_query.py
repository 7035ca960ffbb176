"""Catalogue speed (issue #7): typical queries over 1,000 runs × 50 layers × 200 steps, warm and cold.

    python benchmarks/catalog_query.py [--runs 1000 --layers 50 --steps 200 --keep DIR]

Writes synthetic runs in the real run format (run.json + metrics.parquet with the store's schema; metrics
h_sq, g_sq, h_move on every layer and the loss on layer −1 at every step: 30,200 rows a run) into a temp
dir, then times three queries: the final loss of every run with its config (the Scaling page's question),
one metric's depth profile for the 20 runs of one (width, lr), and a SQL aggregate over a join.
"cold" is a fresh process: import, open the catalogue (index built from 1,000 run.json files, or read
from its cache), first query. "warm" is the median of 5 repeats on an open catalogue (target < 1 s), with
the CPU seconds of all DuckDB threads beside it (the work done, which background load does not change).
The OS page cache is warm in every case (dropping it needs privileges a benchmark should not ask for).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from dynamics.runs import store  # noqa: E402
from dynamics.config import RunConfig  # noqa: E402

METRICS = ("h_sq", "g_sq", "h_move")
WIDTHS = (64, 128, 256, 512, 1024)
LRS = tuple(round(0.02 * k, 2) for k in range(1, 11))
QUERIES = {
    "final loss, all runs + config": lambda cat, a: cat.metric("loss", steps=[a.steps - 1]),
    "h_sq depth profile, 20 runs": lambda cat, a: cat.metric("h_sq", steps=[a.steps - 1],
                                                             where={"width": 256, "lr": 0.1}),
    "SQL: mean h_move by width, lr": lambda cat, a: cat.query(
        "SELECT r.width, r.lr, avg(m.value) AS h_move FROM metrics m JOIN runs r USING (run_id) "
        f"WHERE m.metric = 'h_move' AND m.step = {a.steps - 1} AND m.layer = {a.layers // 2} "
        "GROUP BY ALL ORDER BY ALL"),
}


def write_runs(root: Path, n_runs: int, layers: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    step = np.arange(steps, dtype=np.int32)
    lay = np.arange(layers, dtype=np.int16)
    # rows ordered as the recorder writes them: by step, then metric, then layer
    s_col = np.concatenate([np.repeat(step, layers * len(METRICS)), step])
    l_col = np.concatenate([np.tile(lay, steps * len(METRICS)), np.full(steps, -1, np.int16)])
    m_col = np.concatenate([np.tile(np.repeat(METRICS, layers), steps), np.full(steps, "loss")])
    metric = pa.array(m_col).dictionary_encode()
    for k in range(n_runs):
        width, lr, seed = WIDTHS[k % 5], LRS[(k // 5) % 10], k // 50
        cfg = RunConfig(width=width, depth=layers - 1, lr=lr, seed=seed, steps=steps - 1)
        run_id = f"w{width}_lr{lr}_s{seed}"
        d = root / run_id
        d.mkdir(parents=True)
        value = rng.normal(size=len(s_col))
        table = pa.Table.from_arrays([pa.array(s_col), pa.array(l_col), metric, pa.array(value)],
                                     schema=store.METRICS_SCHEMA)
        store.write_parquet_atomic(d / store.METRICS, table)
        store.write_json_atomic(d / store.RUN_JSON, {
            "schema_version": store.SCHEMA_VERSION, "run_id": run_id, "kind": "finite", "status": "complete",
            "config": cfg.to_dict(), "device": "cpu", "steps_done": steps - 1, "wall_seconds": 1.0})


def one_shot(root: str, a: argparse.Namespace, cache: str) -> dict:
    """A fresh process's view: import, open, first query (each query in its own process)."""
    out = {}
    for name in QUERIES:
        code = (f"import sys, time, json; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
                f"t0 = time.perf_counter(); import dynamics; import benchmarks.catalog_query as b; "
                f"import argparse; a = argparse.Namespace(**{vars(a)!r}); "
                f"cat = dynamics.catalog({root!r}, cache={cache!r} if {cache!r} else False); t1 = time.perf_counter(); "
                f"b.QUERIES[{name!r}](cat, a); t2 = time.perf_counter(); "
                f"print(json.dumps([t1 - t0, t2 - t1]))")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out[name] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=50)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--keep", help="write the runs here and keep them (default: a temp dir, removed)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.keep) if a.keep else Path(tmp) / "runs"
        cache = str(Path(tmp) / "index.parquet")
        t0 = time.perf_counter()
        made = not (root / "sweep.json").exists()
        if made:
            write_runs(root, a.runs, a.layers, a.steps)
            (root / "sweep.json").write_text("{}")
        size = sum(f.stat().st_size for f in root.glob("*/metrics.parquet"))
        rows = a.runs * (a.steps * a.layers * len(METRICS) + a.steps)
        print(f"{a.runs} runs × {a.layers} layers × {a.steps} steps: {rows / 1e6:.1f} M rows, "
              f"{size / 2**20:.0f} MiB of Parquet ({f'written in {time.perf_counter() - t0:.1f} s' if made else 'reused'}); "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        cold_nocache = one_shot(str(root), a, "")
        cold_cached = one_shot(str(root), a, cache)  # the first of these writes the cache
        cold_cached = one_shot(str(root), a, cache)
        import dynamics
        cat = dynamics.catalog(root, cache=cache)
        print(f"{'query':31} {'rows':>5} {'warm: wall (CPU)':>17} {'cold, no index cache':>22} "
              f"{'cold, index cached':>22}")
        warm = []
        for name, q in QUERIES.items():
            n = len(q(cat, a))
            times, cpu = [], []
            for _ in range(5):
                t, c = time.perf_counter(), time.process_time()
                q(cat, a)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)  # all of DuckDB's threads: the work, whatever the load
            warm.append(statistics.median(times))
            (o1, q1), (o2, q2) = cold_nocache[name], cold_cached[name]
            print(f"{name:31} {n:>5} {statistics.median(times):>8.3f} s ({statistics.median(cpu):.2f} s) "
                  f"{o1 + q1:>8.2f} s (open {o1:.2f}) {o2 + q2:>8.2f} s (open {o2:.2f})")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        print(f"RESULT catalog_warm_slowest_query_s={max(warm):.3f}")  # for benchmarks/run_all.py


if __name__ == "__main__":
    main()
