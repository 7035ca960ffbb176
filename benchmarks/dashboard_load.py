"""Load time and memory of the Trajectories page on a big run (issue 5: depth 512, 5,000 recorded steps,
8 metrics ≈ 20 M rows must open in < 2 s once cached, < 10 s cold, with the Streamlit process < 1.5 GB).

    python benchmarks/dashboard_load.py [--depth 512 --steps 5000 --metrics 8] [--no-browser] [--keep DIR]

1. Writes a synthetic run in the real format (pyarrow straight into store.METRICS_SCHEMA, rows ordered as the
   trainer writes them: step, then metric, then layer; zstd; store.write_parquet_atomic) plus neuron
   quantiles every 100 steps, in a temporary folder.
2. In fresh subprocesses, times the Trajectories view's loader + figure path (catalog, the metric's grid,
   the heatmap, the profile at the last step, five layers over steps, the quantile fan; every figure built
   and serialised to JSON as st.plotly_chart does), cold and then warm (st.cache_data hits), and, as the
   baseline, pandas reading the whole metrics.parquet and filtering one metric. Each reports its peak RSS.
3. Unless --no-browser: serves `streamlit run app.py` on that folder and, in Debian's Chromium (Playwright;
   never `playwright install`), opens the Trajectories page cold (it opens on its heatmap tab; the other
   views are lazy tabs), reloads it (server cache warm), switches the metric to another one (cold) and back
   (cached), goes to the Runs page and back through the sidebar's page links (the app stays loaded, as when
   a user moves between pages), opens each other tab once (cold for that view) and the heatmap again, and
   opens the page in a fresh browser context (no browser cache: plotly.js is fetched and compiled again).
   Reports the time until the view's chart is drawn and the app is idle, the time until the server's last
   websocket frame (its share), and the Streamlit process's RSS (now and peak).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.serving import CHART, CHROMIUM, CHROMIUM_ARGS, serve_app, stop_server  # noqa: E402
RUN_ID = "big"


def write_big_run(root: Path, depth: int = 512, steps: int = 5000, n_metrics: int = 8,
                  neurons_every: int = 100, seed: int = 0) -> Path:
    """A finite run with `n_metrics` per-layer metrics on layers 0..depth at steps 0..steps−1, a loss per
    step, and neuron quantiles (2 probes) every `neurons_every` steps. Values: smooth in τ and step + noise."""
    import numpy as np
    import pyarrow as pa
    from dynamics.config import RunConfig
    from dynamics.metrics import METRICS as NAMES
    from dynamics.runs.store import (METRICS, METRICS_SCHEMA, NEURONS, NEURONS_SCHEMA, KERNELS, KERNELS_SCHEMA,
                                RUN_JSON, SCHEMA_VERSION, write_json_atomic, write_parquet_atomic)
    rng = np.random.default_rng(seed)
    run = Path(root) / RUN_ID
    run.mkdir(parents=True, exist_ok=True)
    names = [m for m, (_, layers) in NAMES.items() if layers != "net"][:n_metrics]
    names += [f"extra_{k}" for k in range(n_metrics - len(names))]
    L1, M = depth + 1, len(names)
    step = np.repeat(np.arange(steps, dtype=np.int32), M * L1)
    metric = np.tile(np.repeat(np.arange(M, dtype=np.int32), L1), steps)
    layer = np.tile(np.arange(L1, dtype=np.int16), steps * M)
    tau = layer / depth
    value = (1 + metric) * np.exp(0.5 * tau) * (1 + np.log1p(step) / 10) + 0.01 * rng.standard_normal(len(step))
    loss_steps = np.arange(steps, dtype=np.int32)
    table = pa.Table.from_arrays([
        pa.array(np.concatenate([step, loss_steps])),
        pa.array(np.concatenate([layer, np.full(steps, -1, np.int16)])),
        pa.DictionaryArray.from_arrays(pa.array(np.concatenate([metric, np.full(steps, M, np.int32)])),
                                       pa.array(names + ["loss"])),
        pa.array(np.concatenate([value, np.exp(-loss_steps / 1000)]))], schema=METRICS_SCHEMA)
    write_parquet_atomic(run / METRICS, table)
    del step, metric, layer, tau, value, table
    q = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99], np.float32)
    from statistics import NormalDist
    z = np.array([NormalDist().inv_cdf(float(p)) for p in q])
    ns = np.arange(0, steps, neurons_every, dtype=np.int32)
    P = 2
    n_step = np.repeat(ns, L1 * P * len(q))
    n_layer = np.tile(np.repeat(np.arange(L1, dtype=np.int16), P * len(q)), len(ns))
    n_probe = np.tile(np.repeat(np.arange(P, dtype=np.int16), len(q)), len(ns) * L1)
    n_q = np.tile(q, len(ns) * L1 * P)
    n_val = np.tile(z, len(ns) * L1 * P) * np.exp(0.25 * n_layer / depth) * (1 + n_step / steps)
    write_parquet_atomic(run / NEURONS, pa.Table.from_arrays(
        [pa.array(n_step), pa.array(n_layer), pa.array(n_probe), pa.array(n_q), pa.array(n_val)],
        schema=NEURONS_SCHEMA))
    write_parquet_atomic(run / KERNELS, KERNELS_SCHEMA.empty_table())
    write_json_atomic(run / RUN_JSON, {
        "schema_version": SCHEMA_VERSION, "run_id": RUN_ID, "kind": "finite", "status": "complete",
        "config": RunConfig(width=256, depth=depth, steps=steps - 1, record_every=1).to_dict(),
        "created": "synthetic (benchmarks/dashboard_load.py)", "steps_done": steps - 1})
    return run


# --- the loader + figure path, run in a fresh subprocess ---------------------------------------------------
_VIEW = r'''
import json, sys, time, logging
logging.disable(logging.WARNING)
sys.path.insert(0, {repo!r})
t0 = time.perf_counter()
from types import SimpleNamespace
from dashboard import loaders as D
from dynamics.figures import depth_profile_figure, heatmap_figure, layer_curves_figure, quantile_fan_figure
from dynamics.runs.store import NEURONS
import_s = time.perf_counter() - t0
path, metric = {path!r}, {metric!r}
meta = json.load(open(path + "/run.json"))
run = SimpleNamespace(label="big", path=path, config=meta["config"], meta=meta)

def view():
    t, out = time.perf_counter(), {{}}
    mt, L = D.mtime(path), D.depth_of(run)
    cat = D.catalog(path, mt); steps = cat[metric][1]; out["catalog"] = time.perf_counter() - t
    hm = D.heatmap(path, mt, metric, L, (steps[0], steps[-1])); out["heatmap data"] = time.perf_counter() - t
    prof, _ = D.profiles([run], metric, steps[-1])
    cur, _ = D.curves([run], metric, [0, .25, .5, .75, 1], (steps[0], steps[-1]), 0.9)
    n_steps, probes = D.neuron_index(path, D.mtime(path, NEURONS))
    fan = D.neurons(path, D.mtime(path, NEURONS), L, n_steps[-1], probes[0])
    out["all data"] = time.perf_counter() - t
    figs = [heatmap_figure(hm, metric=metric), depth_profile_figure(prof, metric=metric),
            layer_curves_figure(cur, metric=metric), quantile_fan_figure(fan)]
    sizes = [len(f.to_json()) for f in figs]
    out["total"] = time.perf_counter() - t
    out["json MB"] = sum(sizes) / 1e6
    out["heatmap cells"] = int(len(hm)); out["points per curve"] = int(cur.groupby("layer").size().max())
    return out

cold = view()
warm = view()
print(json.dumps({{"import_s": import_s, "cold": cold, "warm": warm,
                   "peak_rss_MB": _hwm()}}))
'''

_PANDAS = r'''
import json, time, pandas as pd
t = time.perf_counter()
df = pd.read_parquet({path!r} + "/metrics.parquet")
read = time.perf_counter() - t
one = df[df["metric"] == {metric!r}]
print(json.dumps({{"read_all_s": read, "read_and_filter_s": time.perf_counter() - t, "rows": len(df),
                   "peak_rss_MB": _hwm()}}))
'''
# peak RSS of this process: VmHWM (ru_maxrss would carry the parent's peak across fork + exec)
_HWM = "def _hwm():\n    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024\n"


def _sub(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _HWM + code], capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the served page in a browser ----------------------------------------------------------------------------
def _rss(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB of a process and its children (VmHWM: the main process's peak)."""
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


