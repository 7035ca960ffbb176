"""The Coord check page (pages/7_Coord_check.py) in AppTest, and in a real browser (a screenshot check).

Synthetic ladders written in the run format, with the slopes theory gives each parametrization: depth-μP flat
over widths and depths, sp's h_move ∝ 1/n over widths, width-only μP's h_sq ∝ L^2 over depths at τ > 0. The
page must list each ladder with its verdict (sp and depth-μP over widths, mup and depth-μP over depths, side
by side), draw the classic picture and the slopes, and put the failing rows first.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.boot import BOOT_KEY
from dynamics.config import RunConfig
from dynamics.coordcheck.figure import coord_figure, seed_means, slope_figure
from dynamics.coordcheck import find_ladders, fit_rows, gather
from dynamics.runs.store import list_runs, RunWriter

APP = Path(__file__).resolve().parents[1] / "app.py"
PAGE = "pages/7_Coord_check.py"
STEPS = (0, 1, 2)
WIDTHS, DEPTHS, SEEDS = (64, 128, 256, 512), (2, 4, 8), 4


def _run(root: Path, cfg: RunConfig, slopes: dict[str, tuple[float, float]], rng) -> None:
    """One run: metric = (x/64)^b_width · (L/2)^b_depth (b_depth only at τ > 0) · seed noise."""
    run_id = f"{cfg.param}_n{cfg.width}_L{cfg.depth}_s{cfg.seed}"
    if (root / run_id).exists():
        return
    w = RunWriter(root / run_id, {"run_id": run_id, "kind": "finite", "config": cfg.to_dict(), "steps_done": 2})
    layers = np.arange(cfg.depth + 1)
    for metric, (bw, bd) in slopes.items():
        for step in STEPS:
            if metric == "h_move" and step == 0:
                w.add_metrics(step, layers, metric, np.zeros(len(layers)))
                continue
            grow = np.where(layers > 0, (cfg.depth / 2) ** bd, 1.0)
            noise = np.exp(0.05 * rng.standard_normal(len(layers)))
            w.add_metrics(step, layers, metric, (1 + layers / cfg.depth) * (cfg.width / 64) ** bw * grow * noise)
    w.finish("complete")


def write_ladders(root: Path) -> Path:
    rng = np.random.default_rng(0)
    flat = {"h_sq": (0.0, 0.0), "h_move": (0.0, 0.0)}
    for param, slopes in (("depth-mup", flat), ("sp", {"h_sq": (0.0, 0.0), "h_move": (-1.0, 0.0)})):
        for n in WIDTHS:
            for s in range(SEEDS):
                _run(root, RunConfig(width=n, depth=2, param=param, seed=s, steps=2), slopes, rng)
    for param, slopes in (("depth-mup", flat), ("mup", {"h_sq": (0.0, 2.0), "h_move": (0.0, 2.0)})):
        for L in DEPTHS:
            for s in range(SEEDS):
                _run(root, RunConfig(width=64, depth=L, param=param, seed=s, steps=2), slopes, rng)
    return root


@pytest.fixture
def ladders_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(write_ladders(tmp_path / "runs")))
    return tmp_path / "runs"


def _page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=90).run()
    assert not at.exception
    at.switch_page(PAGE)
    return at.run()


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.key != BOOT_KEY]


def test_the_page_tells_sp_from_depth_mup_over_widths_and_mup_from_depth_mup_over_depths(ladders_dir):
    at = _page()
    assert not at.exception
    overview = at.dataframe[0].value.set_index("ladder")["verdict"].to_dict()
    assert overview == {"depth-mup relu · over width (depth 2)": "consistent",
                        "sp relu · over width (depth 2)": "inconsistent",
                        "depth-mup relu · over depth (width 64)": "consistent",
                        "mup relu · over depth (width 64)": "inconsistent"}
    assert at.success and "consistent" in at.success[0].value  # the first ladder: depth-μP over widths
    coord, slopes = _charts(at)
    assert coord["layout"]["xaxis"]["type"] == "log" and coord["layout"]["yaxis"]["type"] == "log"
    assert {t["name"] for t in coord["data"]} == {"τ = 0", "τ = 0.5", "τ = 1"}  # one line per layer

    at.selectbox(key="coordcheck_page.ladder").select("sp relu · over width (depth 2)").run()
    assert not at.exception and at.error and at.error[0].value.startswith("**inconsistent**")
    assert at.selectbox(key="coordcheck_page.metric").value == "h_move"  # the failing metric first
    coord, slopes = _charts(at)
    assert coord["layout"]["title"]["text"].startswith("h_move against width n")
    assert [t["text"][-1].split()[0] for t in coord["data"]] == ["✗"] * len(coord["data"])
    assert any(t["name"].startswith("✗ shrinks") for t in slopes["data"])
    failing = at.dataframe[1].value
    assert set(failing["judgement"]) == {"shrinks"} and (failing["ci_high"] < -0.5).all()
    assert at.query_params["ladder"] == "sp relu · over width (depth 2)"

    at.selectbox(key="coordcheck_page.ladder").select("mup relu · over depth (width 64)").run()
    coord, _ = _charts(at)
    assert at.error and coord["layout"]["xaxis"]["title"]["text"] == "depth L"
    assert {t["name"] for t in coord["data"]} == {"τ = 0", "τ = 0.5", "τ = 1"}  # the τ every depth has


def test_runs_without_a_ladder_get_the_command_that_makes_one(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    _run(root, RunConfig(width=64, depth=2, seed=0, steps=2), {"h_sq": (0.0, 0.0)}, np.random.default_rng(0))
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(root))
    at = _page()
    assert not at.exception and at.info and "no ladder" in at.info[0].value
    assert "python -m dynamics coordcheck" in at.code[0].value and not _charts(at)


def test_the_figures_on_a_small_ladder(tmp_path):
    ladder = next(l for l in find_ladders(list_runs(write_ladders(tmp_path / "runs"))) if l.setting["param"] == "sp")
    frame = gather(ladder)
    rows = fit_rows(frame, "width")
    points = seed_means(frame, "h_move", rows)
    assert set(points["step"]) == {1, 2} and (points["seeds"] == SEEDS).all()
    fig = coord_figure(points, rows, axis="width", metric="h_move", steps=[1, 2])
    assert len(fig.data) == 2 * 3 and [a.text for a in fig.layout.annotations] == [
        "step 1: 3 of 3 layers fail", "step 2: 3 of 3 layers fail"]
    fig = slope_figure(rows, metric="h_sq", axis="width")
    assert [t.name for t in fig.data] == ["✓ flat (9)"]


# --- in a browser ---------------------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_the_page_draws_in_a_browser(ladders_dir, tmp_path):
    """The page's two charts are drawn (lines with coordinates) with no exception; the screenshot is left at
    /tmp/coordcheck_page.png for a look."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    from tests.serving import CHART, CHROMIUM, CHROMIUM_ARGS, PLOTLY, serve_app, stop_server
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    env = {k: v for k, v in os.environ.items() if k != "DYNAMICS_RUNS"} | {"DYNAMICS_DATA_DIR": str(ladders_dir)}
    proc, base, log = serve_app(env, tmp_path / "streamlit.log", timeout=60)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
                page.goto(f"{base}/Coord_check?ladder=sp+relu+%C2%B7+over+width+%28depth+2%29")
                page.wait_for_selector(CHART, timeout=90_000)
                page.wait_for_function(f"() => document.querySelectorAll('{PLOTLY} .js-plotly-plot').length >= 2",
                                       timeout=90_000)
                page.get_by_test_id("stSelectbox").filter(has_text="Metric").wait_for(timeout=90_000)
                page.get_by_test_id("stDataFrame").first.wait_for(timeout=90_000)
                time.sleep(1.5)  # the tables' canvases draw after their frames appear
                assert page.locator(PLOTLY + " .scatterlayer .trace .js-line").count() >= 3
                assert page.get_by_test_id("stException").count() == 0
                assert "inconsistent" in page.get_by_test_id("stAlert").first.inner_text()
                page.screenshot(path="/tmp/coordcheck_page.png", full_page=True)
            finally:
                browser.close()
    finally:
        stop_server(proc, log)
