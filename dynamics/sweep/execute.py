"""Sweep execution: where a run goes, the task every backend runs, and the two backends (dynamics.sweep).

`run_task(task)` trains one grid point into a hidden tmp dir and publishes it under its final name (a
rename for a local folder; an upload with run.json last for a pyarrow.fs URL); it never raises for a
failing run. `_local` runs tasks on a forkserver (or spawn) process pool, `_dask` on a Dask cluster; both
yield (task, result) as runs finish, and the driver in plan.py turns those into the manifest and the bar.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..runs import store
from ..config import ConfigError, RunConfig, usable_cores

MANIFEST = "sweep.json"
DONE = ("complete", "diverged")   # a finished run: kept and skipped on resume (divergence is a result)


class SweepError(ConfigError):
    """A sweep cannot start (bad grid, unusable backend or output); the message says how to fix it."""


@dataclass(frozen=True)
class Task:
    """One grid point: what a worker needs (picklable, no open handles)."""
    name: str                  # run directory name: cli.default_run_id(config)
    config: dict[str, Any]     # RunConfig.to_dict()
    point: dict[str, Any]      # this point's grid values
    out: str                   # sweep output: a local path or a pyarrow.fs URL


# --- where runs go: a local folder (tmp dir + rename) or a pyarrow.fs URL (upload, run.json last) -------
class _Dest:
    def __init__(self, out: str):
        self.out = out
        self.is_url = "://" in out
        self._fs, self._path = None, ""

    def fs(self):
        if self._fs is None:
            from pyarrow import fs as pafs
            try:
                self._fs, path = pafs.FileSystem.from_uri(self.out)
            except Exception as e:  # pyarrow raises ArrowInvalid/OSError for unknown schemes or credentials
                raise SweepError(f"cannot open --out {self.out}: {_one_line(e)}") from None
            self._path = path.rstrip("/")
        return self._fs

    def url_path(self, *parts: str) -> str:
        self.fs()
        return "/".join((self._path, *parts))

    def prepare(self) -> None:
        if self.is_url:
            self.fs().create_dir(self.url_path(), recursive=True)
        else:
            store.check_writable(Path(self.out))

    def status(self, name: str) -> str | None:
        """run.json's status, None when there is none, 'unreadable' when it is damaged."""
        try:
            if self.is_url:
                with self.fs().open_input_stream(self.url_path(name, store.RUN_JSON)) as f:
                    return json.loads(f.read())["status"]
            return store.read_meta(Path(self.out) / name)["status"]
        except (FileNotFoundError, store.RunFormatError):
            return None if not self._exists(name) else "unreadable"
        except (OSError, ValueError, KeyError, TypeError):
            return "unreadable"

    def _exists(self, name: str) -> bool:
        if self.is_url:
            from pyarrow import fs as pafs
            return self.fs().get_file_info(self.url_path(name)).type != pafs.FileType.NotFound
        return (Path(self.out) / name).exists()

    def clean(self, names: Sequence[str]) -> None:
        """Remove leftovers of killed sweeps: hidden tmp dirs/files, and unfinished runs named in `names`."""
        if self.is_url:
            for name in names:
                if self._exists(name):
                    self.fs().delete_dir(self.url_path(name))
            return
        root = Path(self.out)
        for p in root.glob(".*.tmp-*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        for name in names:
            if (root / name).is_dir():
                shutil.rmtree(root / name)

    def write_manifest(self, obj: dict) -> None:
        if not self.is_url:
            store.write_json_atomic(Path(self.out) / MANIFEST, obj)
            return
        tmp = self.url_path(f".{MANIFEST}.tmp-{os.getpid()}")
        with self.fs().open_output_stream(tmp) as f:
            f.write(json.dumps(obj, indent=2, default=str).encode())
        self.fs().move(tmp, self.url_path(MANIFEST))

    # worker side
    def workdir(self, name: str) -> Path:
        if self.is_url:
            return Path(tempfile.mkdtemp(prefix="dynamics-sweep-")) / name
        return Path(self.out) / f".{name}.tmp-{os.getpid()}"

    def commit(self, work: Path, name: str) -> None:
        """Publish a finished run under its final name."""
        if self.is_url:
            from pyarrow import fs as pafs
            local, dest = pafs.LocalFileSystem(), self.url_path(name)
            self.fs().create_dir(dest, recursive=True)
            files = sorted(p.name for p in work.iterdir() if not p.name.startswith("."))
            for f in sorted(files, key=lambda f: f == store.RUN_JSON):  # run.json last: the commit mark
                pafs.copy_files(str(work / f), f"{dest}/{f}", source_filesystem=local,
                                destination_filesystem=self.fs())
            shutil.rmtree(work.parent, ignore_errors=True)
            return
        final = Path(self.out) / name
        try:
            os.rename(work, final)  # atomic; fails when `final` exists
        except OSError:
            if self.status(name) in DONE:  # an earlier attempt finished first: keep it
                shutil.rmtree(work, ignore_errors=True)
                return
            shutil.rmtree(final, ignore_errors=True)
            os.rename(work, final)

    def discard(self, work: Path) -> None:
        shutil.rmtree(work.parent if self.is_url else work, ignore_errors=True)


# --- the task: the one function both backends run ---------------------------------------------------
_WORKER_INDEX = 0  # set per local worker process by _init_local_worker


def run_task(task: Task) -> dict[str, Any]:
    """Train one grid point and publish it; never raises for a failing run (returns status 'failed')."""
    import socket
    t0, dest, work = time.monotonic(), _Dest(task.out), None
    status, error = "failed", None
    try:
        cfg = _place(RunConfig.from_dict(task.config))
        from ..train import train
        work = dest.workdir(task.name)
        train(cfg, work, run_id=task.name, overlap=False)  # workers share the cores, each pinned to its share
        status = store.read_meta(work)["status"]
        dest.commit(work, task.name)
        work = None
    except Exception as e:  # a failing point is reported, never stops the others
        error = _one_line(e)
        status = "failed"
    finally:
        if work is not None:
            dest.discard(work)
    return {"name": task.name, "status": status, "error": error,
            "wall_seconds": round(time.monotonic() - t0, 3), "host": socket.gethostname()}


def _place(cfg: RunConfig) -> RunConfig:
    """Local pool with several GPUs: device auto -> cuda:(worker index mod GPUs), one GPU per worker."""
    if cfg.device != "auto":
        return cfg
    import torch
    n = torch.cuda.device_count()
    if n > 1:
        from dataclasses import replace
        return replace(cfg, device=f"cuda:{_WORKER_INDEX % n}")
    return cfg


def _one_line(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


# --- backends: each yields results as runs finish --------------------------------------------------------
_cores = usable_cores


def _init_local_worker(counter, threads: int) -> None:
    import signal
    import threading
    import torch
    global _WORKER_INDEX
    with counter.get_lock():
        _WORKER_INDEX, counter.value = counter.value, counter.value + 1
    torch.set_num_threads(threads)
    import pyarrow
    pyarrow.set_cpu_count(threads)  # Parquet encoding threads: the workers share the cores, as torch's do
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the driver, which stops the pool
    ppid = os.getppid()

    def watch():  # a driver killed with SIGKILL cannot stop its pool: exit when orphaned
        while os.getppid() == ppid:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _local(tasks: list[Task], workers: int) -> Iterator[tuple[Task, dict]]:
    """A process pool (see _context). A worker that dies (killed, out of memory, a crash in native code)
    breaks the pool and every task in it: those are rerun once in a fresh pool, and fail if they break a pool
    again."""
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool
    broke = {t.name: 0 for t in tasks}
    pending = list(tasks)
    while pending:
        pool, retry, ok = _pool(workers), [], False
        try:
            futures = {pool.submit(run_task, t): t for t in pending}
            for fut in as_completed(futures):
                t = futures[fut]
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    broke[t.name] += 1
                    if broke[t.name] < 2:
                        retry.append(t)
                        continue
                    res = _lost(t, "a worker process died twice while this run was queued or running "
                                   "(killed, out of memory, or a crash)")
                yield t, res
            ok = True
        finally:
            if not ok:  # interrupted: stop running runs now (their tmp dirs are cleaned by the next sweep)
                # (ProcessPoolExecutor has no public terminate before Python 3.14)
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.terminate()
            pool.shutdown(wait=ok, cancel_futures=True)
        for t in retry:  # a dead worker could not remove its tmp dir: clear it before the rerun
            if "://" not in t.out:
                for p in Path(t.out).glob(f".{t.name}.tmp-*"):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        pending = retry


def _context():
    """Where it exists (Linux, macOS) a forkserver that imports torch and the trainer once: each worker is a
    fork of it and starts in milliseconds instead of paying a ~3 s import. The server itself never runs
    torch (no threads, no CUDA), so forking it is safe. Elsewhere (Windows) a spawn pool."""
    import multiprocessing as mp
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["dynamics.train"])
    return ctx


def warm_local_pool() -> None:
    """Start the forkserver (and its import of torch) now, so that it overlaps the driver's own work."""
    ctx = _context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver
        forkserver.ensure_running()


def _pool(workers: int):
    from concurrent.futures import ProcessPoolExecutor
    ctx = _context()
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_local_worker,
                               initargs=(ctx.Value("i", 0), max(1, _cores() // workers)))


class _Cluster:
    """A Dask client, and the LocalCluster it owns when no --address was given."""

    def __init__(self, client, local=None):
        self.client, self.local = client, local

    def close(self) -> None:
        self.client.close()
        if self.local is not None:
            self.local.close()


def _connect(workers: int | None, address: str | None) -> _Cluster:
    from dask.distributed import Client, LocalCluster  # checked by _require_dask
    if not address:  # processes bound to loopback, no dashboard: nothing listens beyond this machine
        local = LocalCluster(n_workers=workers or _cores(), threads_per_worker=1, processes=True,
                             host="127.0.0.1", dashboard_address=None)
        return _Cluster(Client(local), local)
    try:
        return _Cluster(Client(address, timeout="20s"))
    except (OSError, TimeoutError) as e:
        raise SweepError(f"could not reach the Dask scheduler at {address}: {_one_line(e)}") from None


def _dask(tasks: list[Task], cluster: _Cluster, on_slots: Callable[[int], None]) -> Iterator[tuple[Task, dict]]:
    from dask.distributed import as_completed
    client, futures = cluster.client, []
    try:
        on_slots(max(1, sum(client.nthreads().values())))
        # keys name the run (readable in Dask's dashboard) and this driver (two sweeps never share a key)
        futures = client.map(run_task, tasks, key=[f"dynamics-{t.name}-{os.getpid()}" for t in tasks],
                             pure=False)
        by_key = {f.key: t for f, t in zip(futures, tasks)}
        for fut in as_completed(futures):
            yield by_key[fut.key], _result_of(by_key[fut.key], fut.result)
    finally:
        client.cancel(futures)


def _require_dask() -> None:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise SweepError("--backend dask needs Dask: pip install -r requirements-dask.txt") from None


def _result_of(task: Task, get: Callable[[], dict]) -> dict:
    try:
        return get()
    except Exception as e:  # Dask gave up on it (KilledWorker: workers died running it 3 times)
        return _lost(task, _one_line(e))


def _lost(task: Task, why: str) -> dict:
    return {"name": task.name, "status": "failed", "error": f"worker lost: {why}", "wall_seconds": None}
