"""Side by side with TensorBoard on the same scalars: N layers × M metrics × S steps (issue #19).

    python benchmarks/vs_tensorboard.py [--layers 129 --metrics 8 --steps 2000 --rounds 3]
    python benchmarks/vs_tensorboard.py --small        # seconds; what CI runs (it asserts no times)

One event file of `layer_<ℓ>/m<k>` scalars is written (TensorBoard's own Event protos, one scalar per event as
`add_scalar` writes them). Then, in interleaved rounds (ours, TensorBoard, ours, …, so background load hits
both alike), each in a fresh child process so its peak memory (ru_maxrss) is its own:
  - import: `python -m dynamics import FILE` against a process that runs `EventAccumulator(FILE).Reload()`
    (wall and CPU time of the whole process, start-up and imports included, and peak memory);
  - grid: one metric as a step × layer grid, in process (after the imports): ours from the imported run (the
    dashboard's DuckDB loader), TensorBoard's from the event file (Reload, then Scalars() of each layer's tag:
    it keeps no other store);
  - record: a user's loop recording every step, `dynamics.record` (8 probes) against forward hooks +
    `add_scalar` (benchmarks/record_overhead.py --user), each over the same loop without recording;
  - browser: the first chart drawn in a fresh headless Chromium, ours (the Trajectories heatmap of the imported
    run) against TensorBoard's first scalar card on the event file, on a fresh server (cold) and again on the
    same server (warm); our widget change (metric m0 → m1); then each page of ours once on a fresh server
    (benchmarks/vs_tensorboard_browser.py says what is timed and how). Needs /usr/bin/chromium.
Prints each figure and `RATIO <name> ours/tensorboard min=… median=…` lines, with the load average beside.
Needs tensorboard (pip install -r requirements-tensorboard.txt).
"""
from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# children print what they time after their imports: TensorBoard `reload_s peak_mb grid_s shape`, ours `grid_s`
_TB_CHILD = """
import resource, sys, time
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
t0 = time.perf_counter()
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
ea.Reload()
t1 = time.perf_counter()
tags = [t for t in ea.Tags()["scalars"] if t.endswith("/m0")]
events = {t: ea.Scalars(t) for t in tags}
steps = sorted({e.step for es in events.values() for e in es})
pos = {s: i for i, s in enumerate(steps)}
grid = np.full((len(steps), len(tags)), np.nan)
for j, t in enumerate(tags):
    for e in events[t]:
        grid[pos[e.step], j] = e.value
t2 = time.perf_counter()
print(t1 - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, t2 - t0, grid.shape)
"""
_OURS_GRID = """
import sys, time
sys.path.insert(0, sys.argv[2])
from dashboard.loaders import read_grid
t0 = time.perf_counter()
g = read_grid(sys.argv[1], "m0")
print(time.perf_counter() - t0, g["value"].shape)
"""


def write_events(path: Path, layers: int, metrics: int, steps: int) -> int:
    """An event file as add_scalar writes it (file_version, then one Event per scalar); returns the scalars."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    from dynamics.runs.tfevents_fast import masked_crc32c

    def record(data: bytes) -> bytes:
        head = struct.pack("<Q", len(data))
        return head + struct.pack("<I", masked_crc32c(head)) + data + struct.pack("<I", masked_crc32c(data))

    tags = [f"layer_{ell}/m{k}" for ell in range(layers) for k in range(metrics)]
    with open(path, "wb") as fh:
        fh.write(record(event_pb2.Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString()))
        for s in range(steps):
            fh.write(b"".join(record(event_pb2.Event(wall_time=1.7e9 + s, step=s, summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag=t, simple_value=1.0 + j / 8 + s / 64)])).SerializeToString())
                for j, t in enumerate(tags)))
    return len(tags) * steps


_CPU: list[float] = []  # CPU seconds (user + system) of each child, in order


def _run(args: list[str]) -> tuple[float, float, str]:
    """A child with its own peak memory and CPU time from os.wait4 (ru_maxrss is in KB on Linux)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    _CPU.append(ru.ru_utime + ru.ru_stime)
    if p.returncode:
        raise SystemExit(f"{' '.join(map(str, args[:4]))} failed: {err.decode()[-500:]}")
    return wall, ru.ru_maxrss / 1024, out.decode()


def _ratio(name: str, ours: list[float], tb: list[float], unit: str) -> None:
    r = [a / b for a, b in zip(ours, tb)]
    print(f"{name:<22} ours {min(ours):9.3f}–{max(ours):.3f} {unit}  "
          f"tensorboard {min(tb):9.3f}–{max(tb):.3f} {unit}")
    print(f"RATIO {name} ours/tensorboard min={min(r):.4f} median={statistics.median(r):.4f}")
    print(f"RESULT vs_tensorboard_{name}_ratio={statistics.median(r):.4f}")  # for benchmarks/run_all.py


