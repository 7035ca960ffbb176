"""Sweeps: grids validated before anything runs, runs published atomically, resume after a kill, failures
reported without stopping the others, and a real Dask cluster (separate scheduler and worker processes on
127.0.0.1) giving the same numbers as the local process pool."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dynamics
from dynamics.runs import store
from dynamics.__main__ import main
from dynamics.cli import default_run_id
from dynamics.config import RunConfig
from dynamics.sweep import (MANIFEST, SweepError, Task, parse_grid, plan_sweep, run_sweep, run_task)

REPO = Path(__file__).resolve().parents[1]
TINY = {"width": 16, "depth": 2, "steps": 3, "train_size": 32, "batch": 8, "probes": 2, "test_size": 8,
        "device": "cpu"}
TINY_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
GRID = "lr=0.1,0.2 seed=0,1"  # 4 points


@pytest.fixture(autouse=True)
def _cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the catalogue's index cache


def _hidden(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if ".tmp-" in p.name]


def _runs(root: Path) -> dict[str, dict]:
    return {m["run_id"]: m for m in store.list_runs(root)}


# --- the grid -----------------------------------------------------------------------------------------
def test_grid_is_parsed_coerced_and_named_deterministically(tmp_path):
    assert parse_grid("depth=4,8 train-size=64 trained=all,hidden+readout") == {
        "depth": ["4", "8"], "train_size": ["64"], "trained": ["all", "hidden+readout"]}
    sweep = plan_sweep(TINY, "lr=0.05,0.1 seed=0,1,2 trained=all,hidden+readout", tmp_path)
    assert len(sweep.tasks) == 12 and sweep.grid["lr"] == [0.05, 0.1]
    t = sweep.tasks[-1]
    cfg = RunConfig.from_dict(t.config)
    assert (cfg.lr, cfg.seed, cfg.trained) == (0.1, 2, ("hidden", "readout"))
    assert t.name == default_run_id(cfg) and t.point == {"lr": 0.1, "seed": 2, "trained": "hidden,readout"}
    assert [x.name for x in plan_sweep(TINY, "lr=0.05,0.1 seed=0,1,2 trained=all,hidden+readout",
                                       tmp_path).tasks] == [x.name for x in sweep.tasks]
    assert len({x.name for x in sweep.tasks}) == 12
    assert not any(tmp_path.iterdir())  # planning writes nothing


@pytest.mark.parametrize("grid,needle", [
    ("dpth=4,8", "unknown field 'dpth' (did you mean depth?)"),
    ("depth=4,eight", "depth='eight' is not an integer"),
    ("lr=0.1,fast", "lr='fast' is not a number"),
    ("depth=4,4", "depth lists a value twice"),
    ("depth=4,", "empty value"),
    ("depth", "must look like FIELD=V1,V2"),
    ("act=relu,swish", "act='swish' is not supported"),
    ("batch=8,64", "grid point batch=64: batch=64 is larger than train_size=32"),
    ("task=file:/nonexistent/x.npz", "/nonexistent/x.npz"),
])
def test_bad_grid_is_one_line_before_anything_runs(tmp_path, capsys, grid, needle):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        keys = {t.split("=")[0] for t in grid.split()}
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k not in keys]
        raise SystemExit(main(["sweep", "--grid", grid, *flags, "--out", str(out)]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and needle in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv,needle", [
    (["--grid", "depth=2,3", "--depth", "4"], "depth given both as a flag and in --grid"),
    (["--grid", "seed=0", "--address", "tcp://127.0.0.1:1"], "--address names a Dask scheduler"),
    (["--grid", "seed=0", "--workers", "0"], "--workers must be at least 1"),
    (["--grid", "seed=0", "--backend", "slurm"], "invalid choice"),
])
def test_bad_sweep_flags_are_one_line(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(["sweep", *argv, "--out", str(tmp_path / "out"), "--quiet"]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


def test_dask_missing_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dask", None)  # import dask -> ImportError
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    assert main(["sweep", "--grid", "seed=0", *TINY_FLAGS, "--backend", "dask", "--out",
                 str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--backend dask needs Dask: pip install -r requirements-dask.txt"), err
    assert not (tmp_path / "out").exists()


# --- the task: train in a hidden tmp dir, publish by rename -----------------------------------------
def _task(out, **over) -> Task:
    cfg = RunConfig.from_dict({**TINY, **over})
    return Task(default_run_id(cfg), cfg.to_dict(), over, str(out))


def test_task_publishes_a_finished_run_by_rename(tmp_path):
    t = _task(tmp_path)
    res = run_task(t)
    assert res["status"] == "complete" and res["error"] is None and res["wall_seconds"] > 0
    assert [p.name for p in tmp_path.iterdir()] == [t.name]
    meta = store.read_meta(tmp_path / t.name)
    assert meta["run_id"] == t.name and meta["config"] == t.config
    assert len(store.read_metrics(tmp_path / t.name, metrics=["loss"])) == TINY["steps"] + 1
    # a second attempt at the same point (a retried task) keeps the finished run
    created = (tmp_path / t.name / store.RUN_JSON).stat().st_mtime_ns
    assert run_task(t)["status"] == "complete"
    assert (tmp_path / t.name / store.RUN_JSON).stat().st_mtime_ns == created and not _hidden(tmp_path)


def test_task_failure_is_reported_and_leaves_nothing(tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(48, 5)), y=np.zeros(48))
    t = _task(tmp_path / "out", task=f"file:{data}")
    (tmp_path / "out").mkdir()
    data.unlink()  # the file vanished between planning and running
    res = run_task(t)
    assert res["status"] == "failed"
    assert res["error"].startswith("DataError: data file") and "\n" not in res["error"]
    assert not any((tmp_path / "out").iterdir())


def test_task_uploads_to_a_filesystem_url(tmp_path):
    out = tmp_path / "remote"
    t = _task(out.as_uri())  # file:///...: the pyarrow.fs path that s3:// also takes
    assert run_task(t)["status"] == "complete"
    assert sorted(p.name for p in (out / t.name).iterdir()) == sorted(
        [store.RUN_JSON, store.METRICS, store.KERNELS, store.NEURONS])
    assert store.read_meta(out / t.name)["status"] == "complete"


def test_finished_sweep_is_skipped_and_leftovers_are_cleaned(tmp_path):
    sweep = plan_sweep(TINY, "seed=0,1", tmp_path)
    for t in sweep.tasks:
        run_task(t)
    stale = tmp_path / f".{sweep.tasks[0].name}.tmp-999999"  # left by a killed worker
    stale.mkdir()
    (stale / store.METRICS).write_bytes(b"PAR1 half")
    m = run_sweep(sweep)  # nothing to do: no pool is started
    assert m["counts"] == {"complete": 2} and not any(e["attempted"] for e in m["runs"])
    assert not _hidden(tmp_path)
    on_disk = json.loads((tmp_path / MANIFEST).read_text())
    assert on_disk["grid"] == {"seed": [0, 1]} and on_disk["base"]["width"] == 16
    assert [e["name"] for e in on_disk["runs"]] == [t.name for t in sweep.tasks]


def test_one_sweep_per_folder(tmp_path):
    import fcntl
    sweep = plan_sweep(TINY, "seed=0", tmp_path)
    with open(tmp_path / ".sweep.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(SweepError, match="another sweep is writing"):
            run_sweep(sweep)


# --- whole sweeps (process pool, Dask cluster, kill and resume) ----------------------------------------
@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    manifest = run_sweep(plan_sweep(TINY, GRID, out), backend="local", workers=2)
    return out, manifest


@pytest.mark.slow
def test_local_sweep(local_sweep):
    out, m = local_sweep
    assert m["counts"] == {"complete": 4} and all(e["attempted"] for e in m["runs"])
    runs = _runs(out)
    assert sorted(runs) == sorted(e["name"] for e in m["runs"]) and not _hidden(out)
    for e in m["runs"]:
        assert e["wall_seconds"] > 0 and runs[e["name"]]["config"]["lr"] == e["point"]["lr"]
    seeds = {(r["config"]["lr"], r["config"]["seed"]) for r in runs.values()}
    assert seeds == {(0.1, 0), (0.1, 1), (0.2, 0), (0.2, 1)}
    cat = dynamics.catalog(out)
    df = cat.metric("loss", steps=[3])
    assert len(df) == 4 and set(cat.varying) == {"lr", "seed"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _listening_hosts(pids: list[int]) -> set[str]:
    import psutil  # comes with dask.distributed
    hosts = set()
    for pid in pids:
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            conns = p.net_connections("inet") if hasattr(p, "net_connections") else p.connections("inet")
            hosts |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
    return hosts


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and `dask worker` as separate processes, bound to 127.0.0.1 only."""
    pytest.importorskip("dask.distributed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_TEMPORARY_DIRECTORY": str(tmp_path)}
    dask = [sys.executable, "-m", "dask"]  # the `dask` command of this interpreter
    # --no-dashboard still serves HTTP routes on 0.0.0.0 unless told where: loopback, any free port
    quiet = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    logs = [open(tmp_path / f"{n}.log", "w") for n in ("scheduler", "worker")]
    procs = []
    try:
        procs.append(subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                       *quiet], env=env, cwd=REPO, stdout=logs[0],
                                      stderr=subprocess.STDOUT, start_new_session=True))
        procs.append(subprocess.Popen([*dask, "worker", address, "--host", "127.0.0.1", "--nworkers", "1",
                                       "--nthreads", "1", "--local-directory", str(tmp_path / "scratch"),
                                       *quiet], env=env, cwd=REPO,
                                      stdout=logs[1], stderr=subprocess.STDOUT, start_new_session=True))
        from dask.distributed import Client
        with Client(address, timeout="60s") as c:
            c.wait_for_workers(1, timeout=60)
        yield address, [p.pid for p in procs]
    finally:
        _stop(procs)
        for f in logs:
            f.close()


