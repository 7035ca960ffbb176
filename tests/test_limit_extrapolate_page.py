"""Extrapolate in width from the Limit page (dashboard.limit_extrapolate) with AppTest: the offer for a finite
run without a limit, its ladder and cost (scaled from the run's own wall time as width²), the hosted caps, and a
background ladder that ends as an ordinary `kind: limit` run with `limit.method: extrapolate`."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import limit_extrapolate as X
from dashboard.runs import Run
from dynamics.config import RunConfig
from dynamics.runs import store
from dynamics.train import train

APP = str(Path(__file__).resolve().parents[1] / "app.py")
LIMIT = "pages/3_Limit.py"
# 64 training inputs in minibatches of 8: beyond the particle solver's input bound, any width ladder works
TINY = RunConfig(width=16, depth=2, steps=2, train_size=64, batch=8, probes=2, record_every=1, test_size=0,
                 input_dim=8, record_coupling="off")


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    for var in ("DYNAMICS_RUNS", "DYNAMICS_READONLY", "DYNAMICS_TRAIN_CAP", "DYNAMICS_TRAIN_JOBS"):
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "data"
    train(TINY, data / "tiny")
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(data))
    monkeypatch.setenv("DYNAMICS_UPLOAD_DIR", str(tmp_path / "uploads"))
    return data


def _run(data: Path) -> Run:
    meta = store.read_meta(data / "tiny")
    return Run("tiny", "bundled", str(data / "tiny"), meta)


def _limit_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(LIMIT)
    return at.run()


def test_cost_is_the_runs_own_time_scaled_as_width_squared_over_what_is_left(tiny_data, tmp_path):
    run = _run(tiny_data)
    cfg = RunConfig.from_dict(run.config)
    todo = X.to_train(run, cfg, (16, 32), 2, tmp_path / "out")
    assert sorted((c["width"], c["seed"]) for c in todo) == [(16, 1), (32, 0), (32, 1)]  # the run itself is reused
    wall = run.meta["wall_seconds"]
    assert X.ladder_seconds(run, todo) == pytest.approx(wall * (1 + 4 + 4))
    assert X.ladder_seconds(Run("x", "user", "", {"config": {"width": 16}}), todo) is None


def test_hosted_ladder_follows_the_train_cap_and_refuses_in_one_line(tiny_data, monkeypatch):
    run = _run(tiny_data)
    cfg = RunConfig.from_dict(run.config)
    assert X.ladder(cfg) == ((256, 512, 1024, 2048), 3)
    assert X.refusal(run, cfg, None) is None  # a local dashboard: the user's own machine
    monkeypatch.setenv("DYNAMICS_READONLY", "1")
    monkeypatch.setenv("DYNAMICS_TRAIN_CAP", "200x8x50")
    assert X.ladder(cfg) == ((16, 32, 64, 128), 3)
    assert "unknown time" in X.refusal(run, cfg, None)
    assert "over this shared instance's" in X.refusal(run, cfg, X.HOSTED_SECONDS + 1)
    assert X.refusal(run, cfg, 1.0) is None
    monkeypatch.setenv("DYNAMICS_TRAIN_CAP", "200x1x50")
    assert "depth=2 is above" in X.refusal(run, cfg, 1.0)
    monkeypatch.setenv("DYNAMICS_TRAIN_CAP", "off")
    assert "off on this shared instance" in X.refusal(run, cfg, 1.0)
    for why in (X.refusal(run, cfg, None), X.refusal(run, cfg, 1.0)):
        assert "\n" not in why


def test_the_limit_page_offers_extrapolation_with_its_ladder_and_cost(tiny_data):
    at = _limit_page()
    assert not at.exception
    (box,) = [e for e in at.expander if "in width" in e.label]
    text = " ".join(c.value for c in box.caption)
    assert "n = 256, 512, 1024, 2048 × 3 seeds" in text and "12 of 12 runs still to train" in text
    assert "min on this machine" in text and "as n²" in text
    assert any(b.label == "Extrapolate" for b in box.button)


@pytest.mark.slow
def test_the_page_extrapolates_in_the_background_and_lists_the_limit(tiny_data, monkeypatch):
    monkeypatch.setattr(X, "ladder", lambda cfg: ((8, 16, 32), 2))  # a test-sized ladder
    at = _limit_page()
    [b for b in at.button if b.label == "Extrapolate"][0].click().run()
    assert not at.exception
    job = X._JOBS[str(tiny_data / "tiny")]
    t0 = time.monotonic()
    while not job["done"] and time.monotonic() - t0 < 240:
        time.sleep(1)
    assert job["done"] and not job.get("error"), job
    meta = store.read_meta(Path(job["run_dir"]))
    assert meta["kind"] == "limit" and meta["limit"]["method"] == "extrapolate"
    assert meta["limit"]["widths"] == [8, 16, 32] and Path(job["run_dir"]).parent == X.session_root()
    at.run()
    at.run()
    assert not at.exception
    assert any(Path(job["run_dir"]).name in o for o in at.selectbox(key="limit_page.limit").options)
