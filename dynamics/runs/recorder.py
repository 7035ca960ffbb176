"""`dynamics.record(model, ...)`: record our per-layer metrics on a user's own PyTorch residual network.

The user names the residual blocks (a list of modules, or a regex over `model.named_modules()` names); at
the steps the user chooses (`rec.step(step)`), the recorder runs the probe batch through the model in eval
mode with forward hooks on those blocks, takes h_0 = the first block's input and h_ℓ = block ℓ's output
(flattened per probe: (P, n)), backpropagates the first output coordinate to every h_ℓ, and scales it as ĝ_ℓ =
g_scale · ∂f₁/∂h_ℓ (default g_scale = n, the μP normalisation γ0·n with γ0 = 1; pass √n for a standard
parametrization). The metrics, kernels and neuron quantiles are then the very functions of dynamics.probes
(FUNCTIONS, kernels, neuron_quantiles), so the names and formulas are those of our own runs. φ is unknown in
general: phi_sq, fg_cov, fg_eigmin and the Phi kernel are recorded only when `act` is given (one of our activation
names or a callable). h_move and g_move are relative to the first recorded step.

The run is of kind `imported` (source "record" in run.json): its numbers are ours, but its config is not a
RunConfig (the architecture is the user's), so commands that rebuild a network from a config
(`limit --like`) must not treat it as one of our finite runs. Network scalars (loss, ...) can be passed as
keywords to `step`. Files are flushed like the trainer's (atomic, throttled); leaving the `with` block or
calling `close()` marks the run complete (failed if the block raised).

    rec = dynamics.record(model, blocks=model.blocks, probe=x[:8], out="runs/", name="my-resnet")
    with rec:
        for t in range(101):
            if t % 10 == 0:
                rec.step(t, loss=loss.item())
            ...  # the user's own training step
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from .. import probes as P
from . import store

__all__ = ["record", "Recorder"]

_PHI_METRICS = ("phi_sq", "fg_cov", "fg_eigmin")


def record(model: torch.nn.Module, *, probe: torch.Tensor, out: str | Path, name: str,
           blocks: Iterable[torch.nn.Module] | None = None, pattern: str | None = None,
           act: str | Callable[[torch.Tensor], torch.Tensor] | None = None, g_scale: float | None = None,
           config: dict | None = None, flush_seconds: float = 30.0) -> "Recorder":
    """Attach a Recorder to `model`; see the module docstring. Exactly one of `blocks` and `pattern`."""
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
    return Recorder(model, chosen, probe, Path(out), name, act, g_scale, config or {}, flush_seconds)


class Recorder:
    def __init__(self, model, blocks, probe, out, name, act, g_scale, config, flush_seconds):
        self.model, self.blocks, self.probe = model, blocks, probe
        self.depth = len(blocks)
        self.act = (lambda h: P.phi(h, act)) if isinstance(act, str) else act
        self.g_scale = g_scale
        self.s0: P.ProbeState | None = None
        self._captured: list[torch.Tensor] | None = None
        self._t0 = time.monotonic()
        root = store.check_writable(out)
        run_dir = root / store.check_run_id(name)
        if run_dir.exists():
            raise store.RunFormatError(f"{run_dir} already exists; choose another name")
        meta = {"run_id": name, "kind": "imported", "config": {**config, "depth": self.depth},
                "source": {"format": "record", "blocks": self.depth, "act": act if isinstance(act, str) else
                           (getattr(act, "__name__", "callable") if act else None)},
                "probe_ids": list(range(probe.shape[0])), "quantiles": list(P.QUANTILES),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.writer = store.RunWriter(run_dir, meta, flush_seconds=flush_seconds)
        self.run_dir = run_dir
        self._handles = [blocks[0].register_forward_pre_hook(self._pre_hook)]
        self._handles += [b.register_forward_hook(self._hook) for b in blocks]

    # hooks: active only during the recorder's own probe pass, so the user's training is untouched
    def _pre_hook(self, module, args):
        if self._captured is None or self._captured:
            return None
        x = args[0]
        if not x.requires_grad:  # the raw input: make it a leaf so ∂f/∂h_0 exists
            x = x.detach().requires_grad_(True)
        self._captured.append(x)
        return (x, *args[1:])

    def _hook(self, module, args, output):
        if self._captured is not None:
            self._captured.append(output[0] if isinstance(output, (tuple, list)) else output)

    def probe_state(self) -> P.ProbeState:
        """h_0..h_L and ĝ_0..ĝ_L on the probe batch (eval mode; the model's modes are restored after)."""
        modes = [m.training for m in self.model.modules()]
        self.model.eval()
        self._captured = []
        try:
            with torch.enable_grad():
                f = self.model(self.probe)
                f = (f[0] if isinstance(f, (tuple, list)) else f).reshape(self.probe.shape[0], -1)  # (P, C)
                hs = self._captured
                if len(hs) != self.depth + 1:
                    raise RuntimeError(f"expected {self.depth} block calls in one forward, saw {len(hs) - 1}; "
                                       "name each residual block once")
                grads = torch.autograd.grad(f[:, 0].sum(), hs, allow_unused=True)
        finally:
            self._captured = None
            for m, mode in zip(self.model.modules(), modes):
                m.training = mode
        P_ = self.probe.shape[0]
        h = torch.stack([t.detach().reshape(P_, -1) for t in hs])  # (L+1, P, n)
        g = torch.stack([torch.zeros_like(t) if d is None else d for t, d in zip(hs, grads)])
        g = g.reshape(h.shape) * (self.g_scale or h.shape[-1])     # (L+1, P, n) ĝ
        phi_h = self.act(h) if self.act else h                    # placeholder when φ is unknown
        return P.ProbeState(h=h, g_hat=g, phi_h=phi_h, a=None, f=f.detach())

    def step(self, step: int, **scalars: float) -> None:
        """Record every metric at `step` (an int ≥ 0); keywords are network scalars (layer −1), e.g. loss."""
        s = self.probe_state()
        if self.s0 is None:
            self.s0 = s
            self.writer.meta["reference_step"] = int(step)
        w = self.writer
        for metric, (values, first) in P.layer_metrics(s, self.s0, self.depth).items():
            if self.act is None and metric in _PHI_METRICS:
                continue
            v = values.double().cpu().numpy()
            w.add_metrics(step, np.arange(first, first + v.size), metric, v)
        for metric, value in scalars.items():
            w.add_metrics(step, store.NETWORK_LAYER, metric, float(value))
        L1, Pn = s.h.shape[0], s.h.shape[1]
        ii, jj = np.meshgrid(np.arange(Pn), np.arange(Pn), indexing="ij")
        for kind, mat in P.kernels(s).items():
            if kind == "Phi" and self.act is None:
                continue
            w.add(store.KERNELS, step=step, layer=np.repeat(np.arange(L1), Pn * Pn), kind=kind,
                  i=np.tile(ii.reshape(-1), L1), j=np.tile(jj.reshape(-1), L1),
                  value=mat.double().cpu().numpy().reshape(-1))
        q = P.neuron_quantiles(s).double().cpu().numpy()  # (L+1, P, Q)
        nq = len(P.QUANTILES)
        w.add(store.NEURONS, step=step, layer=np.repeat(np.arange(L1), Pn * nq),
              probe=np.tile(np.repeat(np.arange(Pn), nq), L1),
              quantile=np.tile(np.array(P.QUANTILES, dtype=np.float32), L1 * Pn), value=q.reshape(-1))
        w.meta["steps_done"] = int(step)
        w.meta["config"]["width"] = int(s.h.shape[-1])
        w.maybe_flush()

    def close(self, status: str = "complete") -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if self.writer.meta["status"] == "running":
            self.writer.finish(status, wall_seconds=round(time.monotonic() - self._t0, 3),
                               g_scale=self.g_scale or "width")

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("failed" if exc_type is not None else "complete")