@pytest.mark.slow
def test_dask_cluster_matches_local_pool(tmp_path, local_sweep, dask_cluster):
    address, pids = dask_cluster
    out = tmp_path / "dask"
    m = run_sweep(plan_sweep(TINY, GRID, out), backend="dask", address=address)
    assert m["counts"] == {"complete": 4}
    assert _listening_hosts(pids) <= {"127.0.0.1"}
    local_out, local_m = local_sweep
    assert [e["name"] for e in m["runs"]] == [e["name"] for e in local_m["runs"]]
    for e in m["runs"]:
        for read in (store.read_metrics, store.read_kernels, store.read_neurons):
            a, b = read(out / e["name"]), read(local_out / e["name"])
            assert len(a) > 0
            assert a.equals(b), (e["name"], read.__name__)  # bit-identical for identical seeds


@pytest.mark.slow
def test_resume_after_kill_loses_no_run_and_leaves_no_half_file(tmp_path):
    out = tmp_path / "sweep"
    grid = "seed=0,1,2,3"
    longer = [f for f in TINY_FLAGS if not f.startswith("--steps")] + ["--steps=40", "--record-every=5"]
    cmd = [sys.executable, "-m", "dynamics", "sweep", "--grid", grid, *longer, "--workers", "1",
           "--out", str(out), "--quiet"]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not _runs(out) if out.exists() else True:
            assert p.poll() is None, p.stdout.read().decode()
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.05)
    finally:
        os.killpg(p.pid, signal.SIGKILL)  # the driver and its workers, mid-sweep
        p.wait()
    before = _runs(out)
    assert 1 <= len(before) < 4, "kill came too late to test resume"
    for name, meta in before.items():  # whatever carries a final name is whole
        assert meta["status"] == "complete"
        for read in (store.read_metrics, store.read_kernels, store.read_neurons):
            assert len(read(out / name)) > 0
    created = {name: meta["created"] for name, meta in before.items()}

    m = run_sweep(plan_sweep({k: v for k, v in TINY.items()} | {"steps": 40, "record_every": 5}, grid, out),
                  workers=1)
    assert m["counts"] == {"complete": 4}
    after = _runs(out)
    assert len(after) == 4 and all(a["status"] == "complete" for a in after.values())
    assert {n: after[n]["created"] for n in created} == created  # finished runs were not redone
    assert {e["name"] for e in m["runs"] if not e["attempted"]} == set(created)
    assert not _hidden(out)


