"""The user's own run, in a real browser (`streamlit run app.py` + Playwright on Debian's Chromium), local mode:
upload a zipped TensorBoard folder written by torch's SummaryWriter (a 4-layer MLP: `layer{i}/grad_norm`,
`layer{i}/act_rms`, `train/loss`, 30 steps), then see it drawn on Runs and Trajectories without touching a control,
reload and still see it, and train a run from the page and see that one drawn. Screenshots in /tmp/journey/.
Skipped when /usr/bin/chromium or the playwright package is missing; never downloads a browser.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.serving import CHART, CHROMIUM, CHROMIUM_ARGS, PLOTLY, serve_app, stop_server

if os.environ.get("DYNAMICS_REQUIRE_BROWSER") == "1":
    from playwright import sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytest.importorskip("tensorboard", reason="torch.utils.tensorboard needs the tensorboard package")

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")]
TITLE = PLOTLY + " .js-plotly-plot .gtitle"
SHOTS = Path("/tmp/journey")


def _tb_zip(tmp_path: Path) -> Path:
    """A TensorBoard log folder of a 4-layer MLP trained for 30 steps, zipped as a user would."""
    import torch
    from torch.utils.tensorboard import SummaryWriter
    torch.manual_seed(0)
    layers = [torch.nn.Linear(16 if i == 0 else 32, 32) for i in range(4)]
    head = torch.nn.Linear(32, 1)
    opt = torch.optim.SGD([p for m in [*layers, head] for p in m.parameters()], lr=0.05)
    x, y = torch.randn(64, 16), torch.randn(64, 1)
    folder = tmp_path / "tb_mlp"
    with SummaryWriter(str(folder)) as w:
        for step in range(30):
            h, acts = x, []
            for m in layers:
                h = torch.relu(m(h))
                acts.append(h)
            loss = ((head(h) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            for i, (m, a) in enumerate(zip(layers, acts)):
                w.add_scalar(f"layer{i}/grad_norm", m.weight.grad.norm().item(), step)
                w.add_scalar(f"layer{i}/act_rms", a.pow(2).mean().sqrt().item(), step)
            w.add_scalar("train/loss", loss.item(), step)
            opt.step()
    out = tmp_path / "tb_mlp.zip"
    with zipfile.ZipFile(out, "w") as z:
        for f in folder.rglob("*"):
            z.write(f, f.relative_to(tmp_path))
    return out


def _settle(page) -> None:
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=90_000)
    page.wait_for_timeout(700)


def _title(page, text: str) -> None:
    page.wait_for_selector(CHART, timeout=90_000)
    page.wait_for_function(
        "([sel, t]) => [...document.querySelectorAll(sel)].some(e => e.textContent.includes(t))",
        arg=[TITLE, text], timeout=90_000)


def _titles(page) -> list[str]:
    return page.eval_on_selector_all(TITLE, "es => es.map(e => e.textContent)")


def _nav(page, label: str, path: str) -> None:
    page.get_by_test_id("stSidebar").get_by_text(label, exact=True).click()
    page.wait_for_function(f"() => location.pathname.endsWith('/{path}')", timeout=30_000)


def test_upload_see_reload_and_train_from_the_page(runs_dir, tmp_path):
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    archive = _tb_zip(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("DYNAMICS_RUNS", "DYNAMICS_READONLY")} | {
        "DYNAMICS_DATA_DIR": str(runs_dir), "DYNAMICS_UPLOAD_DIR": str(tmp_path / "uploads")}
    try:
        proc, base, log = serve_app(env, tmp_path / "streamlit.log", timeout=60)
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
                page.goto(f"{base}/Upload")
                _settle(page)
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(archive))
                page.get_by_text("imported as run").wait_for(timeout=90_000)
                assert page.get_by_text("tb_mlp").count() >= 1
                page.screenshot(path=str(SHOTS / "1_upload.png"))

                _nav(page, "Runs", "Runs")  # the sidebar's page list: the same browser session
                _title(page, "over depth at step 29")   # the upload's own last step, not a bundled run's 20
                _settle(page)
                assert "runs=tb_mlp" in page.url and "runs=w64" not in page.url and "runs=w128" not in page.url
                assert page.get_by_text("Not recorded at step").count() == 0
                page.screenshot(path=str(SHOTS / "2_runs.png"))

                _nav(page, "Trajectories", "Trajectories")
                _title(page, ": tb_mlp")               # the heatmap is the user's run
                _settle(page)
                page.screenshot(path=str(SHOTS / "3_trajectories.png"))

                page.reload()                             # F5: a new session, the upload is still there
                try:
                    _title(page, ": tb_mlp")
                except Exception:
                    page.screenshot(path=str(SHOTS / "3b_reload_failed.png"))
                    raise
                _settle(page)
                assert page.get_by_test_id("stException").count() == 0
                assert page.get_by_text("Not found").count() == 0

                page.get_by_text("Train a small run").click()
                steps = page.get_by_label("steps")
                steps.wait_for(timeout=30_000)
                steps.fill("3")  # inside a form: no Enter, which would submit it before the folder is typed
                page.get_by_label("into folder").fill(str(tmp_path / "mine"))
                page.get_by_role("button", name="Train", exact=True).click()
                page.get_by_text("it is in the run picker").wait_for(timeout=180_000)
                trained = [d.name for d in (tmp_path / "mine").iterdir() if (d / "run.json").exists()]
                assert len(trained) == 1
                page.wait_for_function(
                    "([sel, t]) => [...document.querySelectorAll(sel)].some(e => e.textContent.includes(t))",
                    arg=[TITLE, trained[0][:20]], timeout=90_000)  # the new run is the one drawn
                _settle(page)
                assert page.get_by_test_id("stException").count() == 0
                page.screenshot(path=str(SHOTS / "4_trained.png"))
            finally:
                browser.close()
    finally:
        stop_server(proc, log)


def test_a_live_run_redraws_without_a_reload(runs_dir, tmp_path):
    """A run still training (our writer, this process's heartbeat) is drawn, then flushes more steps: the page
    redraws them by itself (dashboard.live), with no reload and no click."""
    import numpy as np
    from dynamics.runs.store import NETWORK_LAYER, RunWriter
    w = RunWriter(tmp_path / "mine" / "training", {"run_id": "training", "kind": "finite",
                                                    "config": {"depth": 2, "width": 8}}, flush_seconds=0)
    w.add_metrics(np.arange(3), NETWORK_LAYER, "loss", np.array([1.0, 0.8, 0.7]))
    w.flush()
    env = {k: v for k, v in os.environ.items() if k not in ("DYNAMICS_READONLY",)} | {
        "DYNAMICS_DATA_DIR": str(runs_dir), "DYNAMICS_RUNS": str(tmp_path / "mine"),
        "DYNAMICS_UPLOAD_DIR": str(tmp_path / "uploads")}
    try:
        proc, base, log = serve_app(env, tmp_path / "streamlit.log", timeout=60)
    except RuntimeError as e:
        pytest.fail(str(e))
    # the markers drawn (a line of at most 60 points has one per point)
    points = ("() => document.querySelectorAll('" + PLOTLY.replace('"', '\\"') +
              " .scatterlayer .trace .points path').length")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
                page.goto(f"{base}/Runs?metric=loss")
                _title(page, "loss over steps")
                try:
                    page.wait_for_function(f"() => ({points})() === 3", timeout=60_000)
                except Exception:
                    page.screenshot(path=str(tmp_path / "live.png"))
                    shutil.copyfile(tmp_path / "live.png", "/tmp/journey_live_failed.png")
                    raise
                assert page.get_by_text("still training").count() >= 1
                w.add_metrics(np.arange(3, 8), NETWORK_LAYER, "loss", np.linspace(0.6, 0.3, 5))
                w.flush()
                page.wait_for_function(f"() => ({points})() === 8", timeout=60_000)  # redrawn, untouched
                w.finish("complete")
            finally:
                browser.close()
    finally:
        stop_server(proc, log)
