"""`python -m dynamics limit --like RUN_DIR --out DIR`: the limit run of a finite run, written in the run format.

`limit_like(run_dir, out, ...)` reads the finite run's config, solves the limit for the same setting
(`nfd.solve_limit`: same data, probes, activation, parametrization, learning rate, steps and batch order)
and writes a run of kind `limit`: run.json holds that config (with `depth` = the grid K, so τ = layer/depth
stays right) plus a `limit` section (grid, particles, replicas, coupling, seed, what is covered);
metrics.parquet carries the `stderr` column. `register(sub)` adds the subcommand to the CLI.
"""
from __future__ import annotations

import argparse
import os
import dataclasses
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..runs import store
from ..cli import prepare_run_dir
from . import COUPLINGS, LimitError, like_config  # torch loads with the solver in limit_like: `limit --help` is fast

__all__ = ["limit_like", "register", "COVERS", "NOT_COVERED"]

COVERS = ("one- and two-layer blocks (with the inner-LR exponent alpha); MSE or cross-entropy; any number of "
          "outputs C (metrics use the first output, as finite runs do); param depth-mup, mup, plain; readout phi or "
          "linear; any subset of trained groups; every activation; coupling full (reused backward, the exact "
          "width limit) or none (the limit of the decoupled net)")
NOT_COVERED = ("param sp is refused (its width limit is the lazy kernel regime with a Gaussian-process f(0), not a "
               "particle average); test_loss, grad_norm and the coupling_* metrics are not produced (no test set "
               "or raw-parameter norm at infinite width; the coupling split needs the finite matrix)")
DEFAULT_PARTICLES = 4096


def limit_like(like: Path, out: Path, *, grid: int | None = None, particles: int = DEFAULT_PARTICLES,
               coupling: str | None = None, seed: int = 0, device: str = "auto", replicas: int = 8,
               name: str | None = None, overwrite: bool = False, progress: bool = False, dtype: str = "float64",
               on_step: Callable[[int, float], None] | None = None) -> Path:
    """Solve the limit of the run in `like` and write it to out/name; returns the run directory.
    coupling None follows the run's backward mode: reused -> full, decoupled -> none. device auto picks CUDA
    when present; dtype float64 (default) or float32 (run.json's limit.dtype says which). on_step(step, loss)
    is called after every solver step (the dashboard's progress)."""
    from .. import probes as PR
    from .nfd import solve_limit
    meta = store.read_meta(Path(like))
    cfg = like_config(meta, like)
    coupling = coupling or ("none" if cfg.backward == "decoupled" else "full")
    K = grid or cfg.depth
    cfg_k = dataclasses.replace(cfg, depth=K)
    run_id = name or f"{meta['run_id']}_limit-{coupling}-K{K}-M{particles}-s{seed}"[-200:].lstrip("._=+-")
    if not overwrite:  # a name collision fails before the solve; --overwrite replaces only after it
        prepare_run_dir(str(out), run_id, cfg_k, False)
    t0 = time.monotonic()
    bar = _progress(cfg.steps + 1, progress)
    try:
        def step(t: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}")
            if on_step is not None:
                on_step(t, loss)
        res = solve_limit(cfg, grid=K, particles=particles, coupling=coupling, seed=seed, device=device,
                          replicas=replicas, dtype=dtype, on_step=step)
    finally:
        bar.close()
    run_dir = prepare_run_dir(str(out), run_id, cfg_k, overwrite)
    # relative to the limit run, so a moved or bundled pair keeps no path of the machine that made it
    section = {"method": "particles", **res.info, "seed": seed, "like": meta["run_id"],
               "like_path": os.path.relpath(like, run_dir),
               "finite_depth": cfg.depth, "finite_width": cfg.width,
               "layers": f"layer indices are on the K = {K} grid and config.depth = {K}, so tau = layer/depth",
               "inputs_used": res.inputs, "covers": COVERS, "not_covered": NOT_COVERED,
               "step0": "exact (init_kernels); neurons from particles; later steps: replica mean, stderr = "
                        "replica std / sqrt(replicas)"}
    dev = res.info["device"]
    writer = store.RunWriter(run_dir, {
        "run_id": run_dir.name, "kind": "limit", "config": cfg_k.to_dict(), "limit": section,
        "probe_ids": list(range(cfg.probes)), "probe_source": "first training inputs",
        "quantiles": list(PR.QUANTILES), "versions": _versions(), "device": dev,
        "device_name": _device_name(dev), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "steps_done": res.info["steps_done"]}, stderr=True)
    m = res.metrics
    writer.add(store.METRICS, step=m["step"].to_numpy(), layer=m["layer"].to_numpy(), metric=m["metric"].to_numpy(),
               value=m["value"].to_numpy(), stderr=m["stderr"].to_numpy())
    for file, frame in ((store.KERNELS, res.kernels), (store.NEURONS, res.neurons)):
        writer.add(file, **{c: frame[c].to_numpy() for c in frame.columns})
    writer.finish(res.status, wall_seconds=round(time.monotonic() - t0, 3))
    return run_dir


def _device_name(dev: str) -> str:
    if dev.startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(torch.device(dev))
    return platform.processor()


