"""Sweeps: a grid of RunConfigs trained as ordinary run directories, on a local process pool or a Dask cluster.

    python -m dynamics sweep --grid 'depth=4,8 width=128,256 seed=0,1' --steps 100 --out runs/sweep1
    from dynamics.sweep import plan_sweep, run_sweep
    manifest = run_sweep(plan_sweep({"steps": 100}, {"depth": [4, 8], "seed": [0, 1]}, "runs/sweep1"))

A grid point's run directory is named by `cli.default_run_id` of its config, so the same grid always maps to
the same names. A run trains into a hidden sibling `.<name>.tmp-<pid>` and is renamed to `<name>` when it
ends (complete or diverged), so a killed sweep never leaves half a run under a final name; the next sweep
deletes leftover tmp dirs, skips finished runs and retries the rest (resume). `OUT/sweep.json`, rewritten
atomically by the driver, records the grid, the base config and every run's status, error and wall time.
An `OUT` given as a URL (s3://..., file://...) goes through pyarrow.fs: each run trains in a local temp
dir and is uploaded with run.json last, so a run without run.json is an unfinished upload. Workers only
ever write their own run's files; the driver alone writes the manifest. This module holds the grid, the
driver (manifest, resume, progress) and the CLI; execute.py the task and the two backends.
"""
from __future__ import annotations

import argparse
import difflib
import itertools
import sys
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..runs import store
from ..cli import add_config_flags, default_run_id
from ..config import ConfigError, RunConfig, parse_batch, parse_trained
from .execute import (DONE, MANIFEST, SweepError, Task, _connect, _cores, _dask, _Dest, _local,
                         _require_dask, run_task, warm_local_pool)

__all__ = ["SweepError", "Task", "Sweep", "parse_grid", "plan_sweep", "run_sweep", "run_task", "register"]

_LOCK = ".sweep.lock"


@dataclass
class Sweep:
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    out: str
    tasks: list[Task] = field(default_factory=list)


# --- the grid -----------------------------------------------------------------------------------------
_FIELDS = {f.name: f for f in fields(RunConfig)}
_DEFAULTS = RunConfig()


def parse_grid(text: str) -> dict[str, list[str]]:
    """'depth=4,8 width=128,256' -> {'depth': ['4', '8'], 'width': ['128', '256']} (values still text).

    Fields may be spelled with dashes (train-size); a `trained` value joins groups with '+' (input+hidden).
    """
    grid: dict[str, list[str]] = {}
    for token in text.split():
        key, eq, values = token.partition("=")
        if not eq or not key or not values:
            raise SweepError(f"grid: {token!r} must look like FIELD=V1,V2,... (e.g. depth=4,8,16)")
        key = key.replace("-", "_")
        if key in grid:
            raise SweepError(f"grid: field {key} is given twice; list all its values once")
        grid[key] = values.split(",")
    if not grid:
        raise SweepError("grid is empty; give FIELD=V1,V2,... pairs, e.g. --grid 'depth=4,8 seed=0,1'")
    return grid


def _coerce(key: str, value: Any) -> Any:
    """Text from the command line -> the field's type (non-text values pass through to validation)."""
    if key not in _FIELDS:
        near = difflib.get_close_matches(key, _FIELDS, n=1)
        hint = f" (did you mean {near[0]}?)" if near else f"; known fields: {', '.join(_FIELDS)}"
        raise SweepError(f"grid: unknown field {key!r}{hint}")
    if not isinstance(value, str):
        return value
    if value == "":
        raise SweepError(f"grid: {key} has an empty value; remove the stray comma")
    if key == "trained":
        return parse_trained(value.replace("+", ","))
    if key == "batch":
        return parse_batch(value)
    kind = type(getattr(_DEFAULTS, key))
    try:
        return kind(value) if kind in (int, float) else value
    except ValueError:
        raise SweepError(f"grid: {key}={value!r} is not {'an integer' if kind is int else 'a number'}") from None


def _check_data(configs: Sequence[RunConfig]) -> None:
    """Load each distinct dataset once, as `train` does, so a missing file stops the sweep before it starts.
    Synthetic tasks with the mse loss read nothing and cannot fail: they are skipped, so that planning a
    synthetic sweep does not import torch (≈2 s) in the driver."""
    keys = ("task", "data_dir", "input_dim", "classes", "train_size", "test_size", "data_seed", "loss")
    seen: dict[tuple, RunConfig] = {}
    for c in configs:
        if not (c.task in ("teacher", "mixture") and c.loss == "mse"):
            seen.setdefault(tuple(getattr(c, k) for k in keys), c)
    if seen:
        from ..data import load_task
    for c in list(seen.values())[:16]:  # beyond 16 distinct datasets the runs report their own data errors
        load_task(c)


