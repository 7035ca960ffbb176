"""MLflow -> runs: the file store (dynamics.runs.mlflow) and the SQLite store, mlflow.db
(dynamics.runs.mlflow_sql). Stores the test writes in the documented layout (`<experiment>/<run>/metrics/<key>`
lines `timestamp value step`, params/, tags/, meta.yaml; the SQL tables' columns), and stores written by the real
mlflow package where it installs (requirements-dev.txt). Every test counts the values written and read.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from dynamics.__main__ import main
from dynamics.runs.imports import Limits, RunImportError, import_file
from dynamics.runs.store import read_meta, read_metrics

L, STEPS = 3, (0, 10, 20)


def _run(exp: Path, run_id: str, name: str, *, status: int = 3, stage: str = "active", params=None,
         metrics=None) -> Path:
    d = exp / run_id
    (d / "metrics").mkdir(parents=True)
    (d / "meta.yaml").write_text(f"artifact_uri: file:///x/artifacts\nexperiment_id: '{exp.name}'\n"
                                 f"lifecycle_stage: {stage}\nrun_id: {run_id}\nrun_name: {name}\n"
                                 f"status: {status}\ntags: []\nuser_id: me\n")
    for key, lines in (metrics or {}).items():
        (d / "metrics" / key).parent.mkdir(parents=True, exist_ok=True)
        (d / "metrics" / key).write_text("".join(f"{line}\n" for line in lines))
    (d / "params").mkdir()
    for k, v in (params or {}).items():
        (d / "params" / k).parent.mkdir(parents=True, exist_ok=True)  # a key with / is a path, as for metrics
        (d / "params" / k).write_text(v)
    (d / "tags").mkdir()
    (d / "tags" / "mlflow.runName").write_text(name)
    (d / "tags" / "note").write_text("from the test")
    (d / "artifacts").mkdir()
    (d / "artifacts" / "model.pkl").write_bytes(b"never read")
    return d


def _store(root: Path) -> tuple[Path, int]:
    """mlruns/ with experiment 1 (`sweep`: runs w64, w128 and a deleted one) and the empty Default (0)."""
    (root / "0").mkdir(parents=True)
    (root / "0" / "meta.yaml").write_text("experiment_id: '0'\nlifecycle_stage: active\nname: Default\n")
    exp = root / "1"
    exp.mkdir()
    (exp / "meta.yaml").write_text("artifact_location: file:///x\nexperiment_id: '1'\nlifecycle_stage: active\n"
                                   "name: sweep\n")
    n = 0
    for width in (64, 128):
        metrics = {f"layer_{ell}/h_sq": [f"17000000{s:05d} {1 + ell / 8 + s / 64} {s}" for s in STEPS]
                   for ell in range(L)}
        metrics |= {f"g_sq/{ell}": [f"17000000{s:05d} {ell / 4 + s / 32} {s}" for s in STEPS] for ell in range(L)}
        metrics["loss"] = [f"1700000000000 {2.0 / width} 0", "1700000000001 nan 10", "1700000000002 inf 20",
                           "1700000000003 0.5 20"]  # step 20 logged twice: the later line is kept
        metrics["old"] = ["1600000000000 7.5"]  # written before MLflow 1.0: no step (step 0)
        n += 2 * L * len(STEPS) + 3 + 1
        _run(exp, f"run{width}", f"w{width}", params={"depth": str(L - 1), "width": str(width), "lr": "0.1",
                                                      "optimizer": "sgd", "steps": "1e5", "data/path": "/x"},
             metrics=metrics)
    _run(exp, "gone", "deleted-run", stage="deleted", metrics={"loss": ["1 1.0 0"]})
    (root / ".trash").mkdir()
    return root, n


def test_mlruns_folder_each_run_becomes_a_run(tmp_path, capsys):
    src, n = _store(tmp_path / "mlruns")
    assert main(["import", str(src), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.count("imported:") == 2 and "sweep-w64" in out and "sweep-w128" in out
    for width in (64, 128):
        run = tmp_path / "out" / f"sweep-w{width}"
        meta, df = read_meta(run), read_metrics(run)
        assert len(df) == n // 2  # every value written, the twice-logged step once
        h = df[df.metric == "h_sq"].sort_values(["step", "layer"])
        assert len(h) == L * len(STEPS)
        np.testing.assert_array_equal(h.value, [1 + ell / 8 + s / 64 for s in STEPS for ell in range(L)])
        loss = df[df.metric == "loss"].set_index("step").value
        assert loss[0] == 2.0 / width and np.isnan(loss[10]) and loss[20] == 0.5
        assert df[df.metric == "old"].step.tolist() == [0]
        assert meta["config"] == {"depth": L - 1, "width": width, "lr": 0.1, "optimizer": "sgd"}
        assert meta["config_source"] == "mlflow params" and meta["status"] == "complete"
        assert meta["tags"]["note"] == "from the test" and meta["tracker"]["experiment"] == "sweep"
        whys = {s["what"]: s["why"] for s in meta["skipped"]}
        assert "later line is kept" in whys["1 earlier value(s) of a (key, step)"]
        kept_out = next(w for w in whys if w.startswith("2 param(s): "))  # data/path, steps=1e5: noted
        assert "data/path (config field name" in kept_out and "config steps 100000.0 must be an integer" in kept_out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sweep-w128", "sweep-w64"]  # not the deleted


def test_experiment_folder_run_folder_and_zip(tmp_path):
    src, n = _store(tmp_path / "mlruns")
    res = import_file(src / "1", tmp_path / "a")
    assert sorted(r.run_dir.name for r in res.runs) == ["sweep-w128", "sweep-w64"]
    res = import_file(src / "1" / "run64", tmp_path / "b")  # the experiment's name from one folder up
    assert res.run_dir.name == "sweep-w64" and res.others == [] and res.summary["rows"] == n // 2
    z = tmp_path / "mlruns.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(tmp_path).as_posix())
    res = import_file(z, tmp_path / "c", name="mine")
    assert sorted(r.run_dir.name for r in res.runs) == ["mine-sweep-w128", "mine-sweep-w64"]
    assert sum(r.summary["rows"] for r in res.runs) == n and res.meta["source"]["format"] == "mlflow"


def test_a_bad_run_is_one_line_and_the_others_import(tmp_path, capsys):
    src, _ = _store(tmp_path / "mlruns")
    _run(src / "1", "bad", "broken", metrics={"loss": ["1700000000000 abc 0"]})
    _run(src / "1", "neg", "negative", metrics={"loss": ["1700000000000 1.0 -5"]})
    assert main(["import", str(src), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("not imported:")]
    assert len(lines) == 2 and "sweep/broken: metrics/loss is not MLflow's" in out and "step -5" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sweep-w128", "sweep-w64"]
    only = tmp_path / "only"
    _run(only, "bad", "broken", metrics={"loss": ["x"]})
    (only / "meta.yaml").write_text("name: lone\n")
    with pytest.raises(RunImportError, match="metrics/loss is not MLflow's") as e:
        import_file(only, tmp_path / "out2")
    assert "\n" not in str(e.value) and not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())


def test_bounds_metric_names_runs_and_key_collisions(tmp_path):
    exp = tmp_path / "mlruns" / "1"
    exp.mkdir(parents=True)
    (exp / "meta.yaml").write_text("name: e\n")
    _run(exp, "many", "many", metrics={f"m{k}": ["1 1.0 0"] for k in range(30)})
    with pytest.raises(RunImportError, match=r"30 distinct metric names \(limit 20\)"):
        import_file(exp.parent, tmp_path / "out", limits=Limits(max_metrics=20))
    with pytest.raises(RunImportError, match=r"holds 1 runs \(limit 0\)"):
        import_file(exp.parent, tmp_path / "out", limits=Limits(max_runs=0))
    _run(exp, "clash", "clash", metrics={"layer_1/h_sq": ["1 1.0 0"], "h_sq/1": ["1 2.0 5"]})
    res = import_file(exp.parent, tmp_path / "out")
    assert [f["what"] for f in res.failed] == ["e/clash"] and "both name the metric 'h_sq' at layer 1" in \
        res.failed[0]["why"]


def test_step_column_is_refused_for_a_store(tmp_path):
    src, _ = _store(tmp_path / "mlruns")
    with pytest.raises(RunImportError, match="--step-column applies to CSV and Parquet tables"):
        import_file(src, tmp_path / "out", step_column="x")


def test_real_mlflow_file_store_round_trip(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    mlflow.set_experiment("depth-sweep")
    written = {}
    for depth in (2, 4):
        with mlflow.start_run(run_name=f"d{depth}"):
            mlflow.log_params({"depth": depth, "width": 32, "lr": 0.05})
            mlflow.set_tag("family", "resnet")
            n = 0
            for s in STEPS:
                mlflow.log_metrics({**{f"layer_{ell}/h_sq": 1 + ell / 8 + s / 64 for ell in range(1, depth + 1)},
                                    "train/loss": 1.0 / (s + 1)}, step=s)
                n += depth + 1
            written[f"depth-sweep-d{depth}"] = n
    monkeypatch.chdir(tmp_path)  # nothing is written beside the store
    res = import_file(tmp_path / "mlruns", tmp_path / "out")
    got = {r.run_dir.name: r for r in res.runs}
    assert {k: v.summary["rows"] for k, v in got.items()} == written
    for depth in (2, 4):
        r = got[f"depth-sweep-d{depth}"]
        assert r.meta["config"] == {"depth": depth, "width": 32, "lr": 0.05} and r.meta["tags"]["family"] == "resnet"
        df = read_metrics(r.run_dir)
        h = df[df.metric == "h_sq"].sort_values(["step", "layer"])
        np.testing.assert_array_equal(h.value, [1 + ell / 8 + s / 64 for s in STEPS for ell in range(1, depth + 1)])
        assert r.summary["network_scalars"] == ["train/loss"] and r.summary["layers"] == depth


def _sql_store(path: Path) -> Path:
    """mlflow.db in MLflow's SQL schema (the columns read), as the test writes it: runs d2 (FINISHED) and a
    deleted one; NaN stored as 0 with is_nan, +∞ as the largest float, step 10 logged twice."""
    import sqlite3
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT, lifecycle_stage TEXT);
        CREATE TABLE runs (run_uuid TEXT PRIMARY KEY, name TEXT, status TEXT, start_time INTEGER,
                           lifecycle_stage TEXT, experiment_id INTEGER);
        CREATE TABLE metrics (key TEXT, value REAL, timestamp INTEGER, run_uuid TEXT, step INTEGER, is_nan INTEGER);
        CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT);
        CREATE TABLE tags (key TEXT, value TEXT, run_uuid TEXT);
        INSERT INTO experiments VALUES (0, 'Default', 'active'), (1, 'sweep', 'active');
        INSERT INTO runs VALUES ('r1', 'd2', 'FINISHED', 1, 'active', 1), ('r2', 'gone', 'FAILED', 2, 'deleted', 1);
        INSERT INTO params VALUES ('depth', '2', 'r1'), ('lr', '0.5', 'r1');
        INSERT INTO tags VALUES ('mlflow.user', 'me', 'r1');
        INSERT INTO metrics VALUES ('layer_1/h_sq', 1.5, 10, 'r1', 0, 0), ('layer_2/h_sq', 2.5, 10, 'r1', 0, 0),
            ('loss', 0, 11, 'r1', 0, 1), ('loss', 1.7976931348623157e308, 12, 'r1', 10, 0),
            ('loss', 0.25, 13, 'r1', 10, 0), ('loss', 9.0, 1, 'r2', 0, 0);
    """)
    con.commit()
    con.close()
    return path


