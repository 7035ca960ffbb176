"""Page tests with streamlit.testing.v1.AppTest: app.py, then switch_page to each page (TESTING.md).

The dashboard reads bundled runs from $DYNAMICS_DATA_DIR, so every test points it at temporary runs
written by the conftest fixture (or at an empty / damaged folder).
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.boot import BOOT_KEY
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
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.key != BOOT_KEY]  # not boot's


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


def test_a_per_layer_metric_is_read_at_the_shown_step_only(runs_dir):
    """The Runs page draws one step of a per-layer metric: the other steps are pruned on read, not in pandas."""
    from dashboard.runs import find_runs, metric_frame
    runs, _ = find_runs({"bundled": runs_dir})
    one, errors = metric_frame(runs, "h_sq", steps=(10,))
    every, _ = metric_frame(runs, "h_sq")
    assert not errors and set(one["step"]) == {10} and len(every) == every["step"].nunique() * len(one) > len(one)
    pd.testing.assert_frame_equal(one.reset_index(drop=True),
                                  every[every["step"] == 10].reset_index(drop=True))


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


# --- Trajectories, Limit, Coupling, Scaling ----------------------------------------------------------------
TRAJ_VIEWS = ["Layer × step", "Over depth", "Over steps", "Neurons"]
TRAJ, LIMIT, COUPLING, SCALING = ("pages/2_Trajectories.py", "pages/3_Limit.py", "pages/4_Coupling.py",
                                  "pages/5_Scaling.py")
BUNDLED = Path(__file__).resolve().parents[1] / "data"


def _page(page: str, query: dict | None = None, session: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    at.switch_page(page)
    for k, v in (session or {}).items():
        at.session_state[k] = v
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def _titles(at: AppTest) -> list[str]:
    return [s["layout"].get("title", {}).get("text", "") for s in _charts(at)]


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _bundled_rate_groups() -> dict[str, list[str]]:
    """The bundled finite-vs-limit error-rate claims (y = err_*, x = width or depth), grouped as the Scaling
    page's tabs group them: by y and setting (`where`), in the claims' order."""
    claims = json.loads((BUNDLED / "reproduce" / "claims.json").read_text())["claims"]
    groups: dict[str, list[str]] = {}
    for c in claims:
        if str(c.get("y", "")).startswith("err_") and c.get("x") in ("width", "depth"):
            where = ", ".join(f"{a} {b}" for a, b in (c.get("where") or {}).items())
            groups.setdefault(c["y"] + (f" · {where}" if where else ""), []).append(c["id"])
    return groups


def _bundled_scaling_charts() -> int:
    """Scaling on the bundled runs (no sweep among them) falls back on the reproduce points: the charts of the
    first tab of error-rate claims (one per claim), one of a_learn (or a_move) against depth per α and one of
    loss vs learning rate."""
    return len(next(iter(_bundled_rate_groups().values()))) + 2


@pytest.mark.parametrize("hosted", ["0", "1"])
@pytest.mark.parametrize("page, charts", [(TRAJ, 1), (LIMIT, 1), (COUPLING, 2), (SCALING, _bundled_scaling_charts())])
def test_every_page_renders_the_bundled_runs(data_env, page, charts, hosted, monkeypatch):
    monkeypatch.setenv("DYNAMICS_READONLY", hosted)  # also as a shared, read-only instance serves them
    data_env(BUNDLED)
    at = _page(page)
    _clean(at)
    assert len(_charts(at)) == charts
    if page == TRAJ:  # lazy tabs: only the open view (the heatmap) is computed and drawn
        assert [t.label for t in at.tabs] == TRAJ_VIEWS and _titles(at)[0].startswith("h_move: ")
    if page == COUPLING:  # the bundled runs carry the coupling metrics: drawn over depth and over steps
        assert _titles(at)[0].startswith("coupling_acc excess over depth") and not at.code  # tests/test_default_views.py
    if page == LIMIT:  # the bundled limit run is found: finite vs limit over steps, where they differ (h_move)
        assert not at.code and _titles(at)[0].startswith("h_move over steps")
    if page == SCALING:  # no width or lr sweep among the runs: the bundled reproduce points instead, no info wall
        assert not [i for i in at.info if "read-only" not in i.value]  # the hosted banner only
        groups = _bundled_rate_groups()
        assert {"init-width", "init-depth", "train-limit-full", "train-limit-none"} <= {i for g in groups.values()
                                                                                        for i in g}
        assert [t.label for t in at.tabs] == list(groups)  # lazy tabs: only the open one's charts are sent
        for label, ids in groups.items():  # each tab, opened as a click does, draws its claims in their order
            at.session_state["scaling_page.rates"] = label
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            assert [t.split(":")[0] for t in _titles(at)[:-2]] == ids, label
            assert _titles(at)[-2].startswith(("a_learn against depth", "a_move against depth"))
            names = [t["name"] for t in _charts(at)[-2]["data"] if t["mode"] == "markers"]
            assert {"inner_lr_exponent = 0.0", "inner_lr_exponent = 0.5"} <= set(names)  # one line per α
            assert _titles(at)[-1].startswith("loss vs learning rate") and len(_charts(at)[-1]["data"]) >= 4


def _view(at: AppTest, label: str, page: str = "traj_page") -> AppTest:
    """Open a tab of a page, as a click on it does (the tabs rerun the page)."""
    at.session_state[f"{page}.view"] = label
    return at.run()


def test_trajectories_draws_heatmap_profile_curves_and_fan(runs_dir, data_env):
    data_env(runs_dir)
    at = _page(TRAJ)
    _clean(at)
    charts = {}
    for label, title in zip(TRAJ_VIEWS, ["h_sq: w128-d4", "h_sq over depth at step 20", "h_sq over steps",
                                         "w128-d4: quantiles of h_ℓ at step 20"]):
        _clean(_view(at, label))
        assert _titles(at) == [title], label  # one view at a time: the others are neither read nor sent
        charts[label] = _charts(at)[0]
        assert at.query_params.get("view") == (None if label == TRAJ_VIEWS[0] else label)
        assert len(at.get("download_button")) == 1
    heat, prof, curves, fan = charts.values()
    assert heat["data"][0]["type"] == "heatmap" and len(_array(heat["data"][0]["x"])) == 3
    assert heat["layout"]["yaxis"]["title"]["text"] == "depth time τ = ℓ/L"
    assert _names(prof) == ["w128-d4", "w64-d4"]
    assert len(curves["data"]) == 10  # 2 runs × 5 depth times
    assert "median" in _names(fan)
    assert at.query_params["metric"] == "h_sq" and at.query_params["step"] == "20"
    assert at.query_params["tau"] == ["0.0", "0.25", "0.5", "0.75", "1.0"]  # set while its tab was open
    assert at.info == [] and any("No limit run" in c.value for c in at.caption)


def test_trajectories_widgets_reach_the_url_and_the_url_reproduces_the_view(runs_dir, data_env):
    data_env(runs_dir)
    at = _page(TRAJ, {"view": "Over steps"})
    at.selectbox(key="traj_page.metric").select("g_sq").run()
    at.multiselect(key="traj_page.tau").set_value([0.5]).run()
    at.select_slider(key="traj_page.smooth").set_value(0.9).run()
    at.toggle(key="traj_page.log_y").set_value(True).run()
    _clean(at)
    query = {k: at.query_params[k] for k in ("runs", "metric", "tau", "smooth", "log_y", "view")}
    assert query["metric"] == "g_sq" and query["tau"] == "0.5" and query["smooth"] == "0.9"
    assert query["view"] == "Over steps"
    fresh = _page(TRAJ, query)
    _clean(fresh)
    assert _titles(fresh) == ["g_sq over steps (EMA 0.9)"]
    curves = _charts(fresh)[0]
    assert len(curves["data"]) == 4 and curves["data"][0]["showlegend"] is False  # raw (faint) + smoothed
    assert curves["layout"]["yaxis"]["type"] == "log"
    assert fresh.selectbox(key="traj_page.metric").value == "g_sq"


def test_trajectories_reduces_a_big_run_on_the_server(tmp_path, data_env):
    from benchmarks.dashboard_load import write_big_run
    write_big_run(tmp_path, depth=600, steps=2500, n_metrics=2, neurons_every=500)
    data_env(tmp_path)
    at = _page(TRAJ, {"metric": "h_sq"})
    _clean(at)
    (heat,) = _charts(at)
    z = heat["data"][0]["z"]
    n_x, n_y = len(_array(heat["data"][0]["x"])), len(_array(heat["data"][0]["y"]))
    assert 250 <= n_x <= 300 and n_y == 121  # 601 layers pooled by 5 (≤ 129 rows)
    assert len(z) <= 300 if isinstance(z, list) else True
    assert any(f"2,500 recorded steps × 601 layers drawn as {n_x} × 121 cells" in c.value for c in at.caption)
    prof, curves = (_charts(_view(at, label))[0] for label in TRAJ_VIEWS[1:3])
    assert all(len(_array(t["x"])) <= 2000 for t in curves["data"])
    assert {t["type"] for t in curves["data"]} == {"scatter"}  # lines of 2,000 points: SVG draws them faster
    assert len(_array(prof["data"][0]["x"])) == 601


def test_limit_page_says_what_is_missing_then_overlays_a_limit_run(runs_dir, data_env):
    data_env(runs_dir)
    at = _page(LIMIT)
    _clean(at)
    assert "No limit runs found" in at.info[0].value
    assert at.code[0].value == f"python -m dynamics limit --like {runs_dir / 'w128-d4'} --out runs/"

    from conftest import write_limit_run
    write_limit_run(runs_dir)
    at = _page(LIMIT, {"view": "Over depth"})
    _clean(at)
    assert not at.info or "No limit" not in at.info[0].value
    overlay = _charts(at)[0]
    names = [t["name"] for t in overlay["data"]]
    band = "limit-w64-d4 ±1 stderr (Monte-Carlo)"
    assert names == ["w128-d4", "w64-d4", "limit-w64-d4 +stderr", band, "limit-w64-d4 (SDE / NFD prediction)"]
    assert _names(overlay) == ["w128-d4", "w64-d4", band, "limit-w64-d4 (SDE / NFD prediction)"]  # all three kinds
    assert overlay["data"][3]["fill"] == "tonexty" and overlay["data"][4]["line"]["dash"] == "dash"
    assert at.query_params["limit"] == "limit-w64-d4"
    _clean(_view(at, "Over steps", "limit_page"))  # the default tab: trajectories at three depth times
    traj = _charts(at)[0]
    assert [a["text"] for a in traj["layout"]["annotations"]][:3] == ["τ ≈ 0.25", "τ ≈ 0.5", "τ ≈ 1"]
    assert _names(traj) == ["w128-d4", "w64-d4", band, "limit-w64-d4 (SDE / NFD prediction)"]
    dashed = [t for t in traj["data"] if t["name"].endswith("prediction)")]
    assert len(dashed) == 3 and {t["line"]["dash"] for t in dashed} == {"dash"}
    assert {t["xaxis"] for t in dashed} == {"x", "x2", "x3"} and len(_array(dashed[0]["x"])) == 3  # 3 steps
    _clean(_view(at, "Error vs n, L", "limit_page"))
    assert _titles(at)[0].startswith("error vs width")  # two widths at one depth: only the width panel


def test_limit_and_scaling_pages_fit_error_slopes(scaling_dir, data_env):
    data_env(scaling_dir)
    at = _page(LIMIT, {"view": "Error vs n, L", "metric": "h_sq", "step": "0"})
    _clean(at)
    assert _titles(at) == ["error vs width at step 0", "error vs depth at step 0"]
    at = _page(SCALING)
    _clean(at)
    assert _titles(at)[:2] == ["h_sq at step 0: error vs width", "h_sq at step 0: error vs depth"]
    width_fits = at.dataframe[0].value
    assert list(width_fits["depth"]) == [4, 8] and (width_fits["theory"] == -1).all()
    assert (width_fits["slope"] < 0).all() and (width_fits["ci_low"] <= width_fits["slope"]).all()
    assert any("differs from the limit run's" in w.value for w in at.warning)  # the lr grid is another setting
    assert any("form 5 settings" in c.value and "(6 runs)" in c.value for c in at.caption)  # 4 widths + lr grid
    lr = _charts(at)[2]
    stars = [t for t in lr["data"] if t["name"].startswith("best lr")]
    assert [_array(s["x"])[0] for s in stars] == [0.5, 0.5]
    assert any(t["name"].startswith("diverged") for t in lr["data"])


def test_coupling_page_draws_excess_over_chance_with_the_chance_band(runs_dir, data_env):
    data_env(runs_dir)
    at = _page(COUPLING)
    _clean(at)
    assert at.selectbox(key="coupling_page.metric").value == "coupling_acc"  # the page's opening metric
    at.selectbox(key="coupling_page.metric").set_value("coupling_fwd").run()
    _clean(at)
    assert not at.info
    depth, steps = _charts(at)
    assert _names(depth) == ["chance level (shaded, in each run's colour)", "w128-d4", "w64-d4"]  # names once
    band, excess = depth["data"][1], depth["data"][2]
    assert band["fill"] == "tonexty" and depth["layout"]["yaxis"]["title"]["text"].startswith("coupling_fwd − chance")
    np.testing.assert_allclose(_array(excess["x"]), [0.25, 0.5, 0.75, 1.0])  # blocks 1..L
    measured = at.get("download_button")  # the CSV holds measured and chance side by side
    assert steps["layout"]["xaxis"]["title"]["text"] == "step"
    assert any("projection noise" in c.value for c in at.caption)
    at.radio(key="coupling_page.show").set_value("measured").run()
    _clean(at)
    prof = _charts(at)[0]
    assert _names(prof)[1] == "w128-d4" and at.query_params["show"] == "measured"
    raw = _array(prof["data"][2]["y"]) - _array(excess["y"])
    np.testing.assert_allclose(raw, _array(band["y"]), rtol=1e-6)  # excess = measured − chance, row by row
    at.selectbox(key="coupling_page.metric").select("coupling_acc").run()
    _clean(at)
    assert _names(_charts(at)[0]) == ["w128-d4", "w64-d4"]  # no chance level recorded for coupling_acc
    assert at.query_params["metric"] == "coupling_acc" and len(measured)


def test_coupling_page_explains_values_a_log_axis_cannot_draw(runs_dir, data_env):
    from dynamics.runs.store import read_metrics, write_parquet_atomic
    import pyarrow as pa
    f = runs_dir / "w64-d4" / "metrics.parquet"
    df = read_metrics(runs_dir / "w64-d4")
    df.loc[df["metric"] == "coupling_fwd", "value"] = 0.0  # as a decoupled run records
    write_parquet_atomic(f, pa.Table.from_pandas(df, preserve_index=False))
    data_env(runs_dir)
    at = _page(COUPLING, {"show": "measured", "log_y": "True", "metric": "coupling_fwd"})
    _clean(at)
    notes = [c.value for c in at.caption if c.value.startswith("Not drawn on the log axis")]
    assert len(notes) == 2 and "`w64-d4`: 4 of 4 values are exactly 0" in notes[0]


def test_missing_and_damaged_files_are_messages_on_every_page(runs_dir, data_env):
    (runs_dir / "w64-d4" / "metrics.parquet").write_bytes(b"garbage")
    (runs_dir / "w128-d4" / "neurons.parquet").unlink()
    data_env(runs_dir)
    for page in (TRAJ, LIMIT, COUPLING, SCALING):
        at = _page(page, {"runs": ["w64-d4", "w128-d4"]})
        assert not at.exception, (page, [e.value for e in at.exception])
        assert any("w64-d4" in w.value and "Parquet" in w.value for w in at.warning), page
        if page == SCALING:  # said once, at the top (its container is filled after the charts are sent)
            texts = [str(getattr(e, "value", "")) for e in at.main]  # the page's elements in order
            said = [k for k, t in enumerate(texts) if "w64-d4" in t and "Parquet" in t]
            first_heading = next(k for k, t in enumerate(texts) if "Error against width and depth" in t)
            assert len(said) == 1 and said[0] < first_heading, texts
    at = _page(TRAJ, {"runs": ["w128-d4", "w64-d4"], "view": "Neurons"})  # w128-d4 first: its quantiles
    assert any("no single-neuron quantiles" in i.value for i in at.info)


def test_session_roots_add_runs_to_every_picker(tmp_path, runs_dir, data_env):
    (tmp_path / "empty").mkdir()
    data_env(tmp_path / "empty")
    at = _page(TRAJ, session={"uploaded_roots": [str(runs_dir)]})
    _clean(at)
    assert len(_charts(at)) == 1 and at.query_params["runs"] == ["w128-d4", "w64-d4"]


def test_train_form_trains_a_tiny_run_in_the_background(tmp_path, runs_dir, data_env):
    from dashboard import train_form
    data_env(runs_dir)
    at = _page(TRAJ)
    assert not at.sidebar.number_input and not at.sidebar.button  # lazy: no form until the expander is opened
    at.session_state["traj_page.train_open"] = True  # as a click on "Train a small run" does
    at.run()
    out = tmp_path / "mine"
    inputs = {w.label: w for w in at.sidebar.number_input}
    inputs["steps"].set_value(3)
    at.sidebar.select_slider[0].set_value(16)
    at.sidebar.select_slider[1].set_value(2)
    [box] = [t for t in at.sidebar.text_input if t.label == "into folder"]
    box.input(str(out))
    at.sidebar.button[0].click().run()
    _clean(at)
    (run_dir,) = at.session_state["dashboard.train_jobs"]
    assert train_form.wait(run_dir)["status"] == "complete", train_form._JOBS[run_dir]
    at.run()
    _clean(at)
    assert at.text_input(key="traj_page.user_dir").value == str(out)
    assert Path(run_dir).name in at.multiselect(key="traj_page.runs").value  # selected when it arrives
    assert any("it is in the run picker" in s.value for s in at.success)