def plan_sweep(base: RunConfig | Mapping[str, Any], grid: Mapping[str, Sequence[Any]] | str, out: str | Path,
               *, check_data: bool = True) -> Sweep:
    """Validate every grid point (RunConfig.from_dict) and name it; raise SweepError/ConfigError before any
    run starts. `base` holds the settings shared by all points; grid keys override it."""
    if isinstance(grid, str):
        grid = parse_grid(grid)
    base_d = base.to_dict() if isinstance(base, RunConfig) else {**_DEFAULTS.to_dict(), **base}
    typed: dict[str, list[Any]] = {}
    for key, values in grid.items():
        vals = [_coerce(key, v) for v in values]
        if not vals:
            raise SweepError(f"grid: {key} has no values")
        if len(set(map(repr, vals))) < len(vals):
            raise SweepError(f"grid: {key} lists a value twice ({', '.join(map(str, values))})")
        typed[key] = vals
    tasks, configs, names = [], [], set()
    out = str(out)
    for combo in itertools.product(*typed.values()):
        point = dict(zip(typed, combo))
        try:
            cfg = RunConfig.from_dict({**base_d, **point})
        except ConfigError as e:
            label = " ".join(f"{k}={_show(v)}" for k, v in point.items())
            raise SweepError(f"grid point {label}: {e}") from None
        name = store.check_run_id(default_run_id(cfg))
        if name in names:
            raise SweepError(f"grid: two points share the run name {name}; drop the duplicate value")
        names.add(name)
        configs.append(cfg)
        tasks.append(Task(name, cfg.to_dict(), {k: _show(v) for k, v in point.items()}, out))
    if check_data:
        _check_data(configs)
    return Sweep(base_d, {k: [_show(v) for v in vs] for k, vs in typed.items()}, out, tasks)


def _show(v: Any) -> Any:
    return ",".join(v) if isinstance(v, tuple) else v


# --- the driver -----------------------------------------------------------------------------------------
def unfinished(manifest: dict[str, Any], folder: str | Path, what: str = "run") -> str | None:
    """One line naming the runs of a finished sweep that did not end complete or diverged (the first one's path,
    status and error), for a caller that needs them all (a ladder, a coordinate check); None when all did."""
    failed = [e for e in manifest["runs"] if e["status"] not in DONE]
    if not failed:
        return None
    e = failed[0]
    return (f"{len(failed)} {what}(s) did not finish, e.g. {Path(folder) / e['name']}: {e['status']}"
            f"{' (' + str(e['error']) + ')' if e.get('error') else ''}; fix it and rerun (finished runs are kept)")


