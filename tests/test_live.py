"""Live runs: the writer flushes right after the first record and keeps a heartbeat in run.json; a training killed
early keeps its flushed steps and shows as `stale`, not `running` (dynamics.runs.store.liveness)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from dynamics.runs import store
from dynamics.runs.store import METRICS, RunWriter, liveness, read_meta, read_metrics

REPO = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_first_rows_are_flushed_at_once_with_a_heartbeat(tmp_path):
    w = RunWriter(tmp_path / "r", {"run_id": "r", "kind": "finite", "config": {}}, flush_seconds=3600)
    hb = read_meta(tmp_path / "r")["heartbeat"]
    assert hb["host"] == socket.gethostname() and hb["pid"] == os.getpid() and hb["every_seconds"] == 3600
    w.add_metrics(0, -1, "loss", 1.0)
    w.maybe_flush()  # the first record: written now, not after flush_seconds
    assert len(read_metrics(tmp_path / "r")) == 1
    for step in range(1, 10):
        w.add_metrics(step, -1, "loss", 1.0)
        w.maybe_flush()
    assert len(read_metrics(tmp_path / "r")) == 1  # throttled: 9 new records, fewer than flush_records
    time.sleep(10 * w._flush_cost + 0.01)  # past the overhead guard (10 × the last flush's cost)
    w.add_metrics(10, -1, "loss", 1.0)
    w.maybe_flush()
    assert len(read_metrics(tmp_path / "r")) == 11  # the 10th pending record flushes
    assert liveness(read_meta(tmp_path / "r")) == "running"  # this very process


def test_liveness_rules():
    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    base = {"status": "running", "heartbeat": {"host": "elsewhere", "pid": 1, "every_seconds": 30.0}}

    def at(age: float, **kw) -> str:
        hb = {**base["heartbeat"], "updated": (now - timedelta(seconds=age)).isoformat(timespec="seconds"), **kw}
        return liveness({**base, "heartbeat": hb}, now=now)
    assert at(60) == "running" and at(119) == "running" and at(121) == "stale"  # 3 periods, at least 120 s
    assert at(400, every_seconds=300.0) == "running" and at(901, every_seconds=300.0) == "stale"
    here = socket.gethostname()
    assert at(10, host=here, pid=_dead_pid()) == "stale"  # the process is gone on this host
    assert at(10_000, host=here, pid=os.getpid()) == "running"  # alive here, however long since the last record
    assert liveness({"status": "running"}) == "running"  # no heartbeat (older runs): cannot tell
    assert liveness({**base, "status": "complete"}) == "complete"


@pytest.mark.slow
def test_a_training_killed_early_keeps_its_steps_and_shows_stale(tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "dynamics", "train", "--width", "64", "--depth", "4", "--steps", "1000000",
           "--record-every", "1", "--probes", "2", "--out", str(out), "--name", "killed", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "killed" / METRICS).exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no flush within 120 s"
            time.sleep(0.05)
        meta = read_meta(out / "killed")
        assert meta["status"] == "running" and liveness(meta) == "running"  # alive: not stale
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    meta = read_meta(out / "killed")
    df = read_metrics(out / "killed")
    assert 0 in set(df.step) and {"h_sq", "g_sq", "loss"} <= set(df.metric)
    assert meta["status"] == "running" and liveness(meta) == "stale"
    from dashboard.runs import Run, run_table
    row = run_table([Run("killed", "user", str(out / "killed"), meta)]).iloc[0]
    assert row["status"] == "stale"
    assert json.loads((out / "killed" / "run.json").read_text())["heartbeat"]["pid"] == proc.pid
    assert store.STALE_PERIODS >= 2


@pytest.mark.slow
def test_runs_page_shows_a_stopped_run_as_stale(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    from conftest import write_synthetic_runs
    names = write_synthetic_runs(tmp_path)
    meta_path = tmp_path / names[0] / "run.json"
    meta = json.loads(meta_path.read_text())
    meta.update(status="running", heartbeat={"host": socket.gethostname(), "pid": _dead_pid(),
                                             "updated": "2026-01-01T00:00:00+00:00", "every_seconds": 30.0})
    meta_path.write_text(json.dumps(meta))
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    at.switch_page("pages/1_Runs.py")
    at.run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("run_id")
    assert table.loc[names[0], "status"] == "stale" and table.loc[names[1], "status"] == "complete"
    assert any("**stale**" in c.value for c in at.caption)


def test_steps_past_int32_widen_the_step_column(tmp_path):
    w = RunWriter(tmp_path / "tok", {"run_id": "tok", "kind": "imported", "config": {}})
    w.add_metrics(np.array([0, 2 ** 31, 3 * 2 ** 33]), -1, "loss", np.array([1.0, 0.5, 0.25]))
    w.finish("complete")
    df = read_metrics(tmp_path / "tok")
    assert str(df.step.dtype) == "int64" and df.step.tolist() == [0, 2 ** 31, 3 * 2 ** 33]
