"""Import throughput and peak memory per format (issue #29): scalars/s and peak resident MB of
`python -m dynamics import FILE`, each in a fresh child process.

    python benchmarks/import_scale.py [--values 2000000] [--layers 100] [--only parquet-long,csv-long]
    python benchmarks/import_scale.py --small       # seconds; what run_all.py runs
    python benchmarks/import_scale.py --values 20000000 --only parquet-long   # at the default row limit

Every format gets the same values: `--values` scalars of `--layers` layers × 2 per-layer metrics + a loss,
over as many steps as that takes. Files are written here, quickly (no tracker package needed, except
wandb-offline, written with wandb.init(mode="offline") when wandb is installed, at --wandb-values only: its
writer is slow). Also the issue's refusal: 2 M rows × 21 zero columns, refused from its footer.
Prints one line per format and `RESULT <format>_scalars_per_s=…`, `RESULT <format>_peak_mb=…` lines; the
start-up of the child (about 1.5 s of imports, 110 MB) is in every figure. Peak memory is the child's VmHWM
(/proc), which it prints as it exits.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _grid(values: int, layers: int):
    """(steps, keys): keys are `layer_<ℓ>/h_sq`, `g_sq/<ℓ>` and `loss`."""
    keys = [f"layer_{ell}/h_sq" for ell in range(1, layers + 1)] + [f"g_sq/{ell}" for ell in range(1, layers + 1)]
    keys.append("loss")
    return max(1, values // len(keys)), keys


def _v(s, j):
    return 1.0 + j / 8 + s / 64


def parquet_long(d: Path, values: int, layers: int) -> Path:
    steps, keys = _grid(values, layers)
    k = len(keys)
    layer = np.array([ell for ell in range(1, layers + 1)] * 2 + [-1], np.int16)
    metric = np.array([0] * layers + [1] * layers + [2], np.int32)
    s = np.repeat(np.arange(steps), k)
    t = pa.table({"step": s, "layer": np.tile(layer, steps), "metric": pa.DictionaryArray.from_arrays(
        pa.array(np.tile(metric, steps)), pa.array(["h_sq", "g_sq", "loss"])),
        "value": 1.0 + np.tile(np.arange(k), steps) / 8 + s / 64})
    pq.write_table(t, d / "long.parquet")
    return d / "long.parquet"


def _wide(values: int, layers: int) -> pd.DataFrame:
    steps, keys = _grid(values, layers)
    s = np.arange(steps)
    return pd.DataFrame({"_step": s, **{key: _v(s, j) for j, key in enumerate(keys)}})


def parquet_wide(d: Path, values: int, layers: int) -> Path:
    _wide(values, layers).to_parquet(d / "history.parquet", index=False)
    return d / "history.parquet"


def csv_long(d: Path, values: int, layers: int) -> Path:
    pq.read_table(parquet_long(d, values, layers)).to_pandas().to_csv(d / "long.csv", index=False)
    return d / "long.csv"


def csv_wide(d: Path, values: int, layers: int) -> Path:
    _wide(values, layers).to_csv(d / "history.csv", index=False)
    return d / "history.csv"


def _record(data: bytes) -> bytes:
    from dynamics.runs.tfevents_fast import masked_crc32c
    head = struct.pack("<Q", len(data))
    return head + struct.pack("<I", masked_crc32c(head)) + data + struct.pack("<I", masked_crc32c(data))


def tfevents(d: Path, values: int, layers: int) -> Path:
    """One Event per step holding every key (as a writer that logs a dict per step does)."""
    from dynamics.runs.tfevents_fast import _Event
    steps, keys = _grid(values, layers)
    tags = [k.encode() for k in keys]
    path = d / "events.out.tfevents.1700000000.host"
    with open(path, "wb") as fh:
        for s in range(steps):
            e = _Event(wall_time=1.7e9 + s, step=s)
            for j, t in enumerate(tags):
                v = e.summary.value.add()
                v.tag, v.simple_value = t, _v(s, j)
            fh.write(_record(e.SerializeToString()))
    return path


def tb_folder(d: Path, values: int, layers: int) -> Path:
    (d / "tb").mkdir()
    tfevents(d / "tb", values // 2, layers)
    os.replace(d / "tb" / "events.out.tfevents.1700000000.host", d / "tb" / "events.out.tfevents.1700000000.a")
    tfevents(d / "tb", values - values // 2, layers)  # a resumed run: its steps again, the later kept
    return d / "tb"


def run_zip(d: Path, values: int, layers: int) -> Path:
    src = parquet_long(d, values, layers)
    with zipfile.ZipFile(d / "run.zip", "w", zipfile.ZIP_STORED) as z:
        z.writestr("run/run.json", json.dumps({"config": {"depth": layers}}))
        z.write(src, "run/metrics.parquet")
    return d / "run.zip"


def mlflow(d: Path, values: int, layers: int) -> Path:
    steps, keys = _grid(values, layers)
    run = d / "mlruns" / "1" / "run0"
    (run / "metrics").mkdir(parents=True)
    (d / "mlruns" / "1" / "meta.yaml").write_text("experiment_id: '1'\nname: bench\n")
    (run / "meta.yaml").write_text("run_id: run0\nrun_name: r\nstatus: 3\nlifecycle_stage: active\n")
    (run / "params").mkdir()
    (run / "params" / "depth").write_text(str(layers))
    s = np.arange(steps)
    for j, key in enumerate(keys):
        f = run / "metrics" / key
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(f, np.column_stack([1_700_000_000_000 + s, _v(s, j), s]), fmt=["%d", "%.17g", "%d"])
    return d / "mlruns"


def mlflow_zip(d: Path, values: int, layers: int) -> Path:
    root = mlflow(d, values, layers)
    with zipfile.ZipFile(d / "mlruns.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(d).as_posix())
    return d / "mlruns.zip"


def trackio(d: Path, values: int, layers: int) -> Path:
    """Trackio's schema: one row per log call, its metrics a JSON object."""
    steps, keys = _grid(values, layers)
    con = sqlite3.connect(d / "bench.db")
    con.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, timestamp TEXT "
                "NOT NULL, run_name TEXT NOT NULL, step INTEGER NOT NULL, metrics TEXT NOT NULL)")
    con.execute("CREATE TABLE configs (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, run_name TEXT "
                "NOT NULL, config TEXT NOT NULL, created_at TEXT NOT NULL)")
    con.execute("INSERT INTO configs (run_id, run_name, config, created_at) VALUES ('r', 'r', ?, 't')",
                (json.dumps({"depth": layers}),))
    con.executemany("INSERT INTO metrics (run_id, timestamp, run_name, step, metrics) VALUES ('r', 't', 'r', ?, ?)",
                    ((s, json.dumps({k: _v(s, j) for j, k in enumerate(keys)})) for s in range(steps)))
    con.commit()
    con.close()
    return d / "bench.db"


