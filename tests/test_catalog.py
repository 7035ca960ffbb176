"""The catalogue: config fields as columns, tidy metric frames joined with config, filters pushed into the
Parquet scans, a run index re-read only where run.json changed, and nothing half-made counted as a run."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dynamics
from dynamics.runs import store
from dynamics.sweep.catalog import Catalog, CatalogError, cache_path
from dynamics.config import RunConfig

WIDTHS, DEPTHS, STEPS = (16, 32), (2, 4), 5


@pytest.fixture(autouse=True)
def _cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _value(width: int, depth: int, step: int, layer: int) -> float:
    return width + depth / 10 + step / 100 + layer / 1000  # every row identifies its run, step and layer


def _write(root: Path, width: int, depth: int, *, status: str = "complete", stderr: bool = False) -> str:
    cfg = RunConfig(width=width, depth=depth, steps=STEPS, lr=0.1 * depth)
    run_id = f"n{width}_L{depth}" + ("_limit" if stderr else "")
    w = store.RunWriter(root / run_id, {"run_id": run_id, "kind": "limit" if stderr else "finite",
                                         "config": cfg.to_dict(), "device": "cpu"}, stderr=stderr)
    layers = np.arange(depth + 1)
    for step in range(STEPS + 1):
        extra = {"stderr": np.full(depth + 1, 0.5)} if stderr else {}
        w.add_metrics(step, layers, "h_sq", [_value(width, depth, step, ell) for ell in layers], **extra)
        w.add_metrics(step, store.NETWORK_LAYER, "loss", 1.0 / (1 + step), **({"stderr": 0.0} if stderr else {}))
    w.finish(status, wall_seconds=1.5)
    return run_id


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for width in WIDTHS:
        for depth in DEPTHS:
            _write(root, width, depth)
    # what a sweep may leave beside its runs: none of it is a run
    tmp = root / ".n64_L2.tmp-4242"
    tmp.mkdir()
    (tmp / store.METRICS).write_bytes(b"PAR1 half a file")
    (root / "notes").mkdir()
    (root / "sweep.json").write_text("{}")
    return root


def test_runs_view_has_config_columns(root):
    cat = dynamics.catalog(root)
    runs = cat.runs
    assert list(runs["run_id"]) == ["n16_L2", "n16_L4", "n32_L2", "n32_L4"]
    assert {"status", "wall_seconds", "ran_on", "width", "depth", "lr", "trained", "batch"} <= set(runs.columns)
    assert runs["width"].dtype == np.int64 and runs["lr"].dtype == np.float64
    assert (runs["status"] == "complete").all() and (runs["trained"] == "input,hidden,readout").all()
    assert set(cat.varying) == {"width", "depth", "lr"}  # what differs between the runs: the grid keys
    assert cat.query("SELECT count(*) AS n FROM runs WHERE depth = 4")["n"][0] == 2


def test_metric_is_tidy_with_config_joined(root):
    cat = dynamics.catalog(root)
    df = cat.metric("h_sq", layers=[1, 2], steps=[0, STEPS], where={"depth": 4, "width": [16, 32]})
    assert list(df.columns) == ["run_id", "step", "layer", "metric", "value", "width", "depth", "lr"]
    assert len(df) == 2 * 2 * 2  # runs × layers × steps
    assert (df["depth"] == 4).all() and set(df["width"]) == {16, 32}
    expected = [_value(w, d, s, ell) for w, d, s, ell in zip(df["width"], df["depth"], df["step"], df["layer"])]
    np.testing.assert_array_equal(df["value"].to_numpy(), expected)
    one = store.read_metrics(root / "n32_L4", metrics=["h_sq"], layers=[1, 2], steps=[0, STEPS])
    got = df[df.run_id == "n32_L4"].sort_values(["step", "layer"])["value"].to_numpy()
    np.testing.assert_array_equal(got, one.sort_values(["step", "layer"])["value"].to_numpy())
    loss = cat.metric("loss", steps=STEPS, config=["width"])
    assert list(loss.columns) == ["run_id", "step", "layer", "metric", "value", "width"] and len(loss) == 4
    assert cat.metric("h_sq", where={"depth": 99}).empty


def test_sql_joins_runs_and_metrics(root):
    cat = dynamics.catalog(root)
    df = cat.query("SELECT r.width, max(m.layer) AS top FROM metrics m JOIN runs r USING (run_id) "
                   "WHERE m.metric = 'h_sq' GROUP BY r.width ORDER BY r.width")
    assert df.to_dict("list") == {"width": [16, 32], "top": [4, 4]}
    assert cat.query("SELECT DISTINCT run_id FROM metrics ORDER BY 1")["run_id"].tolist() == list(cat.runs.run_id)


def test_filters_and_projection_reach_the_parquet_scan(root):
    cat = dynamics.catalog(root)
    plan = cat.query("EXPLAIN SELECT value FROM metrics WHERE metric = 'h_sq' AND step = 3 AND layer = 1")
    text = "\n".join(plan.iloc[:, 1])
    scan = text[text.index("READ_PARQUET") if "READ_PARQUET" in text else text.index("PARQUET"):]
    assert "Filters" in scan and "metric='h_sq'" in scan.replace(" ", "") and "step=3" in scan.replace(" ", "")
    assert "Projections" in scan
    by_run = cat.query("EXPLAIN SELECT value FROM metrics WHERE run_id = 'n32_L4' AND metric = 'loss'")
    assert "Scanning Files: 1/4" in "\n".join(by_run.iloc[:, 1])  # run_id (from the path) prunes files


def test_index_is_cached_and_reread_only_where_run_json_changed(root, monkeypatch):
    calls = []
    real = store.read_meta
    monkeypatch.setattr(store, "read_meta", lambda d: calls.append(Path(d).name) or real(d))
    Catalog(root)
    assert sorted(calls) == ["n16_L2", "n16_L4", "n32_L2", "n32_L4"] and cache_path(root).is_file()
    calls.clear()
    cat = Catalog(root)
    assert calls == [] and len(cat.runs) == 4  # reopened from the cache: no run.json parsed
    meta = store.read_meta(root / "n16_L2")
    meta["status"] = "diverged"
    del meta["path"]
    calls.clear()
    store.write_json_atomic(root / "n16_L2" / store.RUN_JSON, meta)
    os.utime(root / "n16_L2" / store.RUN_JSON, ns=(1, 1))  # a different mtime even on coarse clocks
    _write(root, 64, 2)
    assert cat.refresh() is True
    assert sorted(calls) == ["n16_L2", "n64_L2"]
    assert cat.query("SELECT status FROM runs WHERE run_id = 'n16_L2'")["status"][0] == "diverged"
    assert len(cat.metric("loss", steps=0)) == 5
    calls.clear()
    assert cat.refresh() is False and calls == []


def test_limit_runs_bring_their_stderr_column(root):
    _write(root, 16, 2, stderr=True)
    df = dynamics.catalog(root).metric("h_sq", steps=0, layers=0)
    assert "stderr" in df.columns
    assert df.set_index("run_id")["stderr"].isna().to_dict() == {
        "n16_L2": True, "n16_L2_limit": False, "n16_L4": True, "n32_L2": True, "n32_L4": True}


def test_running_and_damaged_runs(root):
    (root / "n64_L8").mkdir()
    (root / "n64_L8" / store.RUN_JSON).write_text("{not json")
    store.RunWriter(root / "n64_L4", {"run_id": "n64_L4", "kind": "finite",
                                       "config": RunConfig(width=64, depth=4).to_dict()})  # no Parquet yet
    cat = dynamics.catalog(root)
    runs = cat.runs.set_index("run_id")
    assert runs.loc["n64_L4", "status"] == "running" and runs.loc["n64_L8", "status"] == "unreadable"
    assert "not valid JSON" in runs.loc["n64_L8", "error"]
    assert len(cat.metric("loss", steps=0)) == 4  # neither has metrics.parquet


def test_empty_folder_and_bad_questions(tmp_path, root):
    (tmp_path / "empty").mkdir()
    cat = dynamics.catalog(tmp_path / "empty")
    assert cat.runs.empty and cat.query("SELECT * FROM metrics").columns.tolist()[:3] == ["run_id", "step", "layer"]
    assert cat.metric("loss").empty
    with pytest.raises(CatalogError, match="not a folder"):
        dynamics.catalog(tmp_path / "missing")
    with pytest.raises(CatalogError, match="unknown run column.*dpeth.*width"):
        dynamics.catalog(root).metric("loss", where={"dpeth": 4})


def test_catalog_function_survives_submodule_import(root):
    import dynamics.sweep.catalog  # noqa: F401  (the module sits in a subpackage, so the function stays)
    assert isinstance(dynamics.catalog(root), Catalog)
    from dynamics import catalog
    assert len(catalog(root, cache=False).runs) == 4


def test_cache_is_optional_and_never_inside_the_runs_folder(root, tmp_path):
    Catalog(root, cache=False)
    assert not cache_path(root).exists()
    Catalog(root, cache=tmp_path / "idx.parquet")
    assert (tmp_path / "idx.parquet").is_file()
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == [".n64_L2.tmp-4242"]
    assert isinstance(pd.read_parquet(tmp_path / "idx.parquet"), pd.DataFrame)
