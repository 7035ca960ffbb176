"""Every page opens on bundled runs that show its point (AppTest on the real data/ folder): the Limit page on a
finite run with its matching limit, the Coupling page on a run whose coupling is measured exactly, beside its
decoupled twin, with the excess over chance visible in the one and zero in the other."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.test_pages import _array, _charts

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")


@pytest.fixture
def bundled(monkeypatch, tmp_path):
    for var in ("DYNAMICS_RUNS", "DYNAMICS_READONLY", "DYNAMICS_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DYNAMICS_UPLOAD_DIR", str(tmp_path / "uploads"))


def _open(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page(page)
    return at.run()


def test_limit_page_opens_on_a_finite_run_and_its_own_limit(bundled):
    at = _open("pages/3_Limit.py")
    assert not at.exception
    chosen = at.multiselect(key="limit_page.runs").value
    limit = at.selectbox(key="limit_page.limit").value
    assert chosen == ["limitdemo_tanh_n1024_L8_reused"] and limit == "limitdemo_tanh_L8_limit_full"
    assert not any("differ in" in w.value for w in at.warning)


def test_coupling_page_opens_on_an_exact_run_and_its_decoupled_twin(bundled):
    at = _open("pages/4_Coupling.py")
    assert not at.exception
    chosen = at.multiselect(key="coupling_page.runs").value
    assert chosen == ["coupling_exact_n512_L16_reused", "coupling_exact_n512_L16_decoupled"]
    assert at.selectbox(key="coupling_page.metric").value == "coupling_acc"
    assert any("Measured exactly" in c.value and "coupling_exact_n512_L16_decoupled" in c.value for c in at.caption)
    over_steps = _charts(at)[1]["data"]  # the excess over chance at one depth over steps, one line per run
    excess = {t["legendgroup"]: _array(t["y"]) for t in over_steps if t.get("mode") == "lines+markers"}
    reused, decoupled = excess["coupling_exact_n512_L16_reused"], excess["coupling_exact_n512_L16_decoupled"]
    assert np.nanmax(reused) > 0 and np.allclose(decoupled[np.isfinite(decoupled)], 0)


def test_coupling_page_opens_at_the_step_where_the_coupling_stands_furthest_above_chance(bundled):
    import pandas as pd
    at = _open("pages/4_Coupling.py")
    step = at.select_slider(key="coupling_page.step").value
    m = pd.read_parquet(REPO / "data" / "coupling_exact_n512_L16_reused" / "metrics.parquet")
    m["metric"] = m["metric"].astype(str)
    mean = lambda name: m[m.metric == name].groupby("step")["value"].mean()  # noqa: E731
    ratio = (mean("coupling_acc") / mean("coupling_acc_chance")).dropna()
    assert step == int(ratio.idxmax()) and ratio.max() > 2  # an independent reading of the same files
    first = _charts(at)[0]["data"]  # over depth at that step: the excess stands above the chance band somewhere
    excess = [_array(t["y"]) for t in first if t.get("legendgroup") == "coupling_exact_n512_L16_reused"
              and t.get("mode") == "lines+markers"][0]
    assert np.nanmax(excess) > 0


def test_measured_exactly_only_for_the_whole_training_set_full_batch_every_step():
    from dynamics.metrics import measured_exactly
    exact = {"steps": 10, "record_every": 1, "batch": "full", "probes": 8, "train_size": 8}
    assert measured_exactly(exact, 12)
    assert not measured_exactly(exact, 5)                                     # history window dropped records
    assert not measured_exactly({**exact, "batch": 64}, 12)                   # minibatch: a probe proxy
    assert not measured_exactly({**exact, "record_every": 2}, 12)             # steps between records unseen
    assert not measured_exactly({**exact, "train_size": 1024}, 12)            # inputs the probes do not cover
    assert not measured_exactly({}, 12) and not measured_exactly(exact, None)


def test_runs_page_opens_on_bundled_runs_one_config_field_apart(bundled):
    at = _open("pages/1_Runs.py")
    assert not at.exception
    chosen = at.multiselect(key="runs_page.runs").value
    assert chosen[0] == "depth-mup_relu_n256_L32_reused" and len(chosen) == 3
    diff = at.dataframe[1].value  # "How the chosen runs differ": each differs from the first in one field
    assert len(diff.columns) == 2 and set(diff.columns) <= {"backward", "depth", "param", "device"}, diff.columns
