"""The Upload page's reader (dashboard.uploads.import_uploads, through the bounded child of dynamics.runs.sandbox)
takes the trackers' files as they are uploaded, unchanged: an MLflow store zipped, a Trackio database, a W&B
`.wandb` log. A tracker's several runs all land in the session folder, one outcome each.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from dashboard import uploads
from tests.test_import_mlflow import _store
from tests.test_import_trackio import _db


def _zip(folder: Path, dest: Path) -> bytes:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder.parent).as_posix())
    return dest.read_bytes()


def test_tracker_uploads_import_every_run(tmp_path):
    root = tmp_path / "session"
    root.mkdir()
    store, n = _store(tmp_path / "mlruns")
    db, counts = _db(tmp_path / "proj.db")
    outcomes = uploads.import_uploads([("mlruns.zip", _zip(store, tmp_path / "mlruns.zip")),
                                       ("proj.db", db.read_bytes())], root)
    assert [o["ok"] for o in outcomes] == [True] * 4, outcomes
    assert [o["format"] for o in outcomes] == ["mlflow", "mlflow", "trackio", "trackio"]
    runs = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    assert len(runs) == 4 and sum("sweep-w" in r for r in runs) == 2 and sum("proj-" in r for r in runs) == 2
    assert sorted(o["run"] for o in outcomes) == runs  # one outcome per run, each naming its own
    assert {o["summary"]["rows"] for o in outcomes[2:]} <= set(counts.values())


def test_a_wandb_log_uploads(tmp_path, monkeypatch):
    from tests.test_import_wandb_offline import _offline_runs
    _offline_runs(tmp_path, monkeypatch)
    log = next((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    root = tmp_path / "session"
    root.mkdir()
    (o,) = uploads.import_uploads([(log.name, log.read_bytes())], root)
    assert o["ok"] and o["format"] == "wandb-offline" and o["summary"]["layers"] == 3, o
