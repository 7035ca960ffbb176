"""Solve from the Limit page (dashboard.limit_solve) with AppTest, and the cost model behind its budget
(dynamics.limit.cost): a button for a finite run without a limit run, a background solve with progress that
writes an ordinary limit run beside the data, and the hosted-mode caps (the train form's)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dynamics.config import RunConfig
from dynamics.limit.cost import estimate_seconds, particles_for_budget, work
from dynamics.runs import store
from dynamics.train import train

APP = str(Path(__file__).resolve().parents[1] / "app.py")
LIMIT = "pages/3_Limit.py"
TINY = RunConfig(width=16, depth=3, steps=3, train_size=8, probes=3, batch="full", record_every=1, test_size=0,
                 lr=0.5, task="mixture", classes=3, loss="xent", block=2)


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    """One real finite run (xent, 3 classes, two-layer blocks) as the bundled data; no user folder."""
    for var in ("DYNAMICS_RUNS", "DYNAMICS_READONLY", "DYNAMICS_TRAIN_CAP", "DYNAMICS_TRAIN_JOBS"):
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "data"
    train(TINY, data / "tiny")
    from dashboard import limit_solve
    monkeypatch.setattr(limit_solve, "MOST_PARTICLES", 512)          # a test-sized solve, whatever the budget
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(data))
    monkeypatch.setenv("DYNAMICS_UPLOAD_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("DYNAMICS_CACHE_DIR", str(tmp_path / "cache"))
    return data


def _limit_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(LIMIT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _solve(at: AppTest) -> tuple[AppTest, str]:
    from dashboard import limit_solve
    (button,) = [b for b in at.button if b.label == "Solve"]
    at = button.click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (path,) = at.session_state["dashboard.limit_jobs"]
    job = limit_solve.wait(path)
    assert job.get("error") is None and job["status"] == "complete", job
    return at.run().run(), job["run_dir"]


def test_the_limit_page_offers_a_solve_with_its_plan(tiny_data):
    at = _limit_page()
    assert "No limit runs found" in at.info[0].value
    (budget,) = [s for s in at.select_slider if s.label == "time budget (s)"]
    assert budget.value == 30 and list(budget.options) == ["10", "30", "60", "120", "300", "600"]
    (plan,) = [c.value for c in at.caption if "particles" in c.value]
    assert "3-block grid with 512 particles" in plan and "30 s budget" in plan and str(tiny_data) in plan
    assert [b for b in at.button if b.label == "Solve"]


@pytest.mark.slow
def test_the_limit_page_solves_a_missing_limit_in_the_background(tiny_data):
    at, run_dir = _solve(_limit_page())
    assert Path(run_dir).parent == tiny_data                          # beside the data, an ordinary run
    meta = store.read_meta(run_dir)
    assert meta["kind"] == "limit" and meta["limit"]["like"] == "tiny" and meta["limit"]["block"] == 2
    assert {"a_move", "loss"} <= set(store.read_metrics(run_dir).metric)
    assert not at.exception and not at.error
    assert at.selectbox(key="limit_page.limit").value == Path(run_dir).name   # matched and overlaid
    assert not [b for b in at.button if b.label == "Solve"]               # no second solve for a matched run
    assert any("is in the limit picker" in s.value for s in at.success)


@pytest.mark.slow
def test_hosted_solves_go_to_the_session_folder_within_the_caps(tiny_data, monkeypatch, tmp_path):
    monkeypatch.setenv("DYNAMICS_READONLY", "1")
    monkeypatch.setenv("DYNAMICS_TRAIN_CAP", "64x2x200")                  # depth 3 > 2: refused, one line
    at = _limit_page()
    (warn,) = [w.value for w in at.warning if "Cannot solve here" in w.value]
    assert "depth=3 is above this shared instance's cap 2" in warn and "\n" not in warn
    assert not [b for b in at.button if b.label == "Solve"]
    assert [s.options for s in at.select_slider if s.label == "time budget (s)"][0][-1] == "60"
    monkeypatch.setenv("DYNAMICS_TRAIN_CAP", "0")
    assert any("solving from the page is off" in w.value for w in _limit_page().warning)
    monkeypatch.setenv("DYNAMICS_TRAIN_CAP", "64x4x200")
    before = sorted(p.name for p in tiny_data.iterdir())
    at, run_dir = _solve(_limit_page())
    assert Path(run_dir).parent.parent == tmp_path / "uploads"           # uploads/session-XXXX/<run>
    assert sorted(p.name for p in tiny_data.iterdir()) == before          # the served data is untouched


def test_budget_to_particles():
    cfg = RunConfig(depth=8, steps=20, train_size=32, probes=4, batch="full", task="teacher")
    assert work(2048, 8, 10, 16, 4) == 2 * work(1024, 8, 10, 16, 4)
    assert work(1024, 8, 10, 16, 4, outputs=3) > work(1024, 8, 10, 16, 4)
    m30, m120 = particles_for_budget(cfg, 30), particles_for_budget(cfg, 120)
    assert m30 % 8 == 0 and 0 < m30 < m120 and estimate_seconds(cfg, m30) <= 30 < estimate_seconds(cfg, m30 + 8)
    assert particles_for_budget(cfg, 1e-4) == 0


def test_refusals_are_one_line(monkeypatch):
    from dashboard.limit_solve import refusal
    monkeypatch.setenv("DYNAMICS_READONLY", "0")
    assert refusal(TINY, 600) is None
    big = RunConfig(train_size=1024, batch=64, steps=20)
    assert "sees about 256" not in refusal(big, 30) and "at most 256" in refusal(big, 30)
    assert "param sp" in refusal(RunConfig(param="sp", train_size=16, probes=4, batch="full"), 30)
    monkeypatch.setenv("DYNAMICS_READONLY", "1")
    monkeypatch.setenv("DYNAMICS_TRAIN_CAP", "256x16x200")
    assert refusal(TINY, 60) is None and "at most 60 s" in refusal(TINY, 120)
    for why in (refusal(big, 30), refusal(TINY, 120)):
        assert "\n" not in why


def test_hosted_start_claims_the_job_cap_shared_with_the_train_form(tiny_data, tmp_path, monkeypatch):
    from dashboard import hosting, limit_solve, train_form
    from dashboard.runs import Run
    monkeypatch.setenv("DYNAMICS_READONLY", "1")
    monkeypatch.setenv("DYNAMICS_TRAIN_CAP", "64x4x200")
    monkeypatch.setattr(hosting, "_IN_FLIGHT", [{"done": False}])   # a training run in flight
    run = Run(label="tiny", source="bundled", path=str(tiny_data / "tiny"), meta=store.read_meta(tiny_data / "tiny"))
    with pytest.raises(hosting.ReadOnlyError, match="busy with another run"):
        limit_solve.start(run, TINY, 64)
    assert str(tiny_data / "tiny") not in limit_solve._JOBS
    # and the other way round: a solve in flight keeps the train form from starting a run
    monkeypatch.setattr(hosting, "_IN_FLIGHT", [])
    hosting.claim_job(lambda: {"done": False, "kind": "limit solve"})
    with pytest.raises(hosting.ReadOnlyError, match="busy with another run"):
        train_form.start(RunConfig(width=16, depth=2, steps=2), str(tmp_path / "uploads" / "session-x"))
