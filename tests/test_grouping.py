"""Seeds and configs in every view (dynamics.figures.groups, dashboard.grouping): runs that differ only by seed drawn
as one mean curve with a ±1 standard-error band, colours by a config field, and the picker filtered by field values."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dynamics.config import RunConfig
from dynamics.figures.groups import colours_by, merge_seeds, seed_groups
from tests.conftest import _finite
from tests.test_pages import _array, _charts

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_seed_groups_join_only_runs_that_differ_by_seed():
    base = RunConfig(width=64, depth=4).to_dict()
    configs = {"a_s0_ab12cd34": base, "a_s1_ef56ab78": {**base, "seed": 1}, "a_s2": {**base, "seed": 2},
               "b": {**base, "width": 128}, "c": {**base, "seed": 3, "lr": 0.1}, "lim": {**base, "seed": 4}}
    groups = seed_groups(configs, {"lim": "limit"})
    assert set(groups) == {"a_s0_ab12cd34", "a_s1_ef56ab78", "a_s2"}       # b: other width; c: other lr; lim: a limit
    assert set(groups.values()) == {"a · 3 seeds"}
    assert seed_groups({"x": base, "y": {**base, "width": 32}}) == {}      # no two runs share a config


def test_merge_seeds_is_the_mean_with_the_standard_error_of_the_mean():
    rng = np.random.default_rng(0)
    rows = [{"run": r, "tau": t, "value": v} for r in ("s0", "s1", "s2") for t, v in zip((0.5, 1.0), rng.normal(size=2))]
    rows += [{"run": "other", "tau": 0.5, "value": 7.0}]
    df = pd.DataFrame(rows)
    out = merge_seeds(df, {"s0": "g", "s1": "g", "s2": "g"}, ["tau"])
    assert out[out.run == "other"].value.tolist() == [7.0]
    g = out[out.run == "g"].set_index("tau")
    for tau in (0.5, 1.0):
        vals = df[(df.run != "other") & (df.tau == tau)].value.to_numpy()
        assert g.loc[tau, "value"] == pytest.approx(vals.mean())
        assert g.loc[tau, "stderr"] == pytest.approx(vals.std(ddof=1) / np.sqrt(3))
        assert g.loc[tau, "seeds"] == 3
    lone = merge_seeds(df[~((df.run == "s1") | (df.run == "s2")) | (df.tau == 0.5)], {"s0": "g", "s1": "g", "s2": "g"},
                       ["tau"]).set_index(["run", "tau"])
    assert np.isnan(lone.loc[("g", 1.0), "stderr"]) and lone.loc[("g", 1.0), "seeds"] == 1  # one seed: no band


def test_colours_by_a_numeric_field_run_light_to_dark_in_order():
    c = colours_by({"a": 256, "b": 64, "c": 1024, "d": None, "e": 64})
    assert c["b"] == c["e"] != c["a"] != c["c"] and c["d"] == "#999999"
    lum = {k: sum(int(x) for x in c[k][4:-1].split(",")) for k in ("a", "b", "c")}  # "rgb(r, g, b)"
    assert lum["b"] > lum["a"] > lum["c"]                                   # smaller width, lighter colour
    cat = colours_by({"x": "reused", "y": "decoupled", "z": "reused"})
    assert cat["x"] == cat["z"] != cat["y"]


@pytest.fixture
def seeds_dir(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for k in range(3):
        _finite(root, f"w64_s{k}", RunConfig(width=64, depth=4, seed=k), offset=0.1 * k)
    _finite(root, "w128", RunConfig(width=128, depth=4), offset=0.5)
    for k in range(5):  # enough runs for the picker's filter
        _finite(root, f"d8_lr{k}", RunConfig(width=64, depth=8, lr=0.1 * (k + 1)), offset=0.05 * k)
    for var in ("DYNAMICS_RUNS", "DYNAMICS_READONLY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(root))
    return root


def _runs_page(query: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/1_Runs.py")
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def test_average_seeds_draws_one_curve_with_a_band_and_colour_by_a_field(seeds_dir):
    at = _runs_page({"runs": ["w64_s0", "w64_s1", "w64_s2", "w128"], "metric": "h_sq"})
    assert not at.exception
    groups = [t.get("legendgroup") for t in _charts(at)[0]["data"]]
    assert sum(str(g).startswith("w64_s") for g in groups) == 3 and not any("seeds" in str(g) for g in groups)
    at.sidebar.toggle(key="runs_page.seeds").set_value(True).run()
    assert not at.exception and at.query_params["seeds"] == "True"
    data = _charts(at)[0]["data"]
    lines = [t for t in data if t.get("mode", "").startswith("lines") and t["line"].get("width") != 0]
    assert len(lines) == 2 and any(t["name"].endswith("· 3 seeds") for t in lines), [t["name"] for t in lines]
    mean = [t for t in lines if t["name"].endswith("· 3 seeds")][0]
    band = [t for t in data if t.get("fill") == "tonexty" and t.get("legendgroup") == mean["legendgroup"]]
    assert band  # the ±1 standard-error band
    expected = np.mean([np.exp(np.linspace(0, 1, 5) / 2) * 1.4 + 0.1 * k for k in range(3)], axis=0)  # step 20
    np.testing.assert_allclose(_array(mean["y"]), expected, rtol=1e-5)
    at.sidebar.selectbox(key="runs_page.colour").set_value("width").run()
    assert at.query_params["colour"] == "width"
    colours = {t["legendgroup"]: t["line"]["color"] for t in _charts(at)[0]["data"]
               if t.get("mode", "").startswith("lines") and t["line"].get("width") != 0}
    assert len(set(colours.values())) == 2, colours


def test_the_picker_is_filtered_by_config_values(seeds_dir):
    at = _runs_page({})
    assert not at.exception
    assert len(at.multiselect(key="runs_page.runs").options) == 9
    at.multiselect(key="runs_page.f_depth").set_value(["8"]).run()
    assert not at.exception
    options = at.multiselect(key="runs_page.runs").options
    assert sorted(options) == [f"lr{k}" for k in range(5)] and at.query_params["f_depth"] == "8"  # short names
