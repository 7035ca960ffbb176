"""Trackio's local database -> runs (dynamics.runs.trackio): databases the test writes with sqlite3 in Trackio's
schema (version 2, and the older one without run_id), and one written by the real trackio package where it
installs (requirements-dev.txt). Every test counts the values written and read.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from dynamics.__main__ import main
from dynamics.runs.imports import Limits, RunImportError, import_file
from dynamics.runs.store import read_meta, read_metrics

L, STEPS = 3, (0, 5, 10)


def _db(path: Path, run_ids: bool = True) -> tuple[Path, dict[str, int]]:
    """proj.db with runs a (per-layer h_sq, loss with NaN/∞ texts, an image, a step logged twice) and b."""
    con = sqlite3.connect(path)
    rid = "run_id TEXT NOT NULL, " if run_ids else ""
    con.execute(f"CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, {rid}timestamp TEXT NOT NULL, "
                "run_name TEXT NOT NULL, step INTEGER NOT NULL, metrics TEXT NOT NULL)")
    con.execute(f"CREATE TABLE configs (id INTEGER PRIMARY KEY AUTOINCREMENT, {rid}run_name TEXT NOT NULL, "
                "config TEXT NOT NULL, created_at TEXT NOT NULL)")
    con.execute(f"CREATE TABLE system_metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, {rid}timestamp TEXT NOT NULL,"
                " run_name TEXT NOT NULL, metrics TEXT NOT NULL)")
    counts = {}

    def log(run: str, step: int, values: dict) -> None:
        cols = ("run_id, " if run_ids else "") + "timestamp, run_name, step, metrics"
        args = ([f"id-{run}"] if run_ids else []) + ["2026-01-01T00:00:00", run, step, json.dumps(values).encode()]
        con.execute(f"INSERT INTO metrics ({cols}) VALUES ({', '.join('?' * len(args))})", args)

    for s in STEPS:
        log("a", s, {**{f"layer_{ell}/h_sq": 1 + ell / 8 + s / 64 for ell in range(L)},
                     "loss": "NaN" if s == 5 else "Infinity" if s == 10 else 1.0,
                     "sample": {"_type": "trackio.image", "file_path": "x.png"}})
    log("a", 10, {"loss": 0.25})  # step 10 again: the later row is kept
    counts["proj-a"] = L * len(STEPS) + len(STEPS)
    log("b", 0, {"loss": 3.0, "train/acc": True})
    counts["proj-b"] = 2
    for run in ("a", "b"):
        cfg = {"depth": L - 1, "width": 16, "lr": 0.01, "_Username": "me", "_Created": "2026", "run": run}
        args = ([f"id-{run}"] if run_ids else []) + [run, json.dumps(cfg).encode(), "2026"]
        con.execute(f"INSERT INTO configs ({'run_id, ' if run_ids else ''}run_name, config, created_at) "
                    f"VALUES ({', '.join('?' * len(args))})", args)
    con.execute(f"INSERT INTO system_metrics ({'run_id, ' if run_ids else ''}timestamp, run_name, metrics) VALUES "
                f"({'?, ' if run_ids else ''}?, ?, ?)", (["id-a"] if run_ids else []) + ["t", "a", "{}"])
    con.commit()
    con.close()
    return path, counts


@pytest.mark.parametrize("run_ids", [True, False], ids=["schema2", "before-0.24"])
def test_database_each_run_becomes_a_run(tmp_path, capsys, run_ids):
    src, counts = _db(tmp_path / "proj.db", run_ids)
    assert main(["import", str(src), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.count("imported:") == 2
    for run, n in counts.items():
        meta, df = read_meta(tmp_path / "out" / run), read_metrics(tmp_path / "out" / run)
        assert len(df) == n and meta["source"]["format"] == "trackio"
        assert meta["config"] == {"depth": L - 1, "width": 16, "lr": 0.01, "run": run[-1]}
        assert meta["tags"] == {"_Username": "me", "_Created": "2026"}
    meta, df = read_meta(tmp_path / "out" / "proj-a"), read_metrics(tmp_path / "out" / "proj-a")
    h = df[df.metric == "h_sq"].sort_values(["step", "layer"])
    np.testing.assert_array_equal(h.value, [1 + ell / 8 + s / 64 for s in STEPS for ell in range(L)])
    loss = df[df.metric == "loss"].set_index("step").value
    assert loss[0] == 1.0 and np.isnan(loss[5]) and loss[10] == 0.25
    whys = {s["what"]: s["why"] for s in meta["skipped"]}
    assert "not numbers" in whys["3 value(s) of 1 key(s) (sample)"]
    assert "later row is kept" in whys["1 earlier value(s) of a (key, step)"]
    assert "not imported" in whys["1 row(s) of system_metrics"]


def test_not_trackio_and_damaged_rows_are_one_line(tmp_path):
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(RunImportError, match="without Trackio's metrics table"):
        import_file(other, tmp_path / "out")
    src, _ = _db(tmp_path / "proj.db")
    con = sqlite3.connect(src)
    con.execute("INSERT INTO metrics (run_id, timestamp, run_name, step, metrics) VALUES ('id-c', 't', 'c', 0, "
                "'{not json')")
    con.commit()
    con.close()
    res = import_file(src, tmp_path / "out")
    assert [r.run_dir.name for r in res.runs] == ["proj-a", "proj-b"]
    assert res.failed == [{"what": "proj/c", "why": "row 1 of run c: its metrics are not a JSON object"}]
    with pytest.raises(RunImportError, match=r"holds 3 runs \(limit 2\)"):
        import_file(src, tmp_path / "out2", limits=Limits(max_runs=2))
    (tmp_path / "cut.db").write_bytes(src.read_bytes()[:3000])
    with pytest.raises(RunImportError) as e:
        import_file(tmp_path / "cut.db", tmp_path / "out3")
    assert "\n" not in str(e.value)


def test_a_million_metric_names_are_refused_in_one_line(tmp_path):
    src = tmp_path / "names.db"
    con = sqlite3.connect(src)
    con.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id TEXT, timestamp TEXT, run_name TEXT, "
                "step INTEGER, metrics TEXT)")
    con.execute("INSERT INTO metrics VALUES (1, 'r', 't', 'r', 0, ?)", (json.dumps({f"m{k}": 1.0 for k in
                                                                                  range(3000)}),))
    con.commit()
    con.close()
    with pytest.raises(RunImportError, match=r"more than 2000 distinct metric names \(limit 2000\)"):
        import_file(src, tmp_path / "out", limits=Limits.hosted())


def test_real_trackio_database_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    trackio = pytest.importorskip("trackio")
    written = {}
    for depth in (2, 3):
        trackio.init(project="resnets", name=f"d{depth}", config={"depth": depth, "width": 8})
        n = 0
        for s in STEPS:
            trackio.log({**{f"h_sq/{ell}": 1 + ell / 8 + s / 64 for ell in range(1, depth + 1)},
                         "loss": 1.0 / (s + 1)}, step=s)
            n += depth + 1
        trackio.finish()
        written[f"resnets-d{depth}"] = n
    db = next((tmp_path / "trackio").glob("*.db"))
    res = import_file(db, tmp_path / "out")
    got = {r.run_dir.name: r for r in res.runs}
    assert {k: v.summary["rows"] for k, v in got.items()} == written
    for depth in (2, 3):
        r = got[f"resnets-d{depth}"]
        assert r.meta["config"] == {"depth": depth, "width": 8} and r.summary["layers"] == depth
        df = read_metrics(r.run_dir)
        h = df[df.metric == "h_sq"].sort_values(["step", "layer"])
        np.testing.assert_array_equal(h.value, [1 + ell / 8 + s / 64 for s in STEPS for ell in range(1, depth + 1)])
