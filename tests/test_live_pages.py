"""Live runs on the pages (dashboard.live): a chosen run still being written is followed, the page's watcher sees
a flush as a change of the run's files, and a finished run is not followed (nothing is scheduled)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import live
from dynamics.runs.store import RunWriter

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _running(root: Path) -> RunWriter:
    """A run that is still training here (a heartbeat with this process's pid), one record flushed."""
    w = RunWriter(root / "training", {"run_id": "training", "kind": "finite", "config": {"depth": 2, "width": 8}},
                  flush_seconds=0)
    w.add_metrics(0, np.arange(3), "h_sq", np.ones(3))
    w.flush()
    return w


@pytest.fixture
def env(monkeypatch, tmp_path, runs_dir):
    for var in ("DYNAMICS_READONLY",):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(runs_dir))
    monkeypatch.setenv("DYNAMICS_RUNS", str(tmp_path / "mine"))
    return tmp_path / "mine"


def test_a_chosen_live_run_is_followed_and_a_flush_is_seen(env):
    w = _running(env)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/1_Runs.py").run()
    assert not at.exception
    assert at.multiselect(key="runs_page.runs").value == ["training"]
    assert any(c.value.startswith("Live: `training`") for c in at.sidebar.caption)
    paths = [str(env / "training")]
    before = live.signature(paths)
    time.sleep(0.01)
    w.add_metrics(1, np.arange(3), "h_sq", 2 * np.ones(3))
    w.flush()
    assert live.signature(paths) != before  # what the watcher compares: a flush changes the files
    w.finish("complete")
    at.run()
    assert not any(c.value.startswith("Live:") for c in at.sidebar.caption)  # finished: no longer followed


def test_finished_runs_are_not_followed(env, runs_dir):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/1_Runs.py").run()
    assert not any(c.value.startswith("Live:") for c in at.sidebar.caption)
