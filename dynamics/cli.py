"""Shared pieces of the command line: config flags generated from RunConfig, run-directory preparation, and
the one-line error convention. Each command lives beside what it runs and registers itself in
`dynamics/__main__.py` with `register(subparsers)`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from dataclasses import fields
from pathlib import Path

from .config import RunConfig, parse_batch, parse_trained, _CHOICES
from .runs.store import RunFormatError, check_run_id, check_writable, read_meta, RUN_JSON


class Parser(argparse.ArgumentParser):
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
