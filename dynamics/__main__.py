"""The command line: `python -m dynamics train [options] --out DIR` (more commands arrive with later issues).

Flags are generated from RunConfig's fields (`train_size` -> `--train-size`), so a setting is named once.
Every expected failure (bad flag or value, missing data file, unwritable --out) prints one line
`dynamics: error: ...` and exits with status 2; nothing half-written is left behind.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from dataclasses import fields
from pathlib import Path

import torch

from .config import RunConfig, ConfigError, parse_batch, parse_trained, _CHOICES
from .data import DataError
from .store import RunFormatError, check_run_id, check_writable, read_meta, RUN_JSON

USER_ERRORS = (ConfigError, DataError, RunFormatError, FileNotFoundError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not a usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One flag per RunConfig field; the default is the dataclass default (shown by --help)."""
    defaults = RunConfig()
    for f in fields(RunConfig):
        if f.name in exclude:
            continue
        default = getattr(defaults, f.name)
        kw: dict = {"dest": f.name, "default": None, "metavar": f.name.upper()}
        if f.name == "trained":
            kw.update(type=str, help="parameter groups that learn: all, or a comma list of input,hidden,readout "
                                     "(default: all)")
        elif f.name == "batch":
            kw.update(type=str, help=f"minibatch size or 'full' (default: {default})")
        elif f.name in _CHOICES:
            kw.update(type=str, help=f"one of {', '.join(_CHOICES[f.name])} (default: {default})")
        else:
            kw.update(type=type(default), help=f"(default: {default})")
        p.add_argument(_flag(f.name), **kw)


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """Fields given on the command line override `base` (default: RunConfig())."""
    given = {f.name: getattr(args, f.name) for f in fields(RunConfig)
             if getattr(args, f.name, None) is not None}
    if "trained" in given:
        given["trained"] = parse_trained(given["trained"])
    if "batch" in given:
        given["batch"] = parse_batch(given["batch"])
    d = (base or RunConfig()).to_dict()
    d.update(given)
    return RunConfig.from_dict(d)


def default_run_id(cfg: RunConfig) -> str:
    """Readable and deterministic: the main settings plus a hash of the whole config."""
    digest = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    task = cfg.task.split(":")[0]
    return f"{task}_{cfg.param}_{cfg.act}_n{cfg.width}_L{cfg.depth}_{cfg.backward}_s{cfg.seed}_{digest}"


def prepare_run_dir(out: str, name: str | None, cfg: RunConfig, overwrite: bool) -> Path:
    root = check_writable(Path(out))
    run_dir = root / check_run_id(name or default_run_id(cfg))
    if (run_dir / RUN_JSON).exists():
        if not overwrite:
            try:
                status = read_meta(run_dir)["status"]
            except RunFormatError:
                status = "unreadable"
            raise RunFormatError(f"run {run_dir.name} already exists in {root} (status {status}); "
                                 f"pass --name NEW or --overwrite")
        shutil.rmtree(run_dir)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunFormatError(f"{run_dir} exists and is not an empty run directory; choose another --name")
    return run_dir


def cmd_train(args: argparse.Namespace) -> int:
    from .data import load_task
    from .train import train, resolve_device
    cfg = config_from_args(args)
    resolve_device(cfg.device)
    load_task(cfg)  # data problems surface before anything is written
    run_dir = prepare_run_dir(args.out, args.name, cfg, args.overwrite)
    train(cfg, run_dir, progress=not args.quiet)
    meta = read_meta(run_dir)
    print(f"{meta['status']}: {run_dir}  ({meta.get('steps_done')} steps, {meta.get('wall_seconds')} s)")
    return 0 if meta["status"] == "complete" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dynamics", description="Feature-learning dynamics of depth-μP ResNets "
                     "(arXiv 2512.21075): train, record, compare with the infinite-depth limit.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train one network and record per-layer trajectories",
                       description="Train a ResNet (THEORY §1) with SGD and write a run directory "
                                   "OUT/NAME holding run.json and metrics/kernels/neurons Parquet files.")
    add_config_flags(t)
    t.add_argument("--out", required=True, help="folder that receives the run directory")
    t.add_argument("--name", help="run directory name (default: derived from the config)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except (MemoryError, torch.OutOfMemoryError) as e:
        print(f"{parser.prog}: error: out of memory ({e}); lower --width, --depth, --batch or --probes",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