def run_sweep(sweep: Sweep, *, backend: str = "local", workers: int | None = None, address: str | None = None,
              progress: bool = False, on_result: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Run the sweep's unfinished points and return the manifest (also written to OUT/sweep.json).

    Finished runs (complete, diverged) are skipped; anything else under a task's name is removed and rerun.
    """
    if backend not in ("local", "dask"):
        raise SweepError(f"backend {backend!r} is not supported; choose local or dask")
    if workers is not None and workers < 1:
        raise SweepError(f"--workers must be at least 1; got {workers}")
    if address and backend != "dask":
        raise SweepError("--address names a Dask scheduler; add --backend dask")
    if address and workers:
        raise SweepError("--workers has no effect with --address: the cluster's workers run the tasks")
    if backend == "dask":
        _require_dask()
    dest = _Dest(sweep.out)
    dest.prepare()
    with _locked(dest):
        entries = {t.name: {"name": t.name, "point": t.point, "status": dest.status(t.name), "error": None,
                            "wall_seconds": None, "attempted": False} for t in sweep.tasks}
        todo = [t for t in sweep.tasks if entries[t.name]["status"] not in DONE]
        todo.sort(key=_cost, reverse=True)  # longest first: the last runs to finish are short ones
        if backend == "local" and todo:
            warm_local_pool()  # the workers' torch import now runs beside the driver's bookkeeping
        cluster = _connect(workers, address) if backend == "dask" and todo else None  # fails before writing
        try:
            dest.clean([t.name for t in todo if entries[t.name]["status"] is not None])
            for t in todo:
                entries[t.name].update(status="pending", attempted=True)
            manifest = {"schema_version": 1, "kind": "sweep", "out": sweep.out, "backend": backend,
                        "address": address, "grid": sweep.grid, "base": sweep.base,
                        "started": _now(), "updated": None, "finished": None, "counts": {},
                        "runs": list(entries.values())}
            writer = _ManifestWriter(dest, manifest)
            writer.write(force=True)
            n = workers or (_default_workers(len(todo)) if backend == "local" else _cores())
            bar = _Progress(len(sweep.tasks), len(sweep.tasks) - len(todo), n, progress)
            if not todo:
                results: Iterator = iter(())
            elif cluster is None:
                results = _local(todo, n)
            else:
                results = _dask(todo, cluster, bar.set_slots)
            try:
                for task, res in results:
                    entries[task.name].update(status=res["status"], error=res["error"],
                                              wall_seconds=res["wall_seconds"])
                    bar.update(res["status"])
                    writer.write()
                    if on_result is not None:
                        on_result(res)
            finally:
                bar.close()
                for e in entries.values():
                    if e["status"] == "pending":
                        e["status"] = "interrupted"
                manifest["finished"] = _now()
                writer.write(force=True)
        finally:
            if cluster is not None:
                cluster.close()
    return manifest


def _cost(t: Task) -> float:
    c = t.config
    return c["width"] ** 2 * c["depth"] * c["block"] * (c["steps"] + 1)


def _default_workers(n_tasks: int) -> int:
    """One per GPU when several are present, else one per core; never more than there are runs."""
    import torch
    gpus = torch.cuda.device_count()
    return max(1, min(n_tasks, gpus if gpus > 1 else _cores()))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _locked:
    """One sweep per local output folder at a time (flock on OUT/.sweep.lock; URLs are not locked)."""

    def __init__(self, dest: _Dest):
        self.dest, self.fh = dest, None

    def __enter__(self):
        if self.dest.is_url:
            return self
        import fcntl
        self.fh = open(Path(self.dest.out) / _LOCK, "w")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise SweepError(f"another sweep is writing to {self.dest.out}; wait for it or choose another --out")
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()


class _ManifestWriter:
    """Rewrites sweep.json atomically, at most once a second (1,000 runs must not mean 1,000 rewrites/s)."""

    def __init__(self, dest: _Dest, manifest: dict):
        self.dest, self.m, self.last = dest, manifest, 0.0

    def write(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < 1.0:
            return
        counts: dict[str, int] = {}
        for e in self.m["runs"]:
            counts[e["status"]] = counts.get(e["status"], 0) + 1
        self.m.update(counts=counts, updated=_now())
        self.dest.write_manifest(self.m)
        self.last = time.monotonic()


class _Progress:
    """One bar over all grid points; the postfix counts done/failed/running and estimates the time left."""

    def __init__(self, total: int, done: int, slots: int, enabled: bool):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=total, initial=done, desc="sweep", unit="run", disable=not enabled,
                        file=sys.stderr, dynamic_ncols=True)
        self.total, self.done, self.failed, self.slots = total, done, 0, slots
        self.t0, self.finished_now = time.monotonic(), 0
        self._postfix()

    def update(self, status: str) -> None:
        self.finished_now += 1
        self.failed += status == "failed"
        self.done += status != "failed"
        self.bar.update(1)
        self._postfix()

    def set_slots(self, slots: int) -> None:
        self.slots = slots
        self._postfix()

    def _postfix(self) -> None:
        left = self.total - self.done - self.failed
        eta = "?"
        if self.finished_now:
            eta = self.bar.format_interval(left * (time.monotonic() - self.t0) / self.finished_now)
        self.bar.set_postfix_str(f"done={self.done} failed={self.failed} running={min(self.slots, left)} "
                                 f"eta={eta}")

    def close(self) -> None:
        self.bar.close()


# --- the command line ------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    """Add `python -m dynamics sweep` to the CLI's subparsers."""
    p = sub.add_parser("sweep", help="train a grid of configs (local processes or a Dask cluster)",
                       description="Train every point of a grid of RunConfig settings into OUT/<name> "
                                   "(name from the config). Rerunning skips finished runs and retries "
                                   "failed or interrupted ones. OUT/sweep.json records each run's status.")
    add_config_flags(p)
    p.add_argument("--grid", required=True,
                   help="space-separated FIELD=V1,V2,... over RunConfig fields, e.g. 'depth=4,8 lr=0.05,0.1 "
                        "seed=0,1,2' (trained values join groups with +: trained=all,hidden+readout); "
                        "other flags set what all points share")
    p.add_argument("--out", required=True, help="sweep folder, or a pyarrow.fs URL (s3://bucket/path)")
    p.add_argument("--backend", choices=("local", "dask"), default="local",
                   help="local: a process pool on this machine; dask: a Dask cluster (default: local)")
    p.add_argument("--workers", type=int, help="parallel runs (local, or a LocalCluster's workers; default: "
                                               "one per GPU when several, else one per core)")
    p.add_argument("--address", help="Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: start a LocalCluster)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    import signal
    grid = parse_grid(args.grid)
    given = {f: getattr(args, f) for f in _FIELDS if getattr(args, f, None) is not None}
    both = sorted(set(given) & set(grid))
    if both:
        raise SweepError(f"{', '.join(both)} given both as a flag and in --grid; keep one")
    sweep = plan_sweep(given, grid, args.out)
    # SLURM and friends stop jobs with SIGTERM: treat it like Ctrl-C so the pool is stopped and the
    # manifest says which runs were interrupted.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    m = run_sweep(sweep, backend=args.backend, workers=args.workers, address=args.address,
                  progress=not args.quiet)
    for e in m["runs"]:
        if e["status"] == "failed":
            print(f"failed: {e['name']}: {e['error']}", file=sys.stderr)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(m["counts"].items()))
    skipped = sum(not e["attempted"] for e in m["runs"])
    print(f"sweep: {counts} ({skipped} finished before this call); manifest: "
          f"{args.out.rstrip('/')}/{MANIFEST}")
    return 0 if m["counts"].get("failed", 0) == 0 else 1
