"""Load test of a hosted (shared, read-only) instance: N concurrent browser sessions for a while (issue 8).

    python benchmarks/load_test.py [--sessions 10] [--duration 120] [--data DIR]

Serves `streamlit run app.py` on 127.0.0.1 (a free port) with DYNAMICS_READONLY=1, the bundled runs (or --data),
and session folders in a temporary folder. In one Debian Chromium
(Playwright; never `playwright install`), N browser contexts each loop until the duration is over: upload a
small CSV run with a unique name through the Upload page's file input (odd-numbered sessions then also drop one
file of the attack corpus, tests/attack_files.py, and check that it ends in its one-line refusal or an import),
then switch pages through the sidebar
(Runs, Trajectories, Coupling, home), timing each switch until the page's main element is drawn. On the Runs
page a session reads the run table and checks that it sees all of its own uploads and
none of another session's. Every page is checked for a Streamlit exception box. A thread samples the server's
RSS every second (and reads its peak, VmHWM, at the end). Counts the session folders left (they live until the
hosted TTL) and staging folders left (leaks: should be 0). Prints latency p50/p95 per switch, errors, RSS.
Loopback only; every wait is bounded; the server is always stopped.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.attack_files import corpus  # noqa: E402
from tests.serving import CHART, CHROMIUM, CHROMIUM_ARGS, serve_app, stop_server  # noqa: E402
# sidebar link text -> (page title, (selector, how many) that means "drawn"; none of these is on the page before)
PAGES = {"Runs": ("Runs", (CHART, 1)), "Trajectories": ("Trajectories", (CHART, 3)),
         "Coupling": ("Transpose coupling", (f'[data-testid="stCode"], {CHART}', 1)),
         "app": ("Feature-learning", ('[data-testid="stMetric"]', 1))}
WAIT_MS = 120_000
# attacks mixed into the load (the 55 MB drop too: its bytes must be released at once)
ATTACKS = ("hugedepth", "grid", "wide_parquet", "zip_bomb", "bidi_name", "many_files", "markdown_column",
           "long_parquet", "big_drop", "width_abc")


def _csv(tag: str) -> bytes:
    rows = "".join(f"{s},{l},h_sq,{1 + l / 10 + s / 100 + len(tag) / 1000}\n" for s in (0, 10) for l in range(5))
    return ("step,layer,metric,value\n" + rows + "0,-1,loss,1.0\n10,-1,loss,0.5\n").encode()


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _attack(page, k: int, n: int, stats: dict, drops: dict) -> None:
    """Drop one attack of the corpus; it must end in its one-line refusal (or import, for the harmless ones)."""
    name = ATTACKS[(k + n) % len(ATTACKS)]
    paths, refusal = drops[name]
    stats["where"][k] = f"attack {name}"
    outcome = "[data-testid=stAlert]"
    before = await page.locator(outcome, has_text=re.compile("was not imported|imported as run")).count()
    t0 = time.monotonic()
    await page.locator('[data-testid="stFileUploader"] input[type=file]').set_input_files(files=paths)
    data = len([p for p in paths if not p.endswith(".json")])
    await page.wait_for_function(
        "n => [...document.querySelectorAll('[data-testid=stAlert]')].filter(e => "
        "/was not imported|imported as run/.test(e.innerText)).length >= n", arg=before + data, timeout=WAIT_MS)
    stats["attack"].append(time.monotonic() - t0)
    texts = await page.locator(outcome, has_text=re.compile("was not imported|imported as run")).all_inner_texts()
    for text in texts[:data]:  # newest first
        ok = ("imported as run" in text) if refusal is None else ("was not imported" in text and refusal in text)
        if not ok or "Traceback" in text or "/tmp/" in text:
            stats["errors"].append(f"session {k}: attack {name} ended in {text[:160]!r}")


async def _session(browser, base: str, k: int, deadline: float, stats: dict, drops: dict) -> None:
    from playwright.async_api import TimeoutError as PWTimeout
    ctx = await browser.new_context(viewport={"width": 1300, "height": 1000})
    page, mine, prefix = await ctx.new_page(), set(), f"lt-s{k:02d}-"
    page.set_default_timeout(WAIT_MS)

    async def check(where: str) -> None:
        if await page.get_by_test_id("stException").count():
            stats["errors"].append(f"session {k}: exception on {where}")

    async def switch(label: str) -> None:
        title, ready = PAGES[label]
        stats["where"][k] = f"switch to {label}"
        t0 = time.monotonic()
        await page.get_by_test_id("stSidebarNav").get_by_text(label, exact=True).click()
        await page.locator("h1", has_text=title).first.wait_for()
        await page.wait_for_function("([s, n]) => document.querySelectorAll(s).length >= n", arg=list(ready),
                                     timeout=WAIT_MS)
        stats["switch"].append(time.monotonic() - t0)
        await check(label)

    try:
        t0 = time.monotonic()
        await page.goto(f"{base}/Upload")
        await page.locator('[data-testid="stFileUploader"] input[type=file]').wait_for(state="attached")
        stats["first"].append(time.monotonic() - t0)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            name = f"{prefix}u{n}"
            if n > 1:
                await page.get_by_test_id("stSidebarNav").get_by_text("Upload", exact=True).click()
            t0 = time.monotonic()
            stats["where"][k] = f"upload {name}"
            await page.locator('[data-testid="stFileUploader"] input[type=file]').set_input_files(
                files=[{"name": f"{name}.csv", "mimeType": "text/csv", "buffer": _csv(name)}])
            await page.get_by_text(re.compile(rf"imported as run {name}\b")).first.wait_for()
            stats["upload"].append(time.monotonic() - t0)
            mine.add(name)
            await check("Upload")
            if k % 2:
                await _attack(page, k, n, stats, drops)
                await check("Upload (attack)")
            for label in ("Runs", "Trajectories", "Coupling", "app"):
                await switch(label)
                if label == "Runs":  # the run table's cells (the grid's accessible cells; few rows: none hidden)
                    table = page.get_by_test_id("stDataFrame").first
                    try:  # the grid fills its accessible cells a moment after it is painted
                        await table.locator('[role="gridcell"]', has_text=name).first.wait_for(state="attached",
                                                                                         timeout=30_000)
                    except PWTimeout:
                        pass  # reported below as missing
                    cells = await table.locator('[role="gridcell"]').all_text_contents()  # an offscreen table
                    labels = {t.strip() for t in cells}
                    foreign = {l for l in labels if l.startswith("lt-s") and not l.startswith(prefix)}
                    if foreign or not mine <= labels:
                        stats["errors"].append(f"session {k}: sees {sorted(foreign)}, misses {sorted(mine - labels)} "
                                              f"(table: {sorted(labels)[:12]})")
            stats["cycles"] += 1
    except PWTimeout as e:
        stats["errors"].append(f"session {k}: timeout in {stats['where'].get(k, '?')} ({str(e).splitlines()[0][:120]})")
    finally:
        await ctx.close()


def _drops(folder: Path) -> dict:
    """The attack corpus written to files (Playwright takes no buffer over 50 MB): name -> (paths, refusal)."""
    out = {}
    for name, (drop, refusal) in corpus(ATTACKS).items():
        (folder / name).mkdir(parents=True)
        for n, b in drop:
            (folder / name / n).write_bytes(b)
        out[name] = ([str(folder / name / n) for n, _ in drop], refusal)
    return out


async def _drive(base: str, n: int, duration: float, stats: dict, drops: dict) -> None:
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            deadline = time.monotonic() + duration
            await asyncio.wait_for(asyncio.gather(*(_session(browser, base, k, deadline, stats, drops) for k in range(n))),
                                   timeout=duration + 4 * WAIT_MS / 1000)
        finally:
            await browser.close()


def _pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else (xs or [float("nan")])[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of page switching and uploading")
    ap.add_argument("--data", default=str(REPO / "data"), help="the bundled runs (default: the repo's data/)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dynamics-load-"))
    uploads = tmp / "uploads"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMICS_")} | {
        "DYNAMICS_READONLY": "1", "DYNAMICS_DATA_DIR": a.data, "DYNAMICS_UPLOAD_DIR": str(uploads)}
    try:
        proc, base, log = serve_app(env, tmp / "streamlit.log", timeout=60)
    except RuntimeError as e:
        sys.exit(f"streamlit did not start: {e}")
    rss, stop = [], threading.Event()
    stats = {"switch": [], "upload": [], "attack": [], "first": [], "errors": [], "cycles": 0,
             "where": {}}
    drops = _drops(tmp / "attacks")
    try:
        def sample() -> None:
            while not stop.wait(1.0):
                rss.append(_rss_mb(proc.pid))
        threading.Thread(target=sample, daemon=True).start()
        t0 = time.monotonic()
        asyncio.run(_drive(base, a.sessions, a.duration, stats, drops))
        wall = time.monotonic() - t0
        left = sum(1 for _ in uploads.iterdir()) if uploads.is_dir() else 0
        staged = [p for p in uploads.glob("*/.*")] if uploads.is_dir() else []
        hwm = _peak_mb(proc.pid)
    finally:
        stop.set()
        stop_server(proc, log)
    sw, up = stats["switch"], stats["upload"]
    print(f"{a.sessions} sessions, {a.duration:g} s of load ({wall:.0f} s wall), {stats['cycles']} full cycles, "
          f"{len(sw)} page switches, {len(up)} uploads")
    print(f"first page: max {max(stats['first'], default=float('nan')):.1f} s")
    print(f"page switch: p50 {_pct(sw, 50):.2f} s, p95 {_pct(sw, 95):.2f} s, max {max(sw, default=float('nan')):.2f} s")
    print(f"upload until imported: p50 {_pct(up, 50):.2f} s, p95 {_pct(up, 95):.2f} s")
    at = stats["attack"]
    print(f"attack drops: {len(at)}, until their outcome p50 {_pct(at, 50):.2f} s, max {max(at, default=float('nan')):.2f} s")
    print(f"errors: {len(stats['errors'])}" + "".join(f"\n  {e}" for e in stats["errors"][:20]))
    print(f"server RSS: min {min(rss, default=float('nan')):.0f} MB, max {max(rss, default=float('nan')):.0f} MB "
          f"({len(rss)} samples); peak (VmHWM) {hwm:.0f} MB")
    print(f"leaks: {len(staged)} staging/import folders left" + "".join(f"\n  {p}" for p in staged[:5]))
    print(f"session folders left: {left} (one per session until the hosted TTL sweeps them)")
    print(f"server log: {tmp / 'streamlit.log'}")
    sys.exit(1 if stats["errors"] or staged or hwm >= 1024 else 0)


if __name__ == "__main__":
    main()
