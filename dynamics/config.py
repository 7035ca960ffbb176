"""RunConfig: the one place a setting is named, defaulted and validated.

Every result stores the config that made it (run.json). The CLI maps flags onto fields
(`--train-size` -> `train_size`); `RunConfig.from_dict` turns a stored or user-given mapping back into a
config, rejecting unknown keys and wrong types with a message naming the field and the allowed values.
Variants are made with `dataclasses.replace` (which re-validates).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any

ACTIVATIONS = ("linear", "relu", "abs", "tanh", "gelu")
PARAMS = ("depth-mup", "mup", "plain", "sp")
BACKWARDS = ("reused", "decoupled")
READOUTS = ("phi", "linear")
GROUPS = ("input", "hidden", "readout")
LOSSES = ("mse", "xent")
BUILTIN_TASKS = ("teacher", "mixture", "digits", "cifar10")
DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    """A setting is invalid; the message names the field and what is allowed."""


class DataError(ValueError):
    """One-line, user-facing message saying what is wrong with the data and how to fix it (raised by
    dynamics.data; defined here, beside ConfigError, so the CLI can catch it without importing torch)."""


@dataclass(frozen=True)
class RunConfig:
    # architecture (docs/theory.md §1)
    width: int = 256                # n: neurons per hidden layer
    depth: int = 16                 # L: number of residual blocks
    act: str = "relu"               # φ
    param: str = "depth-mup"        # parametrization table of docs/theory.md §1
    block: int = 1                  # layers per residual branch (1 or 2)
    inner_lr_exponent: float = 0.0  # two-layer blocks: first inner layer's LR × L^α (a knob, not the paper's)
    backward: str = "reused"        # "decoupled": backward through W̃(0) + ΔW (paper's independent init)
    beta: float = 1.0               # branch multiplier β
    gamma0: float = 1.0             # readout multiplier γ0 (feature-learning strength)
    readout: str = "phi"            # f = vᵀφ(h_L)/(γ0 n) ("phi") or vᵀh_L/(γ0 n) ("linear")
    trained: tuple[str, ...] = GROUPS  # parameter groups that learn
    # optimisation
    lr: float = 0.5                 # η; raw SGD learning rate is η γ0² n (μP), η for sp
    steps: int = 100                # S SGD updates; steps 0..S are recorded
    batch: int | str = 64           # minibatch size or "full"
    loss: str = "mse"               # mse = mean ½‖f−y‖²; xent = cross-entropy
    # data
    task: str = "teacher"           # teacher | mixture | digits | cifar10 | file:PATH
    data_dir: str = ""              # cifar10: folder holding the binary batches
    input_dim: int = 32             # d for synthetic tasks
    classes: int = 4                # mixture: number of classes
    train_size: int = 1024
    test_size: int = 256
    data_seed: int = 0              # fixes the task (teacher, mixture, sample) across init seeds
    # recording
    probes: int = 8                 # P: the first P training inputs are the probe set
    record_every: int = 10          # record probe metrics every k steps (and at step 0 and S)
    test_every: int = 10            # test_loss every k steps (and at 0 and S): a full test-set forward
    record_coupling: str = "on"     # docs/theory.md §5 decomposition per block at record steps ("off" saves time)
    coupling_window: int = 0        # past recorded steps kept in the coupling histories (0 = all that fit)
    # execution
    seed: int = 0                   # init, data order; a decoupled twin with the same seed shares both
    device: str = "auto"            # auto picks CUDA when present
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _validate(self)

    # --- derived quantities -------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.train_size if self.batch == "full" else int(self.batch)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["trained"] = list(self.trained)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Build a config from a mapping (run.json, a sidecar, CLI); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; "
                              f"known fields: {', '.join(sorted(known))}")
        d = dict(d)
        if "trained" in d:
            d["trained"] = parse_trained(d["trained"])
        if "batch" in d:
            d["batch"] = parse_batch(d["batch"])
        return cls(**d)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS has one (a container or `taskset`
    may allow fewer than os.cpu_count()), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_trained(value: Any) -> tuple[str, ...]:
    """'all' | 'input,hidden' | ['input', ...] -> ordered tuple of groups."""
    if isinstance(value, str):
        items = list(GROUPS) if value.strip() == "all" else [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        raise ConfigError(f"trained must be 'all' or a comma list of {', '.join(GROUPS)}; got {value!r}")
    bad = [v for v in items if v not in GROUPS]
    if bad:
        raise ConfigError(f"trained: unknown group(s) {', '.join(bad)}; allowed: all or any of {', '.join(GROUPS)}")
    return tuple(g for g in GROUPS if g in items)


def parse_batch(value: Any) -> int | str:
    if value == "full":
        return "full"
    if isinstance(value, bool):
        raise ConfigError(f"batch must be a positive integer or 'full'; got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"batch must be a positive integer or 'full'; got {value!r}") from None


_INT_FIELDS = ("width", "depth", "block", "steps", "input_dim", "classes", "train_size", "test_size",
               "data_seed", "probes", "record_every", "test_every", "coupling_window", "seed")
_FLOAT_FIELDS = ("inner_lr_exponent", "beta", "gamma0", "lr")
_CHOICES = {"act": ACTIVATIONS, "param": PARAMS, "backward": BACKWARDS, "readout": READOUTS,
            "loss": LOSSES, "dtype": DTYPES, "record_coupling": ("on", "off")}


def _validate(c: RunConfig) -> None:
    for name in _INT_FIELDS:
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{name} must be an integer; got {v!r}")
    for name in _FLOAT_FIELDS:
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{name} must be a number; got {v!r}")
        if v != v or v in (float("inf"), float("-inf")):
            raise ConfigError(f"{name} must be finite; got {v!r}")
    for name, allowed in _CHOICES.items():
        v = getattr(c, name)
        if v not in allowed:
            raise ConfigError(f"{name}={v!r} is not supported; choose one of {', '.join(allowed)}")
    positive = ("width", "depth", "input_dim", "train_size", "probes", "record_every", "test_every")
    for name in positive:
        if getattr(c, name) <= 0:
            raise ConfigError(f"{name} must be positive; got {getattr(c, name)}")
    for name in ("steps", "test_size", "coupling_window"):
        if getattr(c, name) < 0:
            raise ConfigError(f"{name} must be zero or positive; got {getattr(c, name)}")
    if c.block not in (1, 2):
        raise ConfigError(f"block must be 1 or 2; got {c.block}")
    if c.classes < 2:
        raise ConfigError(f"classes must be at least 2; got {c.classes}")
    if c.lr <= 0:
        raise ConfigError(f"lr must be positive; got {c.lr}")
    if c.gamma0 <= 0:
        raise ConfigError(f"gamma0 must be positive; got {c.gamma0}")
    if not isinstance(c.trained, tuple) or any(g not in GROUPS for g in c.trained):
        raise ConfigError(f"trained must be a tuple of groups from {', '.join(GROUPS)}; got {c.trained!r}")
    if c.batch != "full":
        if isinstance(c.batch, bool) or not isinstance(c.batch, int) or c.batch <= 0:
            raise ConfigError(f"batch must be a positive integer or 'full'; got {c.batch!r}")
        if c.batch > c.train_size:
            raise ConfigError(f"batch={c.batch} is larger than train_size={c.train_size}; "
                              f"lower --batch or raise --train-size")
    if c.probes > c.train_size:
        raise ConfigError(f"probes={c.probes} is larger than train_size={c.train_size}")
    if not (c.task in BUILTIN_TASKS or (c.task.startswith("file:") and len(c.task) > 5)):
        raise ConfigError(f"task={c.task!r} is not supported; choose one of "
                          f"{', '.join(BUILTIN_TASKS)} or file:PATH")
    if c.task == "cifar10" and not c.data_dir:
        raise ConfigError("task=cifar10 needs --data-dir pointing at the CIFAR-10 binary batches "
                          "(data_batch_1.bin ... test_batch.bin)")
    if c.device != "auto" and not (c.device == "cpu" or c.device.startswith("cuda")):
        raise ConfigError(f"device={c.device!r} is not supported; choose auto, cpu or cuda[:N]")
