"""The browser half of benchmarks/vs_tensorboard.py: time until the first chart is drawn, ours against TensorBoard,
on the same scalars (issue #19).

Each measurement opens a fresh headless Chromium (Debian's, through Playwright; no cache, no profile) and times
"navigation start → first chart drawn" inside the page (`performance.now()` when the check first passes, polled
every 25 ms):
  - ours: a Plotly chart of the dashboard holds a drawn trace (an SVG trace group, a heatmap image or a WebGL
    canvas) — the page is opened at `/Trajectories?runs=<run>&metric=m0`, the layer × step heatmap of the run
    imported from the event file;
  - TensorBoard: the canvas of one of its first scalar cards (`scalar-card line-chart canvas`) holds painted pixels
    (the line: TensorBoard draws lines into a canvas; its axes and grid are SVG, so they do not count).
Kinds, in interleaved rounds (ours, TensorBoard, then TensorBoard, ours, … so background load hits both alike):
  - cold: a fresh server (started, then ready: Streamlit's /_stcore/health answers; TensorBoard lists its scalars
    plugin, i.e. it has read some of the file — a page opened earlier says "No dashboards are active" and stays
    so, which would time TensorBoard's reload interval, not its drawing) and a fresh browser;
  - warm: the same server again, a second fresh browser;
  - floor (ours only): a bare Streamlit app with one small Plotly chart, on a fresh server and browser: what
    Streamlit and Plotly take before any page of ours does anything;
  - widget (ours only; the target is < 1 s): on the warm page, pick metric m1 in the Metric box and time until
    the m1 heatmap is drawn (its title changes).
Then each page of the dashboard once, each on its own fresh server and browser, at its default view.
TensorBoard's server answers before it has read the whole event file (it loads in the background and draws what
it has: the benchmark prints the last step it served just after its chart was drawn and photographed, an upper
bound on what that chart showed); ours reads a run that
`python -m dynamics import` wrote before (its time is the import benchmark's).
"""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.serving import CHROMIUM, CHROMIUM_ARGS, free_port, serve_app, stop_server  # noqa: E402

# a Plotly chart with a drawn trace; `title` (optional) must appear in a chart's title
OURS_DRAWN = """(title) => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.offsetParent !== null &&
  g.querySelector('.plot .trace, .plot image, .hm image, .gl-container canvas, .scatterlayer path.js-line')
  && (!title || [...g.querySelectorAll('.gtitle')].some(e => e.textContent.includes(title)))) && performance.now()"""
# a TensorBoard scalar card (any of the first few) whose line canvas has painted (non-transparent) pixels
TB_DRAWN = """() => { for (const c of [...document.querySelectorAll('scalar-card line-chart canvas')].slice(0, 8)) {
  if (!c.width || !c.height) continue;
  const t = document.createElement('canvas'); t.width = c.width; t.height = c.height;
  const x = t.getContext('2d'); x.drawImage(c, 0, 0); const d = x.getImageData(0, 0, t.width, t.height).data;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return performance.now(); }
  return false; }"""
# every page that draws a chart, at its default view (the runs it picks by itself); Home and Upload draw none
PAGES = ("Claims", "Runs", "Trajectories", "Limit", "Coupling", "Scaling")


def _scalars_listed(base: str) -> bool:
    """TensorBoard lists its scalars plugin as enabled once it has read some scalars (a page opened before that
    says "No dashboards are active" and stays so until reloaded)."""
    with urllib.request.urlopen(base + "/data/plugins_listing", timeout=2) as r:
        return bool(json.loads(r.read()).get("scalars", {}).get("enabled"))


def serve_tensorboard(logdir: Path, log_path: Path, timeout: float = 120.0) -> tuple[subprocess.Popen, str, object]:
    """`tensorboard --logdir` on a free loopback port; returns once it answers and lists its scalars plugin
    (process, base URL, log)."""
    port, log = free_port(), open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if _scalars_listed(base):
                return proc, base, log
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    stop_server(proc, log)
    raise RuntimeError(f"tensorboard did not answer in {timeout:g} s:\n{Path(log_path).read_text()[-2000:]}")


def serve_ours(runs_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str, object]:
    """The dashboard with the benchmark's runs as the user's folder (bundled examples as usual)."""
    env = {k: v for k, v in os.environ.items() if k != "DYNAMICS_READONLY"} | {"DYNAMICS_RUNS": str(runs_dir)}
    return serve_app(env, log_path, timeout=120)


# the floor under any page of ours: a bare Streamlit app drawing one small Plotly chart (Streamlit's own page
# scripts, its websocket, Plotly's 4.7 MB chunk, one draw), served and opened the same way
BARE_APP = """import plotly.graph_objects as go
import streamlit as st
st.plotly_chart(go.Figure(go.Scatter(y=[1, 3, 2], mode="lines")))
"""


