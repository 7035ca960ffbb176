"""W&B offline runs -> runs (dynamics.runs.wandb_offline): runs written by the real wandb package with
`wandb.init(mode="offline")` where it installs (requirements-trackers.txt), read back by the package's own
reader; without the package, the one-line `pip install wandb` refusal. Every test counts the values written.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dynamics.__main__ import main
from dynamics.runs import wandb_offline
from dynamics.runs.imports import RunImportError, import_file
from dynamics.runs.store import read_metrics

L, STEPS = 3, (0, 1, 2, 3)


def _offline_runs(root: Path, monkeypatch) -> dict[str, int]:
    """Two offline runs under root/wandb; returns run name -> values logged (numbers only)."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(root)
    written = {}
    for width in (16, 32):
        run = wandb.init(mode="offline", project="mup", name=f"w{width}", dir=str(root),
                         config={"depth": L, "width": width, "opt": {"lr": 0.1}})
        n = 0
        for s in STEPS:
            wandb.log({**{f"layer_{ell}/h_sq": 1 + ell / 8 + s / 64 for ell in range(1, L + 1)},
                       "train/loss": 1.0 / (s + 1), "nan_metric": float("nan"), "note": "text"}, step=s)
            n += L + 2
        run.finish()
        written[f"mup-w{width}"] = n
    wandb.teardown()  # the service writes the logs: wait for it, so a service kept from an earlier test is done
    return written


def test_offline_runs_folder_each_run_becomes_a_run(tmp_path, monkeypatch, capsys):
    written = _offline_runs(tmp_path, monkeypatch)
    assert main(["import", str(tmp_path / "wandb"), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.count("imported:") == 2
    for name, n in written.items():
        run = tmp_path / "out" / name
        df = read_metrics(run)
        assert len(df) == n
        h = df[df.metric == "h_sq"].sort_values(["step", "layer"])
        np.testing.assert_array_equal(h.value, [1 + ell / 8 + s / 64 for s in STEPS for ell in range(1, L + 1)])
        assert df[df.metric == "nan_metric"].value.isna().all()
    res = import_file(next((tmp_path / "wandb").glob("offline-run-*")), tmp_path / "one")  # one run folder
    assert res.others == [] and res.meta["config"]["opt.lr"] == 0.1 and res.meta["config"]["depth"] == L
    whys = {s["what"]: s["why"] for s in res.skipped}
    assert "bookkeeping" in whys["keys _runtime, _step, _timestamp"]
    assert any("note" in w and "not numbers" in why for w, why in whys.items())
    log = next((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    res = import_file(log, tmp_path / "file", name="mine")  # the .wandb file alone, as the Upload page gets it
    assert res.run_dir.name == "mine" and res.meta["source"]["format"] == "wandb-offline"
    assert res.summary["rows"] in written.values() and res.meta["status"] == "complete"


def test_without_the_wandb_package_one_line_says_how_to_install(tmp_path, monkeypatch):
    log = tmp_path / "run-abc.wandb"
    log.write_bytes(wandb_offline.MAGIC + bytes(60))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a))
    with pytest.raises(RunImportError, match=r"^reading a W&B offline run needs the wandb package: pip install "
                                             r"wandb$"):
        import_file(log, tmp_path / "out")


def test_a_damaged_log_is_one_line(tmp_path):
    pytest.importorskip("wandb")
    log = tmp_path / "run-abc.wandb"
    log.write_bytes(wandb_offline.MAGIC + bytes(range(256)) * 4)
    with pytest.raises(RunImportError) as e:
        import_file(log, tmp_path / "out")
    assert "\n" not in str(e.value) and "run-abc.wandb" in str(e.value)