def wandb_offline(d: Path, values: int, layers: int) -> Path:
    import wandb
    steps, keys = _grid(values, layers)
    os.environ["WANDB_SILENT"] = "true"
    run = wandb.init(mode="offline", project="bench", name="r", dir=str(d), config={"depth": layers})
    for s in range(steps):
        wandb.log({k: _v(s, j) for j, k in enumerate(keys)}, step=s)
    run.finish()
    wandb.teardown()  # the service writes the log: wait for it
    return d / "wandb"


FORMATS = {"parquet-long": parquet_long, "parquet-wide": parquet_wide, "csv-long": csv_long, "csv-wide": csv_wide,
           "tfevents": tfevents, "tb-folder": tb_folder, "run-zip": run_zip, "mlflow": mlflow,
           "mlflow-zip": mlflow_zip, "trackio": trackio, "wandb-offline": wandb_offline}


# the child reports its own high-water mark: VmHWM belongs to the exec'd image, while ru_maxrss from wait4
# would also count the memory of this (forking) process before the exec
CHILD = """import atexit, runpy, sys
atexit.register(lambda: print("VmHWM", next(l.split()[1] for l in open("/proc/self/status")
                                            if l.startswith("VmHWM")), file=sys.stderr))
sys.argv = ["dynamics", *sys.argv[1:]]
runpy.run_module("dynamics", run_name="__main__", alter_sys=True)
"""