def browser(root: Path, metric: str, other: str) -> dict:
    from playwright.sync_api import sync_playwright
    env = {k: v for k, v in os.environ.items() if k != "DYNAMICS_RUNS"} | {"DYNAMICS_DATA_DIR": str(root)}
    proc, base, log = serve_app(env, root / "streamlit.log", timeout=60)
    out = {}
    try:
        out["rss_idle_MB"] = _rss(proc.pid)[0]
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

            page = b.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            frames: list[float] = []  # arrival times of websocket frames: the server's side of a view
            page.on("websocket", lambda ws: ws.on("framereceived", lambda _: frames.append(time.perf_counter())))

            def drawn(title: str, start) -> tuple[float, float]:
                """(seconds until a chart titled `title` is drawn and the app idle, until the last frame)."""
                t = time.perf_counter()
                start()
                page.wait_for_function(
                    "([sel, t]) => document.querySelectorAll(sel).length >= 1 && [...document.querySelectorAll("
                    "'.js-plotly-plot .gtitle')].some(e => e.textContent.includes(t)) && "
                    "!document.querySelector('[data-testid=\"stStatusWidget\"]')", arg=[CHART, title],
                    timeout=180_000)
                end = time.perf_counter()
                return end - t, max([f for f in frames if f <= end], default=end) - t

            def pick(name: str):
                page.get_by_test_id("stSelectbox").filter(has_text="Metric").click()
                page.get_by_role("option", name=re.compile(f"^{name}")).click()

            def nav(name: str):  # the sidebar's page links: Streamlit switches pages without reloading
                page.locator('[data-testid="stSidebarNavLink"], a[data-testid="stPageLink-NavLink"]',
                             has_text=name).first.click()

            def tab(name: str):
                page.get_by_role("tab", name=name).click()

            heat, heat_other = f"{metric}: {RUN_ID}", f"{other}: {RUN_ID}"  # the page opens on the heatmap tab
            url = f"{base}/Trajectories?runs={RUN_ID}&metric={metric}"
            out["cold_open_s"], out["cold_open_server_s"] = drawn(heat, lambda: page.goto(url))
            out["rss_after_cold_MB"] = _rss(proc.pid)[0]
            out["reload_cached_s"], out["reload_cached_server_s"] = drawn(heat, page.reload)
            out["switch_to_new_metric_s"], _ = drawn(heat_other, lambda: pick(other))
            out["switch_back_cached_s"], out["switch_back_cached_server_s"] = drawn(heat, lambda: pick(metric))
            nav("Runs")
            page.wait_for_function("() => [...document.querySelectorAll('h1')].some(e => e.textContent === 'Runs') "
                                   "&& !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=180_000)
            out["navigate_to_page_cached_s"], _ = drawn(heat, lambda: nav("Trajectories"))
            for name, title in (("Over depth", f"{metric} over depth"), ("Over steps", f"{metric} over steps"),
                                ("Neurons", f"{RUN_ID}: quantiles")):
                out[f"tab_{name.lower().replace(' ', '_')}_s"], _ = drawn(title, lambda: tab(name))
            out["tab_back_to_heatmap_s"], _ = drawn(heat, lambda: tab("Layer × step"))
            fresh = b.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            t = time.perf_counter()
            fresh.goto(url)
            fresh.wait_for_function("([sel, t]) => document.querySelectorAll(sel).length >= 1 && "
                                    "[...document.querySelectorAll('.js-plotly-plot .gtitle')].some(e => "
                                    "e.textContent.includes(t))", arg=[CHART, heat], timeout=180_000)
            out["fresh_browser_cached_s"] = time.perf_counter() - t
            b.close()
        out["rss_end_MB"], out["rss_peak_MB"] = _rss(proc.pid)
    finally:
        stop_server(proc, log)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--metrics", type=int, default=8)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--keep", help="write the run here and keep it")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dash-bench-"))
    try:
        t = time.perf_counter()
        run = write_big_run(root, args.depth, args.steps, args.metrics)
        size = (run / "metrics.parquet").stat().st_size / 1e6
        print(f"synthetic run: depth {args.depth}, {args.steps} steps, {args.metrics} metrics, "
              f"{(args.depth + 1) * args.steps * args.metrics / 1e6:.1f} M rows, metrics.parquet {size:.0f} MB "
              f"(written in {time.perf_counter() - t:.1f} s)")
        view = _sub(_VIEW.format(repo=str(REPO), path=str(run), metric="h_move"))
        base = _sub(_PANDAS.format(path=str(run), metric="h_move"))
        fmt = lambda d: ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items())
        print(f"loader+figures, cold (s): {fmt(view['cold'])}")
        print(f"loader+figures, warm (s): {fmt(view['warm'])}")
        print(f"  imports {view['import_s']:.2f} s; peak RSS of that process {view['peak_rss_MB']:.0f} MB")
        print(f"RESULT view_cold_s={view['cold']['total']:.3f}")  # for benchmarks/run_all.py
        print(f"RESULT view_warm_s={view['warm']['total']:.3f}")
        print(f"RESULT view_peak_rss_MB={view['peak_rss_MB']:.0f}")
        print(f"pandas baseline: read whole metrics.parquet {base['read_all_s']:.2f} s, + filter one metric "
              f"{base['read_and_filter_s']:.2f} s, peak RSS {base['peak_rss_MB']:.0f} MB")
        if not args.no_browser:
            if not Path("/usr/bin/chromium").exists():
                print("browser: skipped (no /usr/bin/chromium)")
            else:
                print(f"served page in Chromium: {fmt(browser(root, 'h_move', 'g_sq'))}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
