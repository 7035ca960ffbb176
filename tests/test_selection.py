"""One run selection per session (dashboard.selection): it follows the user across pages, a link's runs win on
arrival, a run named in the URL that is gone is reported, uploads are selected when they arrive, and names
are short and unique."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.selection import LIMIT_COLOUR, run_colours, short_names
from dashboard.runs import Run

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def data_env(monkeypatch):
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    return lambda folder: monkeypatch.setenv("DYNAMICS_DATA_DIR", str(folder))


def _open(page: str, query: dict | None = None, at: AppTest | None = None) -> AppTest:
    if at is None:
        at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def test_short_names_drop_what_a_family_shares_and_stay_unique():
    labels = ["teacher_depth-mup_relu_n512_L16_reused_s0_ee85be0d", "teacher_depth-mup_relu_n512_L16_reused_s0_fdcb28bd",
              "teacher_depth-mup_relu_n128_L8_reused_s0_954136f1", "limitdemo_tanh_L8_limit_full",
              "limitdemo_tanh_n1024_L8_reused", "mup_relu_n256_L32_reused"]
    names = short_names(labels)
    assert names[labels[0]] == "n512_L16_ee85be0d"  # the hash stays: without it two would collide
    assert names[labels[2]] == "n128_L8"
    assert names[labels[3]] == "limit_full" and names[labels[4]] == "n1024_reused"
    assert names[labels[5]] == "mup_relu_n256_L32_reused"  # alone in its family: nothing shared to drop
    assert len(set(names.values())) == len(labels)
    assert short_names(["a_x_1", "a_y_1"]) == {"a_x_1": "x", "a_y_1": "y"}
    assert short_names(["w64-d4"]) == {"w64-d4": "w64-d4"}


def test_colours_are_by_run_not_by_position_and_limits_are_dark():
    runs = [Run("a", "bundled", "", {}), Run("lim", "bundled", "", {"kind": "limit"}), Run("b", "bundled", "", {})]
    c = run_colours(runs)
    assert c["lim"] == LIMIT_COLOUR and c["a"] != c["b"]
    assert run_colours(runs[::-1])["lim"] == LIMIT_COLOUR


def test_the_selection_follows_the_user_across_pages(runs_dir, data_env):
    data_env(runs_dir)
    at = _open("pages/1_Runs.py")
    at.multiselect(key="runs_page.runs").set_value(["w64-d4"]).run()
    assert not at.exception
    at.query_params.clear()  # a sidebar click opens the next page without the query string
    _open("pages/2_Trajectories.py", at=at)
    assert not at.exception
    assert at.multiselect(key="traj_page.runs").value == ["w64-d4"]
    assert at.query_params["runs"] == "w64-d4"


def test_a_links_runs_win_and_a_missing_run_is_reported(runs_dir, data_env):
    data_env(runs_dir)
    at = _open("pages/1_Runs.py")
    at.multiselect(key="runs_page.runs").set_value(["w64-d4"]).run()
    _open("pages/2_Trajectories.py", {"runs": ["w128-d4", "mylog"]}, at=at)
    assert not at.exception
    assert at.multiselect(key="traj_page.runs").value == ["w128-d4"]
    assert any("mylog" in w.value and "Upload" in w.value for w in at.warning)


def test_an_upload_is_selected_when_it_arrives(tmp_path, runs_dir, data_env, monkeypatch):
    (tmp_path / "empty").mkdir()
    data_env(runs_dir)
    at = _open("pages/1_Runs.py")
    assert at.multiselect(key="runs_page.runs").value == ["w128-d4", "w64-d4"]
    mine = tmp_path / "session-x"
    (mine / "w64-d4").mkdir(parents=True)
    for f in (runs_dir / "w64-d4").iterdir():
        (mine / "w64-d4" / f.name).write_bytes(f.read_bytes())
    at.session_state["uploaded_roots"] = [str(mine)]  # what the Upload page does after an import
    at.run()
    assert not at.exception
    chosen = at.multiselect(key="runs_page.runs").value
    assert len(chosen) == 1 and chosen[0].endswith("w64-d4") and chosen[0] != "w64-d4"  # the upload replaces
    at.multiselect(key="runs_page.runs").set_value(["w128-d4", *chosen]).run()  # bundled added back: kept
    assert at.multiselect(key="runs_page.runs").value == ["w128-d4", *chosen]
    at.multiselect(key="runs_page.runs").set_value(["w128-d4"]).run()  # unpicked by the user: stays unpicked
    assert at.multiselect(key="runs_page.runs").value == ["w128-d4"]
