"""The dashboard in a real browser: `streamlit run app.py` + Playwright on Debian's Chromium.

Checks what AppTest cannot: the charts are drawn, a widget change reaches the URL, and opening that URL in a
fresh browser context restores the view; and, on the bundled data in hosted (read-only) mode, every page and one
link of each kind (evidence, runs) per target page of the home page's claims table opens without an exception
and with no empty chart (screenshots in /tmp/dashboard_shots/). Leaves screenshots at /tmp/runs_page.png and /tmp/trajectories.png too.
Skipped when /usr/bin/chromium or the playwright package is missing; never downloads a browser.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from dashboard.boot import BOOT_KEY
from tests.serving import CHART, CHROMIUM, CHROMIUM_ARGS, PLOTLY, serve_app, stop_server

REPO = Path(__file__).resolve().parents[1]
TITLE = PLOTLY + ' .js-plotly-plot .gtitle'
SCREENSHOT = Path("/tmp/runs_page.png")

# CI sets DYNAMICS_REQUIRE_BROWSER=1 so that a missing browser fails the run instead of skipping it
if os.environ.get("DYNAMICS_REQUIRE_BROWSER") == "1":
    from playwright import sync_api
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")]


@pytest.fixture
def server(runs_dir, tmp_path):
    """`streamlit run app.py` on a free port with the fixture runs as the bundled data; always stopped."""
    env = {k: v for k, v in os.environ.items() if k != "DYNAMICS_RUNS"} | {"DYNAMICS_DATA_DIR": str(runs_dir)}
    yield from _served(env, tmp_path)


def _served(env: dict, tmp_path):
    """Serve the app with `env` on a free port, yield its base URL, always stop it (both server fixtures)."""
    try:  # generous: CI machines may be shared and slow
        proc, base, log = serve_app(env, tmp_path / "streamlit.log", timeout=60)
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        yield base
    finally:
        stop_server(proc, log)


def _wait_for_chart(page, title: str) -> None:
    page.wait_for_selector(CHART, timeout=90_000)  # generous: CI machines may be shared and slow
    page.wait_for_function(
        "([sel, t]) => [...document.querySelectorAll(sel)].some(e => e.textContent.includes(t))",
        arg=[TITLE, title], timeout=90_000)
    # a drawn chart, not an empty frame: one line path per run with real coordinates
    n_lines = page.locator(PLOTLY + ' .scatterlayer .trace .js-line').count()
    assert n_lines >= 2, "the chart has no drawn lines"
    assert page.get_by_test_id("stException").count() == 0


def test_runs_page_state_round_trips_through_the_url(server, tmp_path):
    timings = {}
    with sync_api.sync_playwright() as p:
        t0 = time.monotonic()
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        timings["launch"] = time.monotonic() - t0
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            t0 = time.monotonic()
            page.goto(f"{server}/Runs")
            _wait_for_chart(page, "h_sq over depth at step 20")
            timings["first chart"] = time.monotonic() - t0

            t0 = time.monotonic()
            page.get_by_test_id("stSelectbox").filter(has_text="Metric").click()
            page.get_by_role("option", name=re.compile(r"^g_sq")).click()
            page.wait_for_function("() => location.search.includes('metric=g_sq')", timeout=15_000)
            _wait_for_chart(page, "g_sq over depth at step 20")
            timings["metric change"] = time.monotonic() - t0
            url = page.url
            assert "runs=w128-d4" in url and "runs=w64-d4" in url and "step=20" in url

            # a fresh context has no session: the view must come from the URL alone
            # tall viewport: Streamlit scrolls inside its own container, so full_page would cut the chart
            fresh = browser.new_context(viewport={"width": 1400, "height": 1700}).new_page()
            t0 = time.monotonic()
            fresh.goto(url)
            _wait_for_chart(fresh, "g_sq over depth at step 20")
            timings["fresh open"] = time.monotonic() - t0
            assert fresh.get_by_role("combobox", name="Metric").input_value().startswith("g_sq")
            assert fresh.evaluate("location.search") == page.evaluate("location.search")
            fresh.wait_for_timeout(500)  # let plotly finish its transition before the picture
            fresh.screenshot(path=str(tmp_path / "runs_page.png"))
            shutil.copyfile(tmp_path / "runs_page.png", SCREENSHOT)
        finally:
            browser.close()
    print("browser timings (s):", {k: round(v, 2) for k, v in timings.items()})


def _wait_for_title(page, title: str) -> None:
    page.wait_for_function(
        "([sel, t]) => [...document.querySelectorAll(sel)].some(e => e.textContent.includes(t))",
        arg=[TITLE, title], timeout=90_000)


def test_trajectories_page_state_round_trips_through_the_url(server, tmp_path):
    """Lazy tabs: the page opens on the heatmap alone; the open tab, like every widget, lives in the URL."""
    painted = f'{PLOTLY} .heatmaplayer image, {PLOTLY} .hm image'
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(f"{server}/Trajectories")
            _wait_for_title(page, "h_sq: w128-d4")
            assert page.locator(painted).count() == 1  # the heatmap is painted ...
            assert page.locator(PLOTLY).count() == 1  # ... and no other view is sent
            assert page.locator(f".st-key-{BOOT_KEY}").count() == 1  # boot's empty chart: sent, never shown
            assert page.locator(f".st-key-{BOOT_KEY}").is_hidden()
            train = page.get_by_role("button", name="Train", exact=True)
            assert train.count() == 0  # the sidebar's training form is built only once its expander is opened
            page.get_by_text("Train a small run").click()
            train.wait_for(timeout=15_000)
            page.get_by_role("tab", name="Over steps").click()
            page.wait_for_function("() => location.search.includes('view=Over')", timeout=15_000)
            _wait_for_chart(page, "h_sq over steps")
            page.get_by_test_id("stSelectbox").filter(has_text="Metric").click()
            page.get_by_role("option", name=re.compile(r"^g_sq")).click()
            page.wait_for_function("() => location.search.includes('metric=g_sq')", timeout=15_000)
            _wait_for_chart(page, "g_sq over steps")
            url = page.url
            assert "runs=w128-d4" in url and "tau=0.5" in url and re.search(r"view=Over(\+|%20)steps", url)

            fresh = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
            fresh.goto(url)
            _wait_for_chart(fresh, "g_sq over steps")
            assert fresh.get_by_role("tab", name="Over steps").get_attribute("aria-selected") == "true"
            assert fresh.get_by_role("combobox", name="Metric").input_value().startswith("g_sq")
            assert fresh.locator(PLOTLY).count() == 1
            fresh.wait_for_timeout(800)
            fresh.screenshot(path=str(tmp_path / "trajectories.png"))
            shutil.copyfile(tmp_path / "trajectories.png", "/tmp/trajectories.png")
            fresh.get_by_role("tab", name="Layer × step").click()
            _wait_for_title(fresh, "g_sq: w128-d4")
            fresh.wait_for_function("() => !location.search.includes('view=')", timeout=15_000)  # the default
            assert fresh.locator(painted).count() == 1
        finally:
            browser.close()


SHOTS = Path("/tmp/dashboard_shots")
PAGES = ["", "Claims", "Runs", "Trajectories", "Limit", "Coupling", "Scaling", "Upload"]
# per chart: the drawn marks (line paths with points, markers, heatmap images, filled bands); 0 = an empty chart
MARKS = """() => [...document.querySelectorAll('PLOTLY .js-plotly-plot')].map(p => ({
    title: (p.querySelector('.gtitle') || {}).textContent || '',
    marks: [...p.querySelectorAll('.scatterlayer path.js-line, .scatterlayer path.js-fill')]
             .filter(e => (e.getAttribute('d') || '').length > 8).length
           + p.querySelectorAll('.scatterlayer .point, .heatmaplayer image, .hm image').length}))""".replace("PLOTLY", PLOTLY)


@pytest.fixture
def hosted_server(tmp_path):
    """The bundled data (data/, with its claims and their runs) served in hosted, read-only mode."""
    env = {k: v for k, v in os.environ.items() if k not in ("DYNAMICS_RUNS", "DYNAMICS_DATA_DIR")} | {
        "DYNAMICS_READONLY": "1", "DYNAMICS_UPLOAD_DIR": str(tmp_path / "uploads")}
    yield from _served(env, tmp_path)


def _settle(page, charts: bool) -> None:
    """Wait until the script run ends (no running indicator) and, if charts are expected, one is drawn."""
    page.wait_for_selector(CHART if charts else '[data-testid="stMain"] h1', timeout=90_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=90_000)
    page.wait_for_timeout(700)  # let plotly finish drawing


def test_every_page_and_every_claims_link_opens_with_drawn_charts(hosted_server):
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    timings = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            # tall: Streamlit scrolls inside its own container, so a full-page shot is only the viewport
            page = browser.new_context(viewport={"width": 1400, "height": 3400}).new_page()
            page.goto(hosted_server + "/")
            _settle(page, charts=False)
            page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)  # drawn after the whole claims table
            _settle(page, charts=False)
            links = page.eval_on_selector_all('[data-testid="stPageLink"] a', "es => es.map(e => e.href)")
            claims = list(dict.fromkeys(u for u in links if "?" in u))  # a link with a tooltip has two anchors
            assert len(claims) >= 14, links  # an evidence link per claim, a runs link for each with bundled runs
            # one link of each kind per target page in the browser (≈5 s each); that every claim's link shows
            # that claim's evidence is tests/test_evidence.py's job, through the same query parameters
            kinds = {(u.split("?")[0], "claim=" in u): u for u in reversed(claims)}
            claims = [u for u in claims if u in kinds.values()]
            urls = [(f"page_{k}_{name or 'Home'}", f"{hosted_server}/{name}") for k, name in enumerate(PAGES)]
            urls += [(f"link_{k:02d}_{u.split('/')[-1].split('?')[0]}", u) for k, u in enumerate(claims)]
            for name, url in urls:
                t0 = time.monotonic()
                page.goto(url)
                _settle(page, charts=not name.endswith(("Home", "Upload")))
                if name.endswith("Home"):  # the claims table's links are its last elements to draw
                    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stPageLink\"] a')"
                                           ".length >= 14 && !document.querySelector('[data-testid=\"stSkeleton\"]')",
                                           timeout=60_000)
                timings[name] = round(time.monotonic() - t0, 1)
                page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
                assert page.get_by_test_id("stException").count() == 0, (name, url)
                drawn = page.evaluate(MARKS)
                assert all(c["marks"] > 0 for c in drawn), (name, url, drawn)
                if "claim=" in url:  # the evidence of that very claim
                    cid = url.split("claim=")[1].split("&")[0]
                    assert any(c["title"].startswith(cid + ":") for c in drawn), (name, drawn)
            # the picked runs follow the user through the sidebar's page list
            page.goto(f"{hosted_server}/Runs?runs=limitdemo_tanh_n1024_L8_reused")
            _settle(page, charts=True)
            page.get_by_test_id("stSidebar").get_by_text("Coupling", exact=True).click()
            page.wait_for_function("() => location.pathname.endsWith('/Coupling')", timeout=30_000)
            page.wait_for_function("() => location.search.includes('runs=limitdemo_tanh_n1024_L8_reused')",
                                   timeout=60_000)
            _settle(page, charts=True)
            assert "runs=depth" not in page.url  # not the page's defaults added
            page.screenshot(path=str(SHOTS / "selection_followed_to_Coupling.png"))
        finally:
            browser.close()
    print("seconds per page:", timings)