def _versions() -> dict:
    from ..train import package_versions
    return package_versions()


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, disable=not enabled, desc="limit", unit="step", file=sys.stderr,
                dynamic_ncols=True, leave=False)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `python -m dynamics limit` to the CLI's subparsers."""
    from .extrapolate import METHODS
    ex = _extrapolate_flags()
    p = sub.add_parser("limit", help="the infinite-width (NFD) limit of a finite run, as a run of kind limit",
                       description="Write OUT/NAME, the infinite-width limit of a finite run's setting, with the "
                                   "same metrics (plus stderr), kernels and neuron quantiles, by one of two "
                                   "methods. particles (default): the particle solver of the training-time limit. "
                                   f"Covers {COVERS}. Not covered: {NOT_COVERED}. extrapolate: train the setting "
                                   "at every --widths x --seeds (reusing finished runs) and fit each value as "
                                   "a + b/n (+ c/n^2 with four or more widths), stderr = seed noise pooled over "
                                   "widths; any setting the trainer runs.")
    p.add_argument("--like", required=True, help="finite run directory whose setting to mimic")
    p.add_argument("--out", required=True, help="folder that receives the limit run directory")
    p.add_argument("--method", choices=METHODS, default="particles",
                   help="particles: the particle solver (default); extrapolate: fit a width ladder of finite runs")
    p.add_argument("--widths", default=ex["widths"], help=f"extrapolate: the width ladder (default: {ex['widths']})")
    p.add_argument("--seeds", type=int, default=ex["seeds"],
                   help=f"extrapolate: seeds per width, the run's seed and the next ones (default: {ex['seeds']})")
    p.add_argument("--workers", type=int, help="extrapolate: ladder runs trained at once (default: one per core)")
    p.add_argument("--grid", type=int, help="depth grid K (default: the run's depth, i.e. its width limit; "
                                            "larger K approaches the depth-muP continuum)")
    p.add_argument("--particles", type=int, default=DEFAULT_PARTICLES,
                   help=f"particles M, split into --replicas independent groups (default: {DEFAULT_PARTICLES})")
    p.add_argument("--replicas", type=int, default=_PARTICLE_FLAGS["replicas"],
                   help="independent replicas for the stderr (default: 8)")
    p.add_argument("--coupling", choices=COUPLINGS, help="full: the exact width limit (transpose coupling "
                   "kept); none: forward and backward decoupled (default: full for a reused run, none for "
                   "a decoupled one)")
    p.add_argument("--seed", type=int, default=_PARTICLE_FLAGS["seed"], help="particle noise seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N] (default: auto)")
    p.add_argument("--dtype", choices=("float64", "float32"), default=_PARTICLE_FLAGS["dtype"],
                   help="solver precision (default: float64; float32 halves memory and is faster on GPUs)")
    p.add_argument("--name", help="run directory name (default: <like run>_limit-<coupling>-K<K>-M<M>-s<seed>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_limit)


# the flags only one method reads, with their defaults (the parser's): given with the other method, they refuse
_PARTICLE_FLAGS = {"grid": None, "particles": DEFAULT_PARTICLES, "replicas": 8, "coupling": None, "seed": 0,
                   "dtype": "float64"}


def _extrapolate_flags() -> dict:
    from .extrapolate import DEFAULT_SEEDS, DEFAULT_WIDTHS
    return {"widths": ",".join(map(str, DEFAULT_WIDTHS)), "seeds": DEFAULT_SEEDS, "workers": None}


def _set_flags(args: argparse.Namespace, defaults: dict) -> list[str]:
    """The flags among `defaults` that the command line set to something else."""
    return [f"--{k}" for k, d in defaults.items() if getattr(args, k) != d]


def _cmd_limit(args: argparse.Namespace) -> int:
    if args.method == "extrapolate":
        return _cmd_extrapolate(args)
    if given := _set_flags(args, _extrapolate_flags()):
        raise LimitError(f"{', '.join(given)} belong(s) to --method extrapolate; add it, or drop the flag")
    run_dir = limit_like(Path(args.like), Path(args.out), grid=args.grid, particles=args.particles,
                         coupling=args.coupling, seed=args.seed, device=args.device, replicas=args.replicas,
                         name=args.name, overwrite=args.overwrite, progress=not args.quiet, dtype=args.dtype)
    meta = store.read_meta(run_dir)
    if "warning" in meta["limit"]:
        print(f"warning: {meta['limit']['warning']}", file=sys.stderr)
    print(f"{meta['status']}: {run_dir}  ({meta['limit']['particles']} particles, grid {meta['limit']['grid']}, "
          f"coupling {meta['limit']['coupling']}, {meta.get('wall_seconds')} s)")
    return 0 if meta["status"] == "complete" else 1


def _cmd_extrapolate(args: argparse.Namespace) -> int:
    from .extrapolate import extrapolate_like, parse_widths
    if given := _set_flags(args, _PARTICLE_FLAGS):
        raise LimitError(f"{', '.join(given)} set(s) the particle solver; drop it with --method extrapolate "
                         f"(its knobs are --widths and --seeds)")
    run_dir = extrapolate_like(Path(args.like), Path(args.out), widths=parse_widths(args.widths), seeds=args.seeds,
                               name=args.name, overwrite=args.overwrite, progress=not args.quiet,
                               device=args.device, workers=args.workers)
    meta = store.read_meta(run_dir)
    lim = meta["limit"]
    if "warning" in lim:
        print(f"warning: {lim['warning']}", file=sys.stderr)
    print(f"{meta['status']}: {run_dir}  (extrapolated in width from n = {', '.join(map(str, lim['widths']))} x "
          f"{lim['seeds']} seeds, fit {lim['fit']}; {lim['ladder_trained']} ladder runs trained, "
          f"{meta.get('wall_seconds')} s)")
    return 0 if meta["status"] == "complete" else 1