def serve_bare(work: Path) -> tuple[subprocess.Popen, str, object]:
    app = work / "bare_app.py"
    app.write_text(BARE_APP)
    return serve_app(dict(os.environ), work / "bare.log", timeout=120, script=app)


def first_chart(pw, url: str, check: str, arg=None, shot: Path | None = None, then=None) -> tuple[float, object]:
    """A fresh Chromium opens `url`; seconds from navigation start until `check` passes (measured in the page).
    `then(page)` runs on the open page before the browser closes; returns (seconds, its result)."""
    b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        page = b.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(url, wait_until="commit")
        try:
            ms = page.wait_for_function(check, arg=arg, polling=25, timeout=180_000).json_value()
        except Exception as e:  # Playwright's TimeoutError: keep a picture of what the page showed
            if shot:
                page.screenshot(path=str(shot))
            raise RuntimeError(f"no chart drawn at {url} within 180 s ({type(e).__name__})") from None
        if shot:
            page.screenshot(path=str(shot))
        return ms / 1000, then(page) if then else None
    finally:
        b.close()


def tb_last_step(page) -> int:
    """The last step TensorBoard serves for the first card's tag now, just after the draw (it loads the file in
    the background, so a chart drawn early may show only the first part of the run)."""
    return int(page.evaluate("""async () => {
      const tag = document.querySelector('scalar-card tb-truncated-path').getAttribute('title');
      const r = await fetch('data/plugin/scalars/scalars?run=.&tag=' + encodeURIComponent(tag));
      const d = await r.json(); return d.length ? d[d.length - 1][1] : -1; }"""))


def widget_change(page) -> float:
    """Seconds from picking metric m1 in the Metric box until the m1 heatmap is drawn."""
    page.get_by_test_id("stSelectbox").filter(has_text="Metric").click()
    option = page.get_by_role("option", name=re.compile(r"^m1(:|$)"))  # the name, then its caption (its source)
    option.wait_for()
    t0 = page.evaluate("performance.now()")  # before the click: the app reacts as the click lands
    option.click()
    t1 = page.wait_for_function(OURS_DRAWN, arg="m1:", polling=25, timeout=180_000).json_value()
    return (t1 - t0) / 1000


def compare(runs_dir: Path, logdir: Path, run: str, rounds: int, work: Path, pages: bool = True,
            shots: Path | None = None) -> dict[str, list[float]]:
    """Interleaved rounds of cold / warm first chart for both tools and ours' widget change, then each page of
    ours once cold. Returns lists of seconds keyed "<kind>_ours" / "<kind>_tb" and "page_<name>", and the last
    step TensorBoard served when its chart was drawn ("<kind>_tb_last_step")."""
    from playwright.sync_api import sync_playwright
    url = f"/Trajectories?runs={run}&metric=m0"
    out: dict[str, list[float]] = {}
    add = lambda k, v: out.setdefault(k, []).append(v)  # noqa: E731
    with sync_playwright() as pw:
        for r in range(rounds):
            for tool in (("ours", "tb") if r % 2 == 0 else ("tb", "ours")):
                shot = shots / f"{tool}_round{r}.png" if shots and r == 0 else None
                if tool == "ours":
                    proc, base, log = serve_bare(work)  # the floor first, in the same slot of the round
                    try:
                        add("cold_floor", first_chart(pw, base + "/", OURS_DRAWN)[0])
                    finally:
                        stop_server(proc, log)
                    proc, base, log = serve_ours(runs_dir, work / "ours.log")
                    try:
                        add("cold_ours", first_chart(pw, base + url, OURS_DRAWN, "m0:", shot)[0])
                        s, w = first_chart(pw, base + url, OURS_DRAWN, "m0:", then=widget_change)
                        add("warm_ours", s)
                        add("widget_ours", w)
                    finally:
                        stop_server(proc, log)
                else:
                    proc, base, log = serve_tensorboard(logdir, work / "tb.log")
                    try:
                        for kind, sh in (("cold", shot), ("warm", None)):
                            s, last = first_chart(pw, base + "/", TB_DRAWN, shot=sh, then=tb_last_step)
                            add(f"{kind}_tb", s)
                            add(f"{kind}_tb_last_step", last)
                    finally:
                        stop_server(proc, log)
        for name in PAGES if pages else ():
            proc, base, log = serve_ours(runs_dir, work / "ours.log")
            try:
                shot = shots / f"page_{name}.png" if shots else None
                add(f"page_{name}", first_chart(pw, f"{base}/{name}", OURS_DRAWN, "", shot)[0])
            finally:
                stop_server(proc, log)
    return out
