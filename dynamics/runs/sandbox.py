"""One import at a time, in a child process with memory, CPU and wall-clock limits.

`import_bounded(FILE, OUT, ...)` runs dynamics.runs.imports.import_file in `python -m dynamics.runs.sandbox`,
a fresh interpreter whose address space is capped (RLIMIT_AS: what the loaded interpreter already maps, about
350 MB of mostly shared libraries, plus Bounds.memory_mb for the import's work) and whose CPU time is capped
(RLIMIT_CPU), and kills it after Bounds.seconds of wall-clock time. The Limits of import_bounds reject most
oversized files from their metadata before anything is decoded; the child is for what metadata cannot bound
(a CSV whose cells decode to many Python objects, dictionary pages that expand, a slow parse): such a file
costs the child's bounded slice and ends in a one-line RunImportError, never in the server's memory. Imports
in one process queue on a lock (one child at a time); a killed child's half-written `.import-*` folder is
removed. The child's threads are pinned to one (BLAS, Arrow), so an import takes one core.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .import_bounds import Limits
from .import_checks import RunImportError, fail

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


@dataclass
class Outcome:
    """What the child wrote: the run folder and its run.json (the same as dynamics.runs.imports.Imported)."""
    run_dir: Path
    meta: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        return self.meta["summary"]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return self.meta["skipped"]


def import_bounded(path: str | Path, out: str | Path, *, name: str | None = None, config: Any = None,
                   source_name: str | None = None, limits: Limits = Limits(), bounds: Bounds = Bounds()) -> Outcome:
    """import_file(path, out, …) in a bounded child process; raises RunImportError (one line) on a rejected
    file, on a child that ran out of memory or time (it is killed), or when the import slot stays busy."""
    if not _SLOT.acquire(timeout=bounds.wait_seconds):
        raise fail("the server is busy importing other uploads; try again in a minute")
    try:
        return _run(path, out, name, config, source_name, limits, bounds)
    finally:
        _SLOT.release()


def _run(path, out, name, config, source_name, limits: Limits, bounds: Bounds) -> Outcome:
    out = Path(out)
    before = set(_partial(out))
    job = {"path": str(path), "out": str(out), "name": name, "source_name": source_name, "limits": asdict(limits),
           "config": str(config) if isinstance(config, Path) else config, "memory_mb": bounds.memory_mb,
           "seconds": bounds.seconds}
    env = {**os.environ, **_THREADS, "PYTHONPATH": os.pathsep.join(
        [str(_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-m", "dynamics.runs.sandbox"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(_ROOT))
    t0 = time.monotonic()
    try:
        stdout, stderr = proc.communicate(json.dumps(job).encode(), timeout=bounds.seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        _clean(out, before)
        raise fail(f"the import was stopped after {bounds.seconds:g} s (the limit of one import); "
                   "upload a smaller file") from None
    try:
        reply = json.loads(stdout.decode() or "null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        reply = None
    if isinstance(reply, dict) and reply.get("ok"):
        return Outcome(Path(reply["run_dir"]), reply["meta"])
    _clean(out, before)
    if isinstance(reply, dict) and reply.get("error"):
        raise RunImportError(reply["error"])
    code = proc.returncode
    if code in (-signal.SIGXCPU, -signal.SIGKILL) and time.monotonic() - t0 >= bounds.seconds * 0.9:
        raise fail(f"the import was stopped after {bounds.seconds:g} s of CPU time; upload a smaller file")
    if code < 0 or any(m in stderr for m in (b"MemoryError", b"bad_alloc", b"Cannot allocate memory")):
        raise fail(f"the import needed more than {bounds.memory_mb} MB of memory and was stopped; upload a "
                   "smaller file (fewer rows, steps or columns)")
    last = (stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
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


def _child() -> int:
    """The child: read the job (JSON on stdin), cap memory and CPU, import, answer JSON on stdout."""
    import resource

    import pyarrow as pa

    from .imports import import_file
    job = json.loads(sys.stdin.buffer.read())
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    # the cap is on the import's own work: the address space the loaded interpreter already has, plus memory_mb
    cap = _vm_bytes() + int(job["memory_mb"]) * 2 ** 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    cpu = int(job["seconds"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    try:
        res = import_file(job["path"], job["out"], name=job["name"], config=job["config"],
                          source_name=job["source_name"], limits=Limits(**job["limits"]))
        reply = {"ok": True, "run_dir": str(res.run_dir), "meta": res.meta}
    except RunImportError as e:
        reply = {"ok": False, "error": str(e)}
    except MemoryError:
        reply = {"ok": False, "error": f"the import needed more than {job['memory_mb']} MB of memory and was "
                                       "stopped; upload a smaller file (fewer rows, steps or columns)"}
    sys.stdout.write(json.dumps(reply, default=str))
    sys.stdout.flush()
    return 0


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
    sys.exit(_child())
