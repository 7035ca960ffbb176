"""`dynamics.record(model, ...)`: record our per-layer metrics on a user's own PyTorch residual network.

The user names the residual blocks (a list of modules, or a regex over `model.named_modules()` names); at
the steps the user chooses (`rec.step(step)`), the recorder runs the probe batch through the model in eval
mode with hooks on those blocks, takes h_0 = the first block's input and h_ℓ = block ℓ's output, each
flattened per probe to (P, n_ℓ), backpropagates one scalar per probe (`output=`, see dynamics.runs.outputs:
by default a tensor output's first coordinate, a language model's mean next-token loss) to every h_ℓ, and
scales it as ĝ_ℓ = g_scale_ℓ · ∂f/∂h_ℓ (default g_scale_ℓ = n_ℓ, the μP normalisation γ0·n with γ0 = 1; pass
a number, e.g. √n, for a standard parametrization). The metrics, kernels and neuron quantiles are the very
functions of dynamics.probes (FUNCTIONS, kernels, neuron_quantiles), so the names and formulas are those of our
own runs. φ is unknown in general: phi_sq, fg_cov, fg_eigmin and the Phi kernel are recorded only when `act`
is given (one of our activation names or a callable). h_move and g_move are relative to the first recorded step.

Widths may change from block to block (CNN stages, a downsampling block): every layer is measured on its own,
normalised by its own size n_ℓ (|h_ℓ|²/n_ℓ, kernels h·h'/n_ℓ, ĝ_ℓ = n_ℓ ∂f/∂h_ℓ); `diversity` (L·|h_ℓ−h_{ℓ−1}|²/n)
needs h_ℓ and h_{ℓ−1} of one shape and is left out, with a note, where the shape changes. A feature map of
shape (C, H, W) counts as n = C·H·W coordinates (C channels × H·W positions), and a sequence (T, d) as n = T·d
(T positions × d features): every coordinate is one "neuron". Normalising by C·H·W makes h_sq the mean over
positions of the per-channel second moments, so a stage that halves H·W and doubles C stays comparable, and
with global average pooling before a μP readout (f = w·mean_pos(h)/C) ĝ = C·H·W ∂f/∂h = w is O(1), as ĝ is in
our ResNets. run.json `layers` keeps each layer's module name, shape and width n_ℓ.

The run is of kind `imported` (source "record" in run.json): its numbers are ours, but its config is not a
RunConfig (the architecture is the user's). Network scalars (loss, ...) can be passed as keywords to `step`.
The run directory is created at the first successful `step` and flushed like the trainer's (atomic,
throttled, with a heartbeat); leaving the `with` block or calling `close()` marks the run complete, or
failed with the error when the block raised. A failure before any step was recorded leaves nothing behind.

    rec = dynamics.record(model, blocks=model.blocks, probe=x[:8], out="runs/", name="my-resnet")
    with rec:
        for t in range(101):
            if t % 10 == 0:
                rec.step(t, loss=loss.item())
            ...  # the user's own training step
"""
from __future__ import annotations

import copy
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from .. import probes as P
from ..background import Background
from ..config import usable_cores
from . import store
from .outputs import RecordError, probe_size
from .probe_hooks import ProbeHooks

__all__ = ["record", "Recorder", "RecordError"]

_PHI_METRICS = ("phi_sq", "fg_cov", "fg_eigmin")
OVERLAP_MAX_BYTES = 2 ** 30  # overlap=None copies a CPU model of at most this many bytes (weights + buffers)