def test_mlflow_sqlite_store(tmp_path):
    res = import_file(_sql_store(tmp_path / "mlflow.db"), tmp_path / "out")
    assert res.run_dir.name == "sweep-d2" and res.others == [] and res.meta["source"]["format"] == "mlflow"
    df = read_metrics(res.run_dir).set_index(["metric", "step", "layer"]).value
    assert df["h_sq", 0, 1] == 1.5 and df["h_sq", 0, 2] == 2.5 and np.isnan(df["loss", 0, -1])
    assert df["loss", 10, -1] == 0.25 and len(df) == 4  # the +∞ at step 10 was logged again
    assert res.meta["config"] == {"depth": 2, "lr": 0.5} and res.meta["tags"] == {"mlflow.user": "me"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # sqlalchemy's, about mlflow's own mappers
def test_real_mlflow_sqlite_store_round_trip(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")  # MLflow's SQL store needs sqlalchemy and alembic (requirements-dev.txt)
    pytest.importorskip("alembic")
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("sql-sweep")
    with mlflow.start_run(run_name="d3"):
        mlflow.log_params({"depth": 3, "width": 16})
        for s in STEPS:
            mlflow.log_metrics({**{f"h_sq/{ell}": 1 + ell / 8 + s / 64 for ell in range(1, 4)}, "loss": 1 / (s + 1),
                                "gap": float("nan"), "top": float("inf")}, step=s)
    mlflow.set_tracking_uri((tmp_path / "unused").as_uri())  # let the store's engine go before reading
    res = import_file(tmp_path / "mlflow.db", tmp_path / "out")
    assert res.run_dir.name == "sql-sweep-d3" and res.summary["rows"] == 6 * len(STEPS)
    df = read_metrics(res.run_dir)
    h = df[df.metric == "h_sq"].sort_values(["step", "layer"])
    np.testing.assert_array_equal(h.value, [1 + ell / 8 + s / 64 for s in STEPS for ell in range(1, 4)])
    assert df[df.metric == "gap"].value.isna().all() and (df[df.metric == "top"].value == np.inf).all()
    assert res.meta["config"] == {"depth": 3, "width": 16}