def _browser(events: Path, work: Path, steps: int, rounds: int, pages: bool, shots: str | None) -> None:
    """First chart in a fresh browser, ours vs TensorBoard (benchmarks/vs_tensorboard_browser.py)."""
    if not Path("/usr/bin/chromium").exists():
        print("browser: skipped (no /usr/bin/chromium)")
        return
    from vs_tensorboard_browser import compare
    runs = work / "browser_runs"
    if not (runs / "bench").is_dir():
        _run([sys.executable, "-m", "dynamics", "import", str(events), "--out", str(runs), "--name", "bench"])
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
    print(f"browser: load average {os.getloadavg()[0]:.1f} before")
    t = compare(runs, events.parent, "bench", rounds, work, pages, Path(shots) if shots else None)
    _ratio("first_chart_cold", t["cold_ours"], t["cold_tb"], "s")
    _ratio("first_chart_warm", t["warm_ours"], t["warm_tb"], "s")
    for kind in ("cold", "warm"):  # TensorBoard draws what it has read so far; ours draws every step
        got = t[f"{kind}_tb_last_step"]
        print(f"TensorBoard's {kind} first chart: just after it, its server had read steps up to "
              f"{min(got)}–{max(got)} of 0–{steps - 1}")
    f = t["cold_floor"]
    print(f"floor (a bare Streamlit app drawing one small Plotly chart, fresh server + browser): "
          f"{min(f):.3f}–{max(f):.3f} s, median {statistics.median(f):.3f} s")
    print(f"RESULT first_chart_floor_s={statistics.median(f):.4f}")
    w = t["widget_ours"]
    print(f"widget change (metric m0 → m1, ours): {min(w):.3f}–{max(w):.3f} s, median {statistics.median(w):.3f} s")
    print(f"RESULT widget_change_s={statistics.median(w):.4f}")
    for k, v in t.items():
        if k.startswith("page_"):
            print(f"PAGE {k[5:]} first chart, fresh server + fresh browser: {v[0]:.3f} s")
    print(f"browser: load average {os.getloadavg()[0]:.1f} after")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=129)
    ap.add_argument("--metrics", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="a tiny size for CI (seconds): 4 × 2 × 50, one round")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: import, grid, record, browser, pages")
    ap.add_argument("--shots", help="save screenshots of each tool's first chart (round 0) and each page here")
    a = ap.parse_args()
    if a.small:
        a.layers, a.metrics, a.steps, a.rounds = 4, 2, 50, 1
    skip = {s for s in a.skip.split(",") if s}
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise SystemExit("tensorboard is not installed: pip install -r requirements-tensorboard.txt") from None
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "logdir" / "events.out.tfevents.1700000000.bench"  # TensorBoard's --logdir: this file only
        f.parent.mkdir()
        t0 = time.perf_counter()
        n = write_events(f, a.layers, a.metrics, a.steps) if {"import", "grid", "browser"} - skip else 0
        print(f"{a.layers} layers × {a.metrics} metrics × {a.steps} steps = {n:,} scalars, "
              f"{f.stat().st_size / 2 ** 20:.1f} MB event file (written in {time.perf_counter() - t0:.1f} s)")
        imp: dict[str, list[float]] = {"ours_s": [], "ours_mb": [], "tb_s": [], "tb_mb": [], "tb_grid": []}
        grid: list[float] = []
        for r in range(a.rounds if {"import", "grid"} - skip else 0):
            run = Path(d) / f"out{0 if 'import' in skip else r}"
            if "import" not in skip or r == 0:
                s, mb, _ = _run([sys.executable, "-m", "dynamics", "import", str(f), "--out", str(run),
                                 "--name", "bench"])
                imp["ours_s"].append(s)
                imp.setdefault("ours_cpu", []).append(_CPU[-1])
                imp["ours_mb"].append(mb)
            if "grid" not in skip:
                _, _, out = _run([sys.executable, "-c", _OURS_GRID, str(run / "bench"), str(ROOT)])
                grid.append(float(out.split()[0]))
            if "import" not in skip or "grid" not in skip:
                wall, mb, out = _run([sys.executable, "-c", _TB_CHILD, str(f)])
                reload_s, _, grid_s = (float(v) for v in out.split()[:3])
                imp["tb_s"].append(wall - (grid_s - reload_s))  # the process up to a loaded accumulator
                imp.setdefault("tb_cpu", []).append(_CPU[-1] - (grid_s - reload_s))
                imp["tb_mb"].append(mb)
                imp["tb_grid"].append(grid_s)
        if "import" not in skip:
            _ratio("import_time", imp["ours_s"], imp["tb_s"], "s")
            _ratio("import_cpu_time", imp["ours_cpu"], imp["tb_cpu"], "s")  # steadier than wall time when shared
            _ratio("import_peak_memory", imp["ours_mb"], imp["tb_mb"], "MB")
        if "grid" not in skip:
            _ratio("grid_one_metric", grid, imp["tb_grid"], "s")
        if "browser" not in skip:
            _browser(f, Path(d), a.steps, a.rounds, "pages" not in skip, a.shots)
    if "record" not in skip:
        from record_overhead import user_loop
        size = (64, 4, 16, 4, 3) if a.small else (512, 32, 64, 8, 10)
        times = user_loop(*size, repeats=a.rounds if not a.small else 1)
        k = max(1, len(times["none"]) // max(1, a.rounds))  # per round: medians of its steps
        med = {kind: [statistics.median(ts[i:i + k]) for i in range(0, len(ts) - k + 1, k)]
               for kind, ts in times.items()}
        ours = [t / b for t, b in zip(med["dynamics.record"], med["none"])]
        tb = [t / b for t, b in zip(med["tensorboard hooks"], med["none"])]
        print(f"record every step (width {size[0]}, {size[1]} blocks, batch {size[2]}, {size[3]} probes): "
              f"dynamics.record {statistics.median(ours):.2f}×, tensorboard hooks {statistics.median(tb):.2f}× "
              f"of no recording")
        _ratio("record_overhead", ours, tb, "×")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
