"""Page tests with streamlit.testing.v1.AppTest: app.py, then switch_page to each page (TESTING.md).

The dashboard reads bundled runs from $DYNAMICS_DATA_DIR, so every test points it at temporary runs
written by the conftest fixture (or at an empty / damaged folder).
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.runs import Run, config_diff

APP = Path(__file__).resolve().parents[1] / "app.py"
RUNS_PAGE = "pages/1_Runs.py"


@pytest.fixture
def data_env(monkeypatch):
    """Point the dashboard at a folder; the user folder starts empty whatever the caller's shell says."""
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)

    def point(folder: Path) -> None:
        monkeypatch.setenv("DYNAMICS_DATA_DIR", str(folder))
    return point


def _runs_page(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    at.switch_page(RUNS_PAGE)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _array(v) -> np.ndarray:
    """A trace's x or y as sent to the browser: a list, or plotly's base64 {'dtype', 'bdata'} form."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)


def _names(spec: dict) -> list[str]:
    return [t["name"] for t in spec["data"] if t.get("showlegend", True)]


def test_home_page_counts_runs_and_links_to_runs(runs_dir, data_env):
    data_env(runs_dir)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert [m.value for m in at.metric] == ["2"]
    assert "streamlit run app.py" in at.code[0].value
    assert not at.info


def test_runs_page_draws_depth_profile_and_puts_the_view_in_the_url(runs_dir, data_env):
    data_env(runs_dir)
    at = _runs_page()
    assert not at.exception and not at.error
    (spec,) = _charts(at)
    assert _names(spec) == ["w128-d4", "w64-d4"]
    assert spec["layout"]["xaxis"]["title"]["text"] == "depth time τ = ℓ/L"
    assert spec["layout"]["title"]["text"] == "h_sq over depth at step 20"
    np.testing.assert_allclose(_array(spec["data"][0]["x"]), [0.0, 0.25, 0.5, 0.75, 1.0])
    assert at.query_params["runs"] == ["w128-d4", "w64-d4"]
    assert (at.query_params["metric"], at.query_params["step"]) == ("h_sq", "20")
    assert list(at.dataframe[0].value["run_id"]) == ["w128-d4", "w64-d4"]
    assert list(at.dataframe[1].value.columns) == ["width"]  # the only config field that differs
    assert at.get("download_button")


def test_network_scalar_is_drawn_over_steps(runs_dir, data_env):
    data_env(runs_dir)
    at = _runs_page()
    at.selectbox(key="runs_page.metric").select("loss").run()
    assert not at.exception
    (spec,) = _charts(at)
    assert spec["layout"]["xaxis"]["title"]["text"] == "step"
    np.testing.assert_array_equal(_array(spec["data"][0]["x"]), np.arange(21))
    assert "step" not in at.query_params and not at.select_slider


def test_url_reproduces_the_view(runs_dir, data_env):
    data_env(runs_dir)
    at = _runs_page({"runs": ["w64-d4"], "metric": "g_sq", "step": "10", "log_y": "True"})
    assert not at.exception
    (spec,) = _charts(at)
    assert _names(spec) == ["w64-d4"]
    assert spec["layout"]["title"]["text"] == "g_sq over depth at step 10"
    assert spec["layout"]["yaxis"]["type"] == "log"
    assert at.select_slider(key="runs_page.step").value == 10


def test_invalid_url_values_fall_back_to_defaults(runs_dir, data_env):
    data_env(runs_dir)
    at = _runs_page({"runs": "nope", "metric": "no_such_metric", "step": "7"})
    assert not at.exception
    (spec,) = _charts(at)
    assert spec["layout"]["title"]["text"] == "h_sq over depth at step 20"


def test_damaged_run_json_is_an_error_message_not_a_traceback(runs_dir, data_env):
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "run.json").write_text("{not json")
    data_env(runs_dir)
    at = _runs_page()
    assert not at.exception
    assert any("broken" in e.value and "run.json" in e.value for e in at.error)
    assert len(_charts(at)) == 1  # the readable runs are still shown


def test_damaged_metrics_file_is_skipped_with_a_warning(runs_dir, data_env):
    (runs_dir / "w64-d4" / "metrics.parquet").write_bytes(b"garbage")
    data_env(runs_dir)
    at = _runs_page()
    assert not at.exception
    assert any("w64-d4" in w.value and "Parquet" in w.value for w in at.warning)
    assert _names(_charts(at)[0]) == ["w128-d4"]


@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_no_runs_gives_a_how_to(tmp_path, data_env, folder):
    (tmp_path / "empty").mkdir()
    data_env(tmp_path / folder)
    at = _runs_page()
    assert not at.exception and not _charts(at)
    assert "python -m dynamics train" in at.info[0].value


def test_user_folder_from_the_sidebar(tmp_path, runs_dir, data_env):
    (tmp_path / "empty").mkdir()
    data_env(tmp_path / "empty")
    at = _runs_page()
    assert at.info
    at.text_input(key="runs_page.user_dir").input(str(runs_dir)).run()
    assert not at.exception and not at.info
    assert len(_charts(at)) == 1 and at.query_params["dir"] == str(runs_dir)


def test_config_diff_shows_only_differing_fields():
    runs = [Run(label=f"r{k}", source="bundled", path="",
                meta={"config": {"width": w, "depth": 4, "trained": t}})
            for k, (w, t) in enumerate([(64, ["input"]), (64, ["input", "hidden"])])]
    diff = config_diff(runs)
    assert list(diff.columns) == ["trained"] and list(diff.index) == ["r0", "r1"]
    assert config_diff(runs[:1]).columns.empty