def record(model: torch.nn.Module, *, probe: Any, out: str | Path, name: str,
           blocks: Iterable[torch.nn.Module] | None = None, pattern: str | None = None,
           act: str | Callable[[torch.Tensor], torch.Tensor] | None = None, g_scale: float | None = None,
           output: Callable[[Any], torch.Tensor] | None = None, config: dict | None = None,
           flush_seconds: float = 30.0, overlap: bool | None = None) -> "Recorder":
    """Attach a Recorder to `model`; see the module docstring. Exactly one of `blocks` and `pattern`.

    probe: a tensor (P, ...) or a dict of tensors (called as model(**probe)); output: the model's output ->
    one scalar per probe, (P,) or (P, C) (default: dynamics.runs.outputs). overlap: record each step after the
    first on a background thread, from a copy of the model taken at the step (see Recorder.step); None (the
    default) overlaps for a model on the CPU of a machine with more than one core whose parameters and buffers
    take at most OVERLAP_MAX_BYTES (1 GiB: the copy doubles them)."""
    if (blocks is None) == (pattern is None):
        raise ValueError("pass exactly one of blocks=[modules] or pattern='regex over module names'")
    if pattern is not None:
        rx = re.compile(pattern)
        chosen = [m for n, m in model.named_modules() if n and rx.fullmatch(n)]
        if not chosen:
            raise ValueError(f"no module name of the model matches {pattern!r}; see model.named_modules()")
    else:
        chosen = list(blocks)
        if not chosen or not all(isinstance(m, torch.nn.Module) for m in chosen):
            raise ValueError("blocks must be a non-empty list of the model's residual-block modules")
    if len({id(m) for m in chosen}) != len(chosen):
        raise ValueError("a block is named twice; name each residual block once")
    probe_size(probe)
    return Recorder(model, chosen, probe, Path(out), name, act, g_scale, config or {}, flush_seconds, output,
                    overlap)


