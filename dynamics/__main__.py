"""The command line: `python -m dynamics train [options] --out DIR` (more commands arrive with later issues).

Flags are generated from RunConfig's fields (`train_size` -> `--train-size`; see cli.py), so a setting is named once.
Every expected failure (bad flag or value, missing data file, unwritable --out) prints one line
`dynamics: error: ...` and exits with status 2; nothing half-written is left behind.
"""
from __future__ import annotations

import argparse
import sys

from .cli import Parser, add_config_flags, config_from_args, prepare_run_dir
from .config import ConfigError, DataError
from .runs.store import RunFormatError, read_meta

from .paper.experiments import ExperimentError
from .runs.imports import RunImportError

USER_ERRORS = (ConfigError, DataError, RunFormatError, FileNotFoundError, ExperimentError, RunImportError)


def cmd_train(args: argparse.Namespace) -> int:
    from .data import load_task
    from .train import train, resolve_device
    cfg = config_from_args(args)
    resolve_device(cfg.device)
    data = load_task(cfg)  # data problems surface before anything is written
    run_dir = prepare_run_dir(args.out, args.name, cfg, args.overwrite)
    train(cfg, run_dir, progress=not args.quiet, data=data)
    meta = read_meta(run_dir)
    print(f"{meta['status']}: {run_dir}  ({meta.get('steps_done')} steps, {meta.get('wall_seconds')} s)")
    return 0 if meta["status"] == "complete" else 1


def cmd_experiment(args: argparse.Namespace) -> int:
    from .paper.experiments import run_experiment
    summary = run_experiment(args.name, args.out, profile=args.profile, device=args.device)
    cols = ["quantity", "axis", "setting", "slope", "ci_low", "ci_high", "paper_rate", "verdict"]
    print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"summary: {args.out}/summary.parquet")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m dynamics", description="Feature-learning dynamics of depth-μP ResNets "
                     "(arXiv 2512.21075): train, record, compare with the infinite-depth limit.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    t = sub.add_parser("train", help="train one network and record per-layer trajectories",
                       description="Train a ResNet (docs/theory.md §1) with SGD and write a run directory "
                                   "OUT/NAME holding run.json and metrics/kernels/neurons Parquet files.")
    add_config_flags(t)
    t.add_argument("--out", required=True, help="folder that receives the run directory")
    t.add_argument("--name", help="run directory name (default: derived from the config)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    from .paper.experiments import EXPERIMENTS, PROFILES
    e = sub.add_parser("experiment", help="coupling sweeps with fitted rates beside the paper's",
                       description="Run a sweep of ordinary runs under OUT/runs and write OUT/summary.parquet "
                                   "with fitted log-log slopes and bootstrap intervals next to the paper's rates.")
    e.add_argument("name", choices=EXPERIMENTS)
    e.add_argument("--out", required=True, help="folder for runs/ and summary.parquet")
    e.add_argument("--profile", default="cpu", choices=PROFILES[:2],
                   help="cpu: minutes on 2 cores; gpu: paper-sized (default: cpu)")
    e.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    e.set_defaults(func=cmd_experiment)
    from .sweep.plan import register as register_sweep
    register_sweep(sub)
    from .runs.imports import register as register_import
    register_import(sub)
    from .limit.run import register as register_limit  # LimitError is a ConfigError: caught below
    register_limit(sub)
    from .paper.reproduce import register as register_reproduce
    register_reproduce(sub)
    from .coordcheck import register as register_coordcheck  # CoordCheckError is a ConfigError: caught below
    register_coordcheck(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not _out_of_memory(e):
            raise
        print(f"{parser.prog}: error: out of memory ({e}); lower --width, --depth, --batch or --probes",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def _out_of_memory(e: Exception) -> bool:
    """Host or GPU memory ran out (torch is imported lazily: a command that never loaded it cannot hit its OOM)."""
    torch = sys.modules.get("torch")
    return isinstance(e, MemoryError) or (torch is not None and isinstance(e, torch.OutOfMemoryError))


if __name__ == "__main__":
    sys.exit(main())