@pytest.mark.slow
def test_failing_point_is_reported_and_others_complete(tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(48, 5)), y=np.zeros(48))
    out = tmp_path / "out"
    sweep = plan_sweep(TINY, f"task=teacher,file:{data} seed=0,1", out)  # validated with the file present
    data.unlink()  # ... which then disappears: those points fail at run time
    m = run_sweep(sweep, workers=2)
    assert m["counts"] == {"complete": 2, "failed": 2}
    for e in m["runs"]:
        if e["point"]["task"] == "teacher":
            assert e["status"] == "complete" and e["error"] is None
        else:
            assert e["status"] == "failed" and e["error"].startswith("DataError: data file")
    assert len(_runs(out)) == 2 and not _hidden(out)
    assert json.loads((out / MANIFEST).read_text())["counts"] == {"complete": 2, "failed": 2}


@pytest.mark.slow
def test_a_dead_worker_breaks_no_run(tmp_path):
    """SIGKILL one pool worker mid-sweep (as the OOM killer would): its runs go to a fresh pool."""
    psutil = pytest.importorskip("psutil")
    killed = []

    def kill_a_worker(res):
        if not killed:
            # spawn: the driver's children; forkserver: the server's children (forks share its cmdline)
            kids = psutil.Process().children()
            servers = [p for p in kids if "forkserver" in " ".join(p.cmdline())]
            workers = [w for s in servers for w in s.children()] + \
                      [p for p in kids if "spawn_main" in " ".join(p.cmdline())]
            assert workers, "no pool worker found"
            workers[0].kill()
            killed.append(workers[0].pid)

    m = run_sweep(plan_sweep(TINY, "seed=0,1,2", tmp_path), workers=1, on_result=kill_a_worker)
    assert killed and m["counts"] == {"complete": 3}
    assert len(_runs(tmp_path)) == 3 and not _hidden(tmp_path)


@pytest.mark.slow
def test_dask_local_cluster_when_no_address(tmp_path, local_sweep):
    pytest.importorskip("dask.distributed")
    m = run_sweep(plan_sweep(TINY, GRID, tmp_path), backend="dask", workers=2)
    assert m["counts"] == {"complete": 4}
    local_out, _ = local_sweep
    for e in m["runs"]:
        assert store.read_metrics(tmp_path / e["name"]).equals(store.read_metrics(local_out / e["name"]))


def test_planning_a_synthetic_sweep_leaves_torch_to_the_workers(tmp_path):
    """The driver stays light (the forkserver imports torch once, beside it); a data file is still checked."""
    repo = Path(__file__).resolve().parents[1]
    code = (f"import sys; sys.path.insert(0, {str(repo)!r}); from dynamics.sweep import plan_sweep; "
            f"plan_sweep({TINY!r}, 'task=teacher,mixture depth=2,4', {str(tmp_path)!r}); "
            "assert 'torch' not in sys.modules, 'planning imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with pytest.raises(Exception, match="data file"):
        plan_sweep(TINY, f"task=file:{tmp_path / 'missing.npz'}", tmp_path / "out")
