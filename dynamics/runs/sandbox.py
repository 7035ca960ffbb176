"""One import at a time, in a child process with memory, CPU and wall-clock limits.

`import_bounded(FILE, OUT, ...)` runs dynamics.runs.imports.import_file in a child process forked from a warm
"zygote" (`python -m dynamics.runs.sandbox`, started once, with the importers loaded, so an upload pays no
interpreter start). The child's address space is capped (RLIMIT_AS: what the loaded interpreter already maps,
about 350 MB of mostly shared libraries, plus Bounds.memory_mb for the import's work), so is its CPU time
(RLIMIT_CPU), and the zygote kills it after Bounds.seconds of wall-clock time. The Limits of import_bounds reject most
oversized files from their metadata before anything is decoded; the child is for what metadata cannot bound
(a CSV whose cells decode to many Python objects, dictionary pages that expand, a slow parse): such a file
costs the child's bounded slice and ends in a one-line RunImportError, never in the server's memory. Imports
in one process queue on a lock (one child at a time); a killed child's half-written `.import-*` folder is
removed. The child's threads are pinned to one (BLAS, Arrow), so an import takes one core.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .import_bounds import Limits
from .import_checks import RunImportError, fail
from .imports import Imported

__all__ = ["Bounds", "import_bounded"]
_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the dynamics package
_SLOT = threading.Lock()
_THREADS = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}


@dataclass(frozen=True)
class Bounds:
    """memory_mb: the child's address-space cap; seconds: its wall-clock (and CPU) limit; wait_seconds: how
    long an import waits for the one import slot before it is refused as "busy"."""
    memory_mb: int = 4096
    seconds: float = 600.0
    wait_seconds: float = 600.0

    @classmethod
    def hosted(cls) -> "Bounds":
        return cls(memory_mb=768, seconds=60.0, wait_seconds=60.0)


def import_bounded(path: str | Path, out: str | Path, *, name: str | None = None, config: Any = None,
                   source_name: str | None = None, limits: Limits = Limits(), bounds: Bounds = Bounds()) -> Imported:
    """import_file(path, out, …) in a bounded child process; raises RunImportError (one line) on a rejected
    file, on a child that ran out of memory or time (it is killed), or when the import slot stays busy."""
    if not _SLOT.acquire(timeout=bounds.wait_seconds):
        raise fail("the server is busy importing other uploads; try again in a minute")
    try:
        return _run(path, out, name, config, source_name, limits, bounds)
    finally:
        _SLOT.release()


def _run(path, out, name, config, source_name, limits: Limits, bounds: Bounds) -> Imported:
    out = Path(out)
    before = set(_partial(out))
    job = {"path": str(path), "out": str(out), "name": name, "source_name": source_name, "limits": asdict(limits),
           "config": str(config) if isinstance(config, Path) else config, "memory_mb": bounds.memory_mb,
           "seconds": bounds.seconds}
    res = _ZYGOTE.run(job, bounds.seconds + 30)
    reply, code, stderr = res.get("reply"), res.get("code", 1), res.get("stderr", "")
    if isinstance(reply, dict) and reply.get("ok"):  # a tracker's other runs and its runs not imported too
        return Imported(Path(reply["run_dir"]), reply["meta"],
                        [Imported(Path(d), m) for d, m in reply.get("others", [])], reply.get("failed", []))
    _clean(out, before)
    if res.get("timed_out"):
        raise fail(f"the import was stopped after {bounds.seconds:g} s (the limit of one import); "
                   "upload a smaller file")
    if isinstance(reply, dict) and reply.get("error"):
        raise RunImportError(reply["error"])
    if code == -signal.SIGXCPU:
        raise fail(f"the import was stopped after {bounds.seconds:g} s of CPU time; upload a smaller file")
    if code < 0 or any(m in stderr for m in ("MemoryError", "bad_alloc", "Cannot allocate memory")):
        raise fail(f"the import needed more than {bounds.memory_mb} MB of memory and was stopped; upload a "
                   "smaller file (fewer rows, steps or columns)")
    last = (stderr.strip().splitlines() or ["no message"])[-1]
    raise fail(f"the import failed (exit {code}): {last[:200]}")


def _partial(out: Path) -> list[Path]:
    try:
        return [p for p in out.iterdir() if p.name.startswith(".import-")]
    except OSError:
        return []


def _clean(out: Path, before: set[Path]) -> None:
    """Remove the `.import-*` folders a failed or killed child left under `out`."""
    for p in _partial(out):
        if p not in before:
            shutil.rmtree(p, ignore_errors=True)


# --- the parent's side: one warm zygote process, restarted when it dies ----------------------------------
class _Zygote:
    """`python -m dynamics.runs.sandbox`: a process with the importers already loaded that forks one child
    per job (so an upload does not pay an interpreter start and the pandas import). Jobs go one JSON line in,
    one JSON line out; the lock of import_bounded keeps them one at a time."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, **_THREADS, "PYTHONPATH": os.pathsep.join(
            [str(_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        return subprocess.Popen([sys.executable, "-m", "dynamics.runs.sandbox"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=str(_ROOT))

    def run(self, job: dict, timeout: float) -> dict:
        """Send one job, wait up to `timeout` s for its answer. A zygote that died between jobs is restarted
        (once); one that does not answer in time is killed and the job reported as timed out."""
        for _ in range(2):
            if self.proc is None or self.proc.poll() is not None:
                self.proc = self._start()
            try:
                self.proc.stdin.write((json.dumps(job) + "\n").encode())
                self.proc.stdin.flush()
            except OSError:  # it died between jobs
                self.stop()
                continue
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            line = self.proc.stdout.readline() if ready else b""
            if line:
                return json.loads(line)
            self.stop()
            if not ready:
                return {"code": -signal.SIGKILL, "timed_out": True}
        return {"code": 1, "stderr": "the import process did not answer"}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


_ZYGOTE = _Zygote()


# --- the zygote's side ---------------------------------------------------------------------------------
def _zygote() -> int:
    """Read jobs (JSON lines on stdin); for each, fork a child that caps its memory and CPU and imports; kill it
    past its wall-clock limit; answer {"reply", "code", "timed_out", "stderr", "peak_mb"} on stdout."""
    from . import imports  # noqa: F401 (loaded once here, shared by every forked child)
    for raw in sys.stdin:
        job = json.loads(raw)
        with tempfile.TemporaryDirectory(prefix="dynamics-sandbox-") as tmp:
            reply_path, err_path = Path(tmp) / "reply.json", Path(tmp) / "stderr.txt"
            pid = os.fork()
            if pid == 0:
                _child(job, reply_path, err_path)  # never returns
            deadline, timed_out = time.monotonic() + float(job["seconds"]), False
            while True:
                done, status, usage = os.wait4(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    _, status, usage = os.wait4(pid, 0)
                    timed_out = True
                    break
                time.sleep(0.01)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            try:
                reply = json.loads(reply_path.read_text())
            except (OSError, ValueError):
                reply = None
            err = err_path.read_text(errors="replace")[-2000:] if err_path.exists() else ""
        sys.stdout.write(json.dumps({"reply": reply, "code": code, "timed_out": timed_out, "stderr": err,
                                     "peak_mb": usage.ru_maxrss / 1024}, default=str) + "\n")
        sys.stdout.flush()
    return 0


def _child(job: dict, reply_path: Path, err_path: Path) -> None:
    """The forked child: stderr to a file, memory and CPU capped, the import, the reply in a file; exits."""
    code = 1
    try:
        fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)  # the zygote's stdout is its answer channel: nothing else may write there
        os.dup2(fd, 2)
        import resource

        import pyarrow as pa

        from .imports import import_file
        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)
        # the cap is on the import's own work: what the loaded interpreter already maps, plus memory_mb
        cap = _vm_bytes() + int(job["memory_mb"]) * 2 ** 20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        cpu = int(job["seconds"]) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        try:
            res = import_file(job["path"], job["out"], name=job["name"], config=job["config"],
                              source_name=job["source_name"], limits=Limits(**job["limits"]))
            reply = {"ok": True, "run_dir": str(res.run_dir), "meta": res.meta, "failed": res.failed,
                     "others": [[str(r.run_dir), r.meta] for r in res.others]}
        except RunImportError as e:
            reply = {"ok": False, "error": str(e)}
        except MemoryError:
            reply = {"ok": False, "error": f"the import needed more than {job['memory_mb']} MB of memory and "
                                           "was stopped; upload a smaller file (fewer rows, steps or columns)"}
        reply_path.write_text(json.dumps(reply, default=str))
        code = 0
    except BaseException:  # noqa: BLE001 (reported through stderr and the exit code)
        import traceback
        traceback.print_exc()
    finally:
        os._exit(code)


def _vm_bytes() -> int:
    """This process's current address-space size (VmSize), 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(_zygote())