class Recorder:
    def __init__(self, model, blocks, probe, out, name, act, g_scale, config, flush_seconds, output=None,
                 overlap=None):
        self.model, self.blocks, self.probe, self.output = model, blocks, probe, output
        self.P = probe_size(probe)
        self.depth = len(blocks)
        self.act = (lambda h: P.phi(h, act)) if isinstance(act, str) else act
        self.g_scale = g_scale
        self.s0: list[P.ProbeState] | None = None
        self._prev: P.ProbeState | None = None  # the last recorded state, for h_step (stacked path) ...
        self._prev_layers: list[P.ProbeState] | None = None  # ... and per layer (layer-by-layer path)
        self._t0 = time.monotonic()
        root = store.check_writable(out)
        self.run_dir = root / store.check_run_id(name)
        if self.run_dir.exists():
            raise store.RunFormatError(f"{self.run_dir} already exists; choose another name")
        names = {id(m): n for n, m in model.named_modules()}
        self._names = ["input of " + names.get(id(blocks[0]), "block 1")] + [names.get(id(b), f"block {k + 1}")
                                                                               for k, b in enumerate(blocks)]
        self.meta = {"run_id": name, "kind": "imported", "config": {**config, "depth": self.depth},
                     "source": {"format": "record", "blocks": self.depth,
                                "act": act if isinstance(act, str) else
                                (getattr(act, "__name__", "callable") if act else None),
                                "output": getattr(output, "__name__", "callable") if output else "default"},
                     "probe_ids": list(range(self.P)), "quantiles": list(P.QUANTILES),
                     "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._flush_seconds = flush_seconds
        self.writer: store.RunWriter | None = None  # created at the first successful step
        self._hooks = ProbeHooks(model, blocks, self._names)
        self.overlap = overlap
        self._twin: ProbeHooks | None = None   # the model's private copy, recorded on the background thread
        self._twin_tensors: list[torch.Tensor] = []  # its parameters and buffers, in the model's order
        self._behind: Background | None = None

    def probe_pass(self) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, list[tuple[int, ...]]]:
        """h_0..h_L as (P, n_ℓ), ĝ_0..ĝ_L as (P, n_ℓ), f (P, C) and each layer's shape, from the user's model
        as it is now (eval mode; the model's modes are restored after)."""
        return self._hooks.run(self.probe, self.P, self.output, self.g_scale)

    def _states(self, h, g, f) -> list[P.ProbeState]:
        return [P.ProbeState(h=x[None], g_hat=y[None], phi_h=(self.act(x) if self.act else x)[None], a=None, f=f)
                for x, y in zip(h, g)]

    def step(self, step: int, **scalars: float) -> None:
        """Record every metric at `step` (an int ≥ 0); keywords are network scalars (layer −1), e.g. loss.
        Layers of one shape (the usual case) are measured together, stacked (L+1, P, n): a few batched calls
        instead of a few per layer; mixed shapes are measured layer by layer. Both give the same numbers.

        With overlap on, every step after the first copies the model's parameters and buffers into a private
        copy of the model (made once, at the second step) and returns; the probe pass and the metrics run on
        a background thread while the caller trains on. The numbers are those of the model at the call, as
        without overlap. The next `step`, `wait` or `close` waits for that work first and raises its error,
        if any; the first step always runs here, so a model the recorder cannot handle fails at once, and so
        does a step taken under torch.autocast (autocast is per thread)."""
        self.wait()
        scalars = {k: float(v) for k, v in scalars.items()}  # read now: a tensor passed in may change later
        if self.s0 is not None and self._twin is None and self._overlap_wanted():
            self._make_twin()
        if self._twin is None or _autocast_on() or not self._copy_to_twin():
            return self._record(self._hooks, step, scalars)
        self._behind.submit(self._record, self._twin, step, scalars)

    def wait(self) -> None:
        """Wait until every step called so far is recorded (in the run's buffers; they are written to disk at
        the next flush or at close); raise the error of a step recorded in the background."""
        if self._behind is not None:
            self._behind.wait()

    def _record(self, hooks: ProbeHooks, step: int, scalars: dict[str, float]) -> None:
        h, g, f, shapes = hooks.run(self.probe, self.P, self.output, self.g_scale)
        if self.s0 is None:
            self._start(step, shapes)
        if self.batched and len(set(shapes)) == 1:
            self._step_stacked(step, h, g, f)
        else:
            self._step_layers(step, h, g, f, shapes)
        for metric, value in scalars.items():
            self.writer.add_metrics(step, store.NETWORK_LAYER, metric, value)
        self.writer.meta["steps_done"] = int(step)
        self.writer.maybe_flush()

    def _overlap_wanted(self) -> bool:
        if self.overlap is not None:
            return bool(self.overlap)
        tensors = _state(self.model)
        return (usable_cores() > 1 and all(t.device.type == "cpu" for t in tensors)
                and sum(t.numel() * t.element_size() for t in tensors) <= OVERLAP_MAX_BYTES)

    def _make_twin(self) -> None:
        """The private copy of the model that background steps record from (copy.deepcopy, made without the
        recorder's hooks; the copy gets its own). A model that cannot be copied is recorded in the caller's
        thread, with a note in run.json."""
        path = {id(m): n for n, m in self.model.named_modules()}
        twin, why = None, "a block is not a submodule of the model"
        if all(id(b) in path for b in self.blocks):
            self._hooks.remove()
            try:
                twin = copy.deepcopy(self.model).eval()
            except Exception as e:  # e.g. a module holding a lock or an open file
                why = f"{type(e).__name__}: {e}"
            finally:
                self._hooks = ProbeHooks(self.model, self.blocks, self._names)
        if twin is None:
            self.overlap = False
            self.writer.meta.setdefault("notes", []).append(
                f"recorded in the training thread (no overlap): the model could not be copied ({why})")
            return
        self._twin = ProbeHooks(twin, [twin.get_submodule(path[id(b)]) for b in self.blocks], self._names)
        self._twin_tensors = _state(twin)
        self._behind = self._behind or Background("dynamics-record")

    def _copy_to_twin(self) -> bool:
        """Copy the model's parameters and buffers into the twin; False (and no twin any more) when they no
        longer match it one for one (the model was changed or moved): the step is then recorded here, and
        the next one makes a new copy."""
        src, dst = _state(self.model), self._twin_tensors
        if len(src) != len(dst) or any(a.shape != b.shape or a.dtype != b.dtype or a.device != b.device
                                       for a, b in zip(src, dst)):
            self._twin.remove()
            self._twin, self._twin_tensors = None, []
            return False
        with torch.no_grad():
            for a, b in zip(src, dst):
                b.copy_(a)
        return True

    batched = True  # False: the layer-by-layer path everywhere (the tests compare the two)

    def _step_stacked(self, step: int, h, g, f) -> None:
        """Every metric, kernel and quantile of all layers at once, on (L+1, P, n) stacks (as the trainer)."""
        H, G = torch.stack(h), torch.stack(g)
        s = P.ProbeState(h=H, g_hat=G, phi_h=self.act(H) if self.act else H, a=None, f=f)
        if self.s0 is None:
            self.s0 = s
        rows = []
        for name, fn in P.FUNCTIONS.items():
            if self.act is None and name in _PHI_METRICS:
                continue
            v = fn(s, self.s0, self.depth)
            if v is not None:
                rows.append((name, 0 if P.METRICS[name][1] == "0..L" else 1, v))
        if self._prev is not None:  # h_step, since the previous record
            rows.append(("h_step", 0, P.step_change(s, self._prev)))
        self._prev = s
        kern = {k: m for k, m in P.kernels(s).items() if k != "Phi" or self.act is not None}
        parts = [v.reshape(-1) for _, _, v in rows] + [m.reshape(-1) for m in kern.values()] + \
            [P.neuron_quantiles(s).reshape(-1)]
        flat = torch.cat([t.to(torch.float64) for t in parts]).cpu().numpy()  # one copy to the CPU
        w, pos = self.writer, 0
        for name, first, v in rows:
            k = v.numel()
            w.add_metrics(step, np.arange(first, first + k), name, flat[pos:pos + k])
            pos += k
        L1, Pn, nq = H.shape[0], self.P, len(P.QUANTILES)
        ii, jj = np.meshgrid(np.arange(Pn), np.arange(Pn), indexing="ij")
        for kind in kern:
            w.add(store.KERNELS, step=step, layer=np.repeat(np.arange(L1), Pn * Pn), kind=kind,
                  i=np.tile(ii.reshape(-1), L1), j=np.tile(jj.reshape(-1), L1), value=flat[pos:pos + L1 * Pn * Pn])
            pos += L1 * Pn * Pn
        w.add(store.NEURONS, step=step, layer=np.repeat(np.arange(L1), Pn * nq),
              probe=np.tile(np.repeat(np.arange(Pn), nq), L1),
              quantile=np.tile(np.array(P.QUANTILES, dtype=np.float32), L1 * Pn), value=flat[pos:])

    def _step_layers(self, step: int, h, g, f, shapes) -> None:
        """Layer by layer (widths or shapes that change from block to block)."""
        states = self._states(h, g, f)
        if self.s0 is None:
            self.s0 = states
        w = self.writer
        for name, fn in P.FUNCTIONS.items():
            if self.act is None and name in _PHI_METRICS:
                continue
            if P.METRICS[name][1] == "0..L":
                vals = [fn(s, s0, self.depth) for s, s0 in zip(states, self.s0)]
                if any(v is None for v in vals):
                    continue
                layers = np.arange(len(vals))
            else:  # per block, from h_ℓ and h_{ℓ−1}: only where the shape does not change
                pairs = [(k, P.ProbeState(h=torch.cat([states[k - 1].h, states[k].h]), g_hat=None, phi_h=None,
                                          a=None, f=f)) for k in range(1, len(states)) if shapes[k] == shapes[k - 1]]
                vals = [fn(s2, None, self.depth) for _, s2 in pairs]
                if not pairs or any(v is None for v in vals):
                    continue
                layers = np.array([k for k, _ in pairs])
            w.add_metrics(step, layers, name, torch.cat([v.reshape(1) for v in vals]).double().cpu().numpy())
        prev, self._prev_layers = self._prev_layers, states
        if prev is not None:  # h_step, layer by layer as the stacked path computes it
            vals = [P.step_change(s, p) for s, p in zip(states, prev)]
            w.add_metrics(step, np.arange(len(vals)), "h_step",
                          torch.cat([v.reshape(1) for v in vals]).double().cpu().numpy())
        Pn = self.P
        ii, jj = np.meshgrid(np.arange(Pn), np.arange(Pn), indexing="ij")
        for ell, s in enumerate(states):
            for kind, mat in P.kernels(s).items():
                if kind == "Phi" and self.act is None:
                    continue
                w.add(store.KERNELS, step=step, layer=ell, kind=kind, i=ii.reshape(-1), j=jj.reshape(-1),
                      value=mat.double().cpu().numpy().reshape(-1))
            q = P.neuron_quantiles(s).double().cpu().numpy()  # (1, P, Q)
            w.add(store.NEURONS, step=step, layer=ell, probe=np.repeat(np.arange(Pn), len(P.QUANTILES)),
                  quantile=np.tile(np.array(P.QUANTILES, dtype=np.float32), Pn), value=q.reshape(-1))

    def _start(self, step: int, shapes: list[tuple[int, ...]]) -> None:
        """The first successful step: the run directory, with each layer's module, shape and width."""
        widths = [int(np.prod(sh)) for sh in shapes]
        cfg = self.meta["config"]
        if len(set(widths)) == 1:
            cfg["width"] = widths[0]
        else:
            cfg["widths"] = widths
            changes = [k for k in range(1, len(shapes)) if shapes[k] != shapes[k - 1]]
            self.meta["notes"] = [f"diversity is not recorded at layer(s) {', '.join(map(str, changes))}: the "
                                  f"feature shape changes there"]
        self.meta["layers"] = [{"layer": k, "module": self._names[k], "shape": list(sh), "width": n,
                                "layout": _layout(sh)} for k, (sh, n) in enumerate(zip(shapes, widths))]
        self.meta["reference_step"] = int(step)
        if self.run_dir.exists():
            raise store.RunFormatError(f"{self.run_dir} already exists; choose another name")
        self.writer = store.RunWriter(self.run_dir, self.meta, flush_seconds=self._flush_seconds,
                                      flush_records=store.RECORDING_FLUSH_RECORDS)

    def close(self, status: str = "complete", error: str | None = None) -> None:
        """Wait for the background step, remove the hooks and finish the run (nothing is written when no step
        was recorded). A background step's error marks the run failed and is raised here."""
        raised, ours = None, status == "complete"  # the caller's own error goes first
        try:
            self.wait()
        except Exception as e:
            raised = e
            if status == "complete":
                status, error = "failed", f"{type(e).__name__}: {e}"
        for hooks in (self._hooks, self._twin):
            if hooks is not None:
                hooks.remove()
        self._twin, self._twin_tensors = None, []
        if self._behind is not None:
            self._behind.close()  # (waited for above: nothing is pending)
            self._behind = None
        if self.writer is not None and self.writer.meta["status"] == "running":
            self.writer.finish(status, wall_seconds=round(time.monotonic() - self._t0, 3),
                               g_scale=self.g_scale or "width", **({"error": error} if error else {}))
        if raised is not None and ours:
            raise raised

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("failed" if exc_type is not None else "complete",
                   f"{exc_type.__name__}: {exc}" if exc_type is not None else None)


def _state(model: torch.nn.Module) -> list[torch.Tensor]:
    """A model's parameters, then its buffers, in module order: a deep copy lists its own in the same order,
    so the two lists pair one for one."""
    return [*model.parameters(), *model.buffers()]


def _autocast_on() -> bool:
    """Autocast is on in the calling thread (it is per thread: a background step would run without it and so
    measure another precision; such steps are recorded in the caller's thread)."""
    return any(torch.is_autocast_enabled(d) for d in ("cpu", "cuda"))


def _layout(shape: tuple[int, ...]) -> str:
    """How the coordinates of one probe's feature are read: (n) features, (T, d) positions × features,
    (C, H, W) channels × positions (PyTorch's batch-first conventions)."""
    if len(shape) <= 1:
        return "features"
    if len(shape) == 2:
        return f"{shape[0]} positions × {shape[1]} features"
    return f"{shape[0]} channels × {int(np.prod(shape[1:]))} positions"
