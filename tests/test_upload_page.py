"""The Upload page (AppTest): drag-and-drop import, preview, skipped list, who sees an upload, clean-up.

Two AppTest objects are two browser sessions. Hosted: the run uploaded in one must show on every page of that
session and on no page of the other. Local (the user's own dashboard): an upload is kept on disk and listed in
every session, a later one too, and leads the run selection. $DYNAMICS_UPLOAD_DIR points the folders at tmp_path.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.uploads import PREFIX, import_uploads, sweep_old

APP = str(Path(__file__).resolve().parents[1] / "app.py")
UPLOAD, RUNS = "pages/6_Upload.py", "pages/1_Runs.py"
CSV = b"step,layer,metric,value,note\n" + b"".join(
    f"{s},{ell},h_sq,{1 + ell / 10 + s / 100},x\n".encode() for s in (0, 10) for ell in range(5)) + \
    b"0,-1,loss,1.0,x\n10,-1,loss,0.5,x\n"


@pytest.fixture
def env(monkeypatch, tmp_path, runs_dir):
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(runs_dir))
    monkeypatch.setenv("DYNAMICS_UPLOAD_DIR", str(tmp_path / "uploads"))
    return tmp_path / "uploads"


def _session() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(UPLOAD).run()
    assert not at.exception
    return at


def _run_ids(at: AppTest) -> list[str]:
    at.switch_page(RUNS).run()
    assert not at.exception
    return list(at.dataframe[0].value["run_id"])


def test_upload_preview_skipped_and_only_this_session_sees_it(env, monkeypatch):
    monkeypatch.setenv("DYNAMICS_READONLY", "1")  # a shared instance: per-session scope
    a, b = _session(), _session()
    a.file_uploader[0].set_value([("mylog.csv", CSV, "text/csv"),
                                  ("mylog.csv.json", json.dumps({"depth": 4, "width": 32}).encode(),
                                   "application/json")]).run()
    assert not a.exception and not a.error
    assert "imported as run `mylog`" in a.success[0].value and "mylog.csv.json" in a.success[0].value
    preview = a.dataframe[0].value.set_index("what")["understood"]
    assert preview["layers"] == "5 (indices 0..4)" and preview["steps"] == "2 (0..10)"
    assert preview["per-layer metrics"] == "h_sq" and preview["network scalars (layer −1)"] == "loss"
    assert "column note" in a.markdown[-1].value  # the skipped list says what and why
    (root,) = a.session_state["uploaded_roots"]
    assert Path(root).parent == env and (Path(root) / "mylog" / "run.json").is_file()
    a.run()  # a rerun with the same files in the uploader imports nothing twice
    assert len(a.success) == 1 and sorted(p.name for p in Path(root).iterdir()) == ["mylog"]
    assert "mylog" in _run_ids(a)
    assert "mylog" not in _run_ids(b)  # the other session, open at the same time
    assert "uploaded_roots" not in b.session_state or not b.session_state["uploaded_roots"]
    fresh = _session()
    assert "mylog" not in _run_ids(fresh)


def test_local_upload_is_kept_on_disk_listed_everywhere_and_leads_the_selection(env):
    a = _session()
    assert "on this computer" in a.caption[0].value and str(env / "local") in a.caption[0].value
    a.file_uploader[0].set_value(("mylog.csv", CSV, "text/csv")).run()
    assert not a.exception and "imported as run `mylog`" in a.success[0].value
    assert (env / "local" / "mylog" / "run.json").is_file() and "uploaded_roots" not in a.session_state
    assert "mylog" in _run_ids(a)
    assert a.multiselect(key="runs_page.runs").value == ["mylog"]  # the user's run leads, bundled ones dropped
    assert a.dataframe[0].value["run_id"].tolist()[:2] == ["w128-d4", "w64-d4"]  # bundled runs still listed
    fresh = _session()  # a reload or a restart: a new session, same folder on disk
    assert "mylog" in _run_ids(fresh) and fresh.multiselect(key="runs_page.runs").value == ["mylog"]
    fresh.switch_page(UPLOAD).run()
    fresh.file_uploader[0].set_value(("mylog.csv", CSV, "text/csv")).run()  # the same name again
    assert "imported as run `mylog-2`" in fresh.success[0].value
    assert sorted(p.name for p in (env / "local").iterdir()) == ["mylog", "mylog-2"]  # nothing overwritten
    fresh.switch_page(RUNS).run()
    assert fresh.multiselect(key="runs_page.runs").value == ["mylog-2"]


def test_a_bad_file_is_one_clear_error_and_registers_nothing(env):
    at = _session()
    at.file_uploader[0].set_value(("bad.csv", b"step,layer,value\n0,0,1\n", "text/csv")).run()
    assert not at.exception
    (err,) = at.error
    assert "`bad.csv` was not imported: wrong columns: missing metric" in err.value
    assert "uploaded_roots" not in at.session_state
    assert all(not any(p.iterdir()) for p in env.iterdir())  # no run, no staging left in the session folder


def test_json_alone_and_two_files_in_one_drop(tmp_path):
    root = tmp_path / "s"
    root.mkdir()
    (o,) = import_uploads([("cfg.json", b"{}")], root)
    assert not o["ok"] and "JSON file alone" in o["error"]
    out = import_uploads([("a.csv", CSV), ("a.csv", CSV), ("b.zip", b"PK\x03\x04junk")], root)
    assert [o["ok"] for o in out] == [True, True, False]
    assert [o.get("run") for o in out[:2]] == ["a", "a-2"] and "zip" in out[2]["error"]
    assert sorted(p.name for p in root.iterdir()) == ["a", "a-2"]


def test_old_session_folders_are_deleted_when_the_page_loads(env):
    env.mkdir(parents=True)
    old, new, other = env / f"{PREFIX}old", env / f"{PREFIX}new", env / "not-a-session"
    for d in (old, new, other):
        d.mkdir()
    long_ago = time.time() - 7 * 3600
    os.utime(old, (long_ago, long_ago))
    os.utime(other, (long_ago, long_ago))
    _session()
    assert not old.exists() and new.exists() and other.exists()
    os.utime(new, (long_ago, long_ago))
    assert sweep_old(env, ttl=3600, keep=new) == [] and new.exists()


def test_event_files_get_readable_names_and_a_typed_name_wins(tmp_path):
    from dashboard.uploads import run_name
    assert run_name("events.out.tfevents.1796621721.vm.23783.0") == "tensorboard-20261207-053521"
    assert run_name("mylog.csv") == "mylog" and run_name("runs.zip") == "runs"
    root = tmp_path / "s"
    root.mkdir()
    out = import_uploads([("a.csv", CSV), ("b.csv", CSV)], root, name="my-mlp")
    assert [o["run"] for o in out] == ["my-mlp", "my-mlp-2"]


def test_a_tracker_upload_with_several_runs_is_one_outcome_and_one_run_each(env, tmp_path):
    import io
    import zipfile
    from tests.test_import_mlflow import _store
    mlruns = tmp_path / "mlruns"
    _store(mlruns)
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as z:
        for f in mlruns.rglob("*"):
            z.write(f, f.relative_to(tmp_path))
    at = _session()
    at.file_uploader[0].set_value(("mlruns.zip", blob.getvalue(), "application/zip")).run()
    assert not at.exception
    done = [s.value for s in at.success]
    assert len(done) == 2 and all("mlruns.zip" in d for d in done), done  # the experiment's two live runs
    runs = sorted(p.name for p in (env / "local").iterdir())
    assert len(runs) == 2 and all("w64" in r or "w128" in r for r in runs), runs
    at.switch_page(RUNS).run()
    assert sorted(at.multiselect(key="runs_page.runs").value) == runs  # both lead the selection
