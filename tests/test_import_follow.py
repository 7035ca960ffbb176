"""`import --follow`: an imported run kept up to date while its source is still being written (dynamics.runs.follow),
so the dashboard's live view redraws it: a long CSV that a logger appends to (in process), and a TensorBoard
folder written by torch's SummaryWriter watched by the CLI in a child process, stopped with SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dynamics.runs.follow import follow, signature
from dynamics.runs.imports import import_file
from dynamics.runs.store import liveness, read_meta, read_metrics

REPO = Path(__file__).resolve().parents[1]


def _csv(path: Path, steps) -> None:
    with path.open("a") as f:
        if path.stat().st_size == 0:
            f.write("step,layer,metric,value\n")
        for s in steps:
            f.write(f"{s},0,h_sq,{1 + s / 10}\n{s},1,h_sq,{2 + s / 10}\n{s},-1,loss,{1 / (1 + s)}\n")


def test_a_growing_csv_is_reimported_and_the_run_ends_complete(tmp_path):
    src = tmp_path / "log.csv"
    src.touch()
    _csv(src, range(3))
    res = import_file(src, tmp_path / "out", name="live")
    run = res.run_dir
    states = []

    def writer():
        time.sleep(0.3)
        states.append(liveness(read_meta(run)))  # while followed: running, with this process's heartbeat
        _csv(src, range(3, 6))

    t = threading.Thread(target=writer)
    t.start()
    t0 = time.monotonic()
    n = follow(src, run, lambda tmp: import_file(src, tmp, name=run.name), 0.1,
               stop=lambda: read_metrics(run)["step"].max() >= 5 or time.monotonic() - t0 > 20, say=lambda m: None)
    t.join()
    assert n >= 1 and states == ["running"]
    assert sorted(read_metrics(run)["step"].unique()) == list(range(6))
    meta = read_meta(run)
    assert meta["status"] == "complete" and "heartbeat" not in meta and meta["source"]["followed"]
    assert not any(p.name.startswith(".follow-") for p in run.parent.iterdir())  # no work folder left
    assert signature(src) != () and signature(tmp_path / "missing") == ()


def test_the_cli_follows_a_tensorboard_folder_being_written(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter
    logdir = tmp_path / "tb" / "exp1"
    w = SummaryWriter(str(logdir), flush_secs=1)
    for s in range(3):
        w.add_scalar("layer0/h_sq", 1.0 + s, s)
        w.add_scalar("train/loss", 1.0 / (1 + s), s)
    w.flush()
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "dynamics", "import", str(logdir), "--out", str(out),
                             "--follow", "0.3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = out / "exp1"
    try:
        t0 = time.monotonic()
        while not (run / "run.json").exists() or read_meta(run)["status"] != "running":
            assert proc.poll() is None and time.monotonic() - t0 < 60, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.2)
        assert liveness(read_meta(run)) == "running"
        for s in range(3, 7):
            w.add_scalar("layer0/h_sq", 1.0 + s, s)
        w.flush()
        while read_metrics(run)["step"].max() < 6:
            assert time.monotonic() - t0 < 90
            time.sleep(0.2)
    finally:
        w.close()
        proc.send_signal(signal.SIGTERM)
        out_text, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "updated:" in out_text and "complete:" in out_text
    assert read_meta(run)["status"] == "complete"


def test_follow_refuses_a_bad_period_in_one_line(tmp_path, capsys):
    from dynamics.__main__ import main
    src = tmp_path / "log.csv"
    src.touch()
    _csv(src, range(2))
    assert main(["import", str(src), "--out", str(tmp_path / "o"), "--follow", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--follow" in err and not (tmp_path / "o").exists()
