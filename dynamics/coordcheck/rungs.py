"""Training the rungs of a coordinate check: our ResNet through the sweep machinery, or a user's model
through a factory and dynamics.record. Finished runs are reused on a rerun (same config, status complete or
diverged); nothing else under a rung's name survives.

The factory interface (`--model module:function`, docs/coordcheck.md): `function(width, depth)` is called
after `torch.manual_seed(seed)` (and numpy's and random's), and returns a mapping (or any object with these
attributes):

    model    the torch.nn.Module
    blocks   its residual blocks, a list of modules (or `pattern`, a regex over module names)
    probe    the probe batch, a tensor (P, ...) or a dict of tensors
    step     a callable with no arguments: one training step of your own loop (zero_grad, forward,
             backward, optimizer.step); it may return the loss, recorded as `loss`
    act, g_scale, output   optional, passed to dynamics.record as they are

The check calls `step` `steps` times and records every metric before the first call and after each one.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import ConfigError, RunConfig
from ..runs import store

__all__ = ["CoordCheckError", "train_resnet", "load_factory", "train_factory"]

_DONE = ("complete", "diverged")


class CoordCheckError(ConfigError):
    """A coordinate check cannot run as asked; the message says how to fix it."""


# --- our ResNet -------------------------------------------------------------------------------------------
def train_resnet(base: RunConfig, widths: Sequence[int], depths: Sequence[int], seeds: int, folder: Path, *,
                 progress: bool, workers: int | None = None) -> list[Path]:
    """Both ladders (widths at base.depth, depths at base.width, each × seeds base.seed + 0..seeds−1) as one
    sweep into `folder` (dynamics.sweep: finished runs are skipped, folder/sweep.json is the manifest); the
    point both ladders share trains once. Returns every rung's run directory; CoordCheckError naming the first
    run that did not finish."""
    from ..sweep.plan import Sweep, plan_sweep, run_sweep, unfinished
    seed_values = [base.seed + k for k in range(seeds)]
    tasks: dict[str, Any] = {}
    for axis, values in (("width", widths), ("depth", depths)):
        if values:
            for t in plan_sweep(base, {axis: list(values), "seed": seed_values}, str(folder)).tasks:
                tasks.setdefault(t.name, t)
    grid = {"width": sorted({t.config["width"] for t in tasks.values()}),
            "depth": sorted({t.config["depth"] for t in tasks.values()}), "seed": seed_values}
    manifest = run_sweep(Sweep(base.to_dict(), grid, str(folder), list(tasks.values())), backend="local",
                         workers=workers, progress=progress)
    if why := unfinished(manifest, folder):
        raise CoordCheckError(why)
    return [folder / name for name in tasks]


# --- a user's model ---------------------------------------------------------------------------------------
def load_factory(spec: str) -> Callable[[int, int], Any]:
    """'package.module:function' or 'path/to/file.py:function' -> the function (the working directory is on
    the import path, as for `python -m`)."""
    module, colon, name = spec.rpartition(":")
    if not colon or not module or not name:
        raise CoordCheckError(f"--model must look like module:function or file.py:function; got {spec!r}")
    try:
        if module.endswith(".py"):
            path = Path(module)
            if not path.is_file():
                raise CoordCheckError(f"--model: no file {module}")
            loaded = importlib.util.spec_from_file_location(path.stem, path)
            mod = importlib.util.module_from_spec(loaded)
            loaded.loader.exec_module(mod)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            mod = importlib.import_module(module)
    except CoordCheckError:
        raise
    except Exception as e:  # the user's module failed to import: say so in one line
        raise CoordCheckError(f"--model: cannot import {module}: {type(e).__name__}: {_first_line(e)}") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise CoordCheckError(f"--model: {module} has no function {name}")
    return fn


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0]


_KEYS = ("model", "blocks", "pattern", "probe", "step", "act", "g_scale", "output")


def _parts(made: Any, where: str) -> dict[str, Any]:
    get = made.get if isinstance(made, dict) else (lambda k, d=None: getattr(made, k, d))
    parts = {k: get(k, None) for k in _KEYS}
    missing = [k for k in ("model", "probe", "step") if parts[k] is None]
    if missing or (parts["blocks"] is None) == (parts["pattern"] is None) or not callable(parts["step"]):
        raise CoordCheckError(f"--model factory {where} must return model, probe, a callable step and one of "
                              f"blocks or pattern (docs/coordcheck.md); "
                              f"{'missing ' + ', '.join(missing) if missing else 'got ' + type(made).__name__}")
    return parts


def run_name(spec: str, width: int, depth: int, seed: int, steps: int) -> str:
    digest = hashlib.sha1(json.dumps([spec, width, depth, seed, steps]).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() else "-" for c in spec.rpartition(":")[2])[:60] or "model"
    return store.check_run_id(f"{stem}_n{width}_L{depth}_s{seed}_k{steps}_{digest}")


def train_factory(spec: str, points: Sequence[tuple[int, int, int]], steps: int, folder: Path, *,
                  progress: bool, factory: Callable[[int, int], Any] | None = None) -> list[Path]:
    """Record each (width, depth, seed) point of a factory's ladder into folder/<run_name> (reused when it
    holds the same config, complete); each run is recorded under folder/.tmp and moved in when it ends.
    factory: load_factory(spec)'s result, when the caller has loaded it already."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm
    from ..runs.recorder import record
    factory = factory or load_factory(spec)
    folder = store.check_writable(folder)
    tmp = folder / ".tmp"
    out = []
    bar = tqdm(total=len(points), desc="coordcheck", unit="run", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    try:
        for width, depth, seed in points:
            name = run_name(spec, width, depth, seed, steps)
            config = {"model": spec, "seed": seed, "steps": steps, "coordcheck": {"width": width, "depth": depth}}
            final = folder / name
            out.append(final)
            if _finished(final, config):
                bar.update(1)
                continue
            shutil.rmtree(final, ignore_errors=True)
            shutil.rmtree(tmp / name, ignore_errors=True)
            where = f"at width {width}, depth {depth}, seed {seed}"
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            try:
                parts = _parts(factory(width, depth), where)
            except CoordCheckError:
                raise
            except Exception as e:
                raise CoordCheckError(f"--model factory raised {where}: {type(e).__name__}: {_first_line(e)}") from None
            kw = {k: parts[k] for k in ("blocks", "pattern", "act", "g_scale", "output") if parts[k] is not None}
            t = 0
            try:
                with record(parts["model"], probe=parts["probe"], out=tmp, name=name, config=config,
                            overlap=False, **kw) as rec:
                    rec.step(0)
                    for t in range(1, steps + 1):
                        loss = parts["step"]()
                        rec.step(t, **({"loss": float(loss)} if loss is not None else {}))
            except Exception as e:
                shutil.rmtree(tmp / name, ignore_errors=True)
                what = "recording" if t == 0 else f"training step {t}"
                raise CoordCheckError(f"--model {where}, {what}: {type(e).__name__}: {_first_line(e)}") from None
            (tmp / name).rename(final)
            bar.update(1)
    finally:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _finished(run_dir: Path, config: dict) -> bool:
    try:
        meta = store.read_meta(run_dir)
    except store.RunFormatError:
        return False
    cfg = {k: meta["config"].get(k) for k in config}
    return meta["status"] in _DONE and cfg == config