def measure(path: Path, out: Path) -> tuple[float, float, str]:
    """`python -m dynamics import PATH` in a child: (wall s, peak resident MB, its last output line)."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, "import", str(path), "--out", str(out)], capture_output=True,
                       text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    hwm = [line.split()[1] for line in p.stderr.splitlines() if line.startswith("VmHWM ")]
    rest = [line for line in (p.stdout + p.stderr).splitlines() if line.strip() and not line.startswith("VmHWM ")]
    last = rest[-1] if rest else ""
    if p.returncode != 0:
        last = f"{'refused' if p.returncode == 2 else 'failed'}: {last}"
    return wall, int(hwm[-1]) / 1024 if hwm else float("nan"), last


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--values", type=int, default=2_000_000)
    ap.add_argument("--wandb-values", type=int, default=100_000)
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--only", default="", help="comma-separated formats, `refusal` for the issue's refused "
                                                "file (default: all)")
    ap.add_argument("--small", action="store_true", help="20 000 values each: seconds")
    a = ap.parse_args(argv)
    if a.small:
        a.values = a.wandb_values = 20_000
    asked = [f for f in a.only.split(",") if f] or [*FORMATS, "refusal"]
    if unknown := [f for f in asked if f not in FORMATS and f != "refusal"]:
        ap.error(f"unknown format(s) {', '.join(unknown)}; formats: {', '.join(FORMATS)}, refusal")
    only = [f for f in asked if f in FORMATS]
    print(f"{'format':<14} {'values':>10} {'file MB':>8} {'write s':>8} {'import s':>9} {'scalars/s':>11} "
          f"{'peak MB':>8}")
    with tempfile.TemporaryDirectory(prefix="import-scale-") as tmp:
        for fmt in only:
            d = Path(tmp) / fmt
            d.mkdir()
            n = a.wandb_values if fmt == "wandb-offline" else a.values
            if fmt == "wandb-offline" and importlib.util.find_spec("wandb") is None:
                print(f"{fmt:<14} skipped: pip install wandb")
                continue
            t0 = time.perf_counter()
            src = FORMATS[fmt](d, n, a.layers)
            write = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in ([src] if src.is_file() else src.rglob("*")) if f.is_file())
            wall, peak, last = measure(src, d / "out")
            steps, keys = _grid(n, a.layers)
            got = steps * len(keys)
            if last.startswith(("refused", "failed")):  # over a limit (--max-mb 200: the file size), or broken
                print(f"{fmt:<14} {got:>10} {size / 2 ** 20:>8.1f} {write:>8.1f} {wall:>9.2f} {'-':>11} {peak:>8.0f}"
                      f"  {last}")
                continue
            print(f"{fmt:<14} {got:>10} {size / 2 ** 20:>8.1f} {write:>8.1f} {wall:>9.2f} {got / wall:>11.0f} "
                  f"{peak:>8.0f}")
            print(f"RESULT {fmt}_scalars_per_s={got / wall:.0f}")
            print(f"RESULT {fmt}_peak_mb={peak:.0f}")
        if "refusal" in asked:
            d = Path(tmp) / "refusal"
            d.mkdir()
            rows = 2_000_000
            pq.write_table(pa.table({"_step": np.arange(rows), **{f"c{k}": np.zeros(rows) for k in range(20)}}),
                           d / "wide.parquet")
            wall, peak, last = measure(d / "wide.parquet", d / "out")
            print(f"{'2M×21 zeros':<14} {wall:.2f} s, peak {peak:.0f} MB: {last}")
            print(f"RESULT refusal_peak_mb={peak:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
