"""The user's own run is the one on screen (dashboard.selection, dashboard.runs): a runs folder typed into the
sidebar leads the selection with its newest runs; views open at a step every shown run recorded; a name that one
run logs per layer and another as a network scalar is two entries in the picker and never mixed into one chart;
captions of a tracker's tags name the tracker, not our metric's meaning."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dynamics.runs.store import NETWORK_LAYER, RunWriter
from tests.test_pages import _array, _charts

APP = str(Path(__file__).resolve().parents[1] / "app.py")
RUNS, TRAJ = "pages/1_Runs.py", "pages/2_Trajectories.py"


@pytest.fixture
def env(monkeypatch, runs_dir):
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(runs_dir))
    return runs_dir


def _tb_mlp(root: Path, name: str = "tb_mlp", steps: int = 30, created: str = "2026-12-01T00:00:00+00:00") -> str:
    """An imported TensorBoard run as `python -m dynamics import` writes it: per-layer grad_norm and act_rms on
    layers 0..3 at steps 0..steps-1, the loss as a network scalar."""
    w = RunWriter(root / name, {"run_id": name, "kind": "imported", "config": {"depth": 3}, "created": created,
                                "source": {"file": f"{name}.zip", "format": "tfevents"}})
    for s in range(steps):
        w.add_metrics(s, np.arange(4), "grad_norm", 1.0 + 0.1 * np.arange(4) + 0.01 * s)
        w.add_metrics(s, np.arange(4), "h_sq", 2.0 + 0.1 * np.arange(4))
        w.add_metrics(s, NETWORK_LAYER, "loss", 1.0 / (1 + s))
    w.finish("complete")
    return name


def _open(page: str, at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page)
    return at.run()


def _bundled_grad_norm(runs_dir: Path) -> None:
    """The bundled runs also log `grad_norm`, as a network scalar (layer −1), as our trainer does."""
    import pandas as pd
    for run in ("w64-d4", "w128-d4"):
        f = runs_dir / run / "metrics.parquet"
        df = pd.read_parquet(f)
        df["metric"] = df["metric"].astype(str)
        extra = pd.DataFrame({"step": [0, 10, 20], "layer": NETWORK_LAYER, "metric": "grad_norm",
                              "value": [3.0, 2.0, 1.0]})
        pd.concat([df, extra.astype({c: df[c].dtype for c in extra})], ignore_index=True).to_parquet(f, index=False)


def test_a_typed_runs_folder_leads_with_its_newest_runs(env, tmp_path):
    mine = tmp_path / "mine"
    _tb_mlp(mine, "old_run", created="2026-11-01T00:00:00+00:00")
    _tb_mlp(mine, "new_run", created="2026-12-01T00:00:00+00:00")
    at = _open(RUNS)
    assert at.multiselect(key="runs_page.runs").value == ["w128-d4", "w64-d4"]  # nothing of the user's yet
    at.sidebar.text_input(key="runs_page.user_dir").input(str(mine)).run()
    assert not at.exception
    assert at.multiselect(key="runs_page.runs").value[0] == "new_run"  # the newest first, bundled ones dropped
    assert set(at.multiselect(key="runs_page.runs").value) == {"new_run", "old_run"}
    at.multiselect(key="runs_page.runs").set_value(["new_run", "w64-d4"]).run()  # bundled added back: kept
    assert at.multiselect(key="runs_page.runs").value == ["new_run", "w64-d4"]
    at = _open(TRAJ, at)
    assert at.multiselect(key="traj_page.runs").value == ["new_run", "w64-d4"]


def test_a_fresh_session_opens_on_the_users_runs_at_a_step_they_recorded(env, tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    _tb_mlp(mine)
    monkeypatch.setenv("DYNAMICS_RUNS", str(mine))
    at = _open(RUNS)
    assert at.multiselect(key="runs_page.runs").value == ["tb_mlp"]
    at.selectbox(key="runs_page.metric").set_value("h_sq").run()
    assert at.select_slider(key="runs_page.step").value == 29  # tb_mlp's last step, not a bundled run's 20
    at.multiselect(key="runs_page.runs").set_value(["tb_mlp", "w64-d4"]).run()
    assert not at.exception
    assert at.select_slider(key="runs_page.step").value in (0, 10, 20)  # a step both recorded
    assert not any("Not recorded" in c.value for c in at.caption)


def test_a_name_logged_two_ways_is_two_entries_and_never_mixed(env, tmp_path, monkeypatch):
    _bundled_grad_norm(env)
    mine = tmp_path / "mine"
    _tb_mlp(mine)
    monkeypatch.setenv("DYNAMICS_RUNS", str(mine))
    at = _open(RUNS)
    at.multiselect(key="runs_page.runs").set_value(["tb_mlp", "w64-d4", "w128-d4"]).run()
    options = at.selectbox(key="runs_page.metric").options
    assert any(o.startswith("grad_norm:") for o in options)            # the per-layer reading (tb_mlp's)
    assert any(o.startswith("grad_norm (network)") for o in options)   # the bundled runs' network scalar
    at.selectbox(key="runs_page.metric").set_value("grad_norm").run()
    assert not at.exception
    traces = _charts(at)[0]["data"]
    xs = np.concatenate([_array(t["x"]) for t in traces])
    assert len(xs) and xs.min() >= 0  # depth times of layers only: no network scalar at τ < 0
    assert "TensorBoard" in at.selectbox(key="runs_page.metric").format_func("grad_norm")
    assert "norm of the raw-parameter gradient" not in at.selectbox(key="runs_page.metric").format_func("grad_norm")
    at.selectbox(key="runs_page.metric").set_value("grad_norm (network)").run()
    assert not at.exception
    traces = _charts(at)[0]["data"]
    names = " ".join(str(t.get("name")) for t in traces)
    assert "tb_mlp" not in names and traces  # only the bundled runs' scalar, over steps


def test_pages_say_what_a_users_own_run_can_show_and_offer_no_command_that_does_not_apply(env, tmp_path,
                                                                                           monkeypatch):
    mine = tmp_path / "mine"
    _tb_mlp(mine)
    monkeypatch.setenv("DYNAMICS_RUNS", str(mine))
    at = _open("pages/4_Coupling.py")
    assert not at.exception and at.multiselect(key="coupling_page.runs").value == ["tb_mlp"]
    text = " ".join(i.value for i in at.info)
    assert "tb_mlp" in text and "imported from tb_mlp.zip" in text and "retrain" not in text
    assert not at.code  # no `python -m dynamics train` command for a model that is not ours
    at = _open("pages/3_Limit.py", at)
    assert not at.exception
    text = " ".join(i.value for i in at.info) + " ".join(w.value for w in at.warning)
    assert "tb_mlp" in text and "differ in" not in text
    assert not any("--like" in c.value and "tb_mlp" in c.value for c in at.code)


def test_a_tracker_tag_is_captioned_with_the_key_it_was_logged_under(tmp_path):
    """The importer keeps the key behind each name (run.json summary.logged_as); the caption quotes it."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter
    from dashboard.runs import Run, caption
    from dynamics.runs.imports import import_file
    from dynamics.runs.store import read_meta
    with SummaryWriter(str(tmp_path / "tb_mlp")) as w:
        for s in range(3):
            for i in range(2):
                w.add_scalar(f"layer{i}/grad_norm", 1.0 + i + s, s)
            w.add_scalar("h_sq/1", 2.0, s)
            w.add_scalar("train/loss", 1.0 / (1 + s), s)
    res = import_file(tmp_path / "tb_mlp", tmp_path / "out")
    logged = res.summary["logged_as"]
    assert logged == {"grad_norm": "layer<ℓ>/grad_norm", "h_sq": "h_sq/<ℓ>"}  # train/loss is its own name
    run = Run("tb_mlp", "user", str(res.run_dir), read_meta(res.run_dir))
    text = caption("grad_norm", [run])
    assert "layer<ℓ>/grad_norm" in text and "TensorBoard" in text and "tb_mlp" in text
    assert "not computed by dynamics" in caption("h_sq", [run])  # our metric's name, not our meaning
