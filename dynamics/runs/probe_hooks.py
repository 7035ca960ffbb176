"""The probe pass of `dynamics.record` through one model: hooks on its residual blocks, and the pass itself.

A `ProbeHooks` object owns the hooks it put on one model's blocks. They do nothing outside its own pass (the
user's training runs untouched); during it, the first block's pre-hook takes h_0 (its input, made a leaf that
requires a gradient when it is the raw input) and each block's hook takes h_ℓ (its output), and both hand the
block a copy, so that in-place operations later in the network cannot change what was taken. `run` calls the
model on the probe in eval mode, backpropagates one scalar per probe to every h_ℓ, restores the modes and
returns h_ℓ and ĝ_ℓ = g_scale_ℓ·∂f/∂h_ℓ flattened per probe. The recorder keeps one for the user's model and,
when it overlaps recording with training, another for its private copy (dynamics.runs.recorder).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .outputs import RecordError, block_tensor, call, pick_scalar

__all__ = ["ProbeHooks"]


class ProbeHooks:
    def __init__(self, model: torch.nn.Module, blocks: list[torch.nn.Module], names: list[str]):
        self.model, self.blocks, self.names = model, blocks, names
        self._captured: list[torch.Tensor] | None = None
        self._handles = [blocks[0].register_forward_pre_hook(self._pre_hook, with_kwargs=True)]
        self._handles += [b.register_forward_hook(self._hook) for b in blocks]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _pre_hook(self, module, args, kwargs):
        if self._captured is None or self._captured:
            return None
        if args and isinstance(args[0], torch.Tensor):
            x, put = args[0], lambda v: ((v, *args[1:]), kwargs)
        else:
            key = "hidden_states" if isinstance(kwargs.get("hidden_states"), torch.Tensor) else next(
                (k for k, v in kwargs.items() if isinstance(v, torch.Tensor)), None)
            if key is None:
                raise RecordError("the first block was called without a tensor input; name the blocks whose "
                                  "first argument is the hidden state")
            x, put = kwargs[key], lambda v: (args, {**kwargs, key: v})
        if not x.requires_grad:  # the raw input: make it a leaf so ∂f/∂h_0 exists
            x = x.detach().requires_grad_(True)
        self._captured.append(x)
        return put(x.clone())  # the block gets a copy: in-place ops inside it cannot alter h_0

    def _hook(self, module, args, output):
        if self._captured is None:
            return None
        h = block_tensor(output)
        self._captured.append(h)
        if isinstance(output, torch.Tensor):  # later in-place ops (ReLU(inplace=True)) act on a copy
            return h.clone()
        if isinstance(output, tuple) and output[0] is h:
            return (h.clone(), *output[1:])
        return None

    def run(self, probe: Any, P: int, output: Callable[[Any], torch.Tensor] | None, g_scale: float | None
            ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, list[tuple[int, ...]]]:
        """h_0..h_L as (P, n_ℓ), ĝ_0..ĝ_L as (P, n_ℓ), f (P, C) and each layer's shape (eval mode; the model's
        modes are restored after)."""
        # eval mode for the pass (model.eval(): a module's own train() override runs), then back: only the
        # modules that were training, set directly (without nn.Module.__setattr__'s lookups)
        training = [m for m in self.model.modules() if m.training]
        self.model.eval()
        self._captured = []
        depth = len(self.blocks)
        try:
            with torch.enable_grad():
                f, scalar = pick_scalar(call(self.model, probe), probe, output)
                hs = self._captured
                if len(hs) != depth + 1:
                    raise RecordError(f"expected {depth} block calls in one forward, saw {len(hs) - 1}; "
                                      "name each residual block once")
                for k, h in enumerate(hs):
                    if h.dim() < 1 or h.shape[0] != P:
                        raise RecordError(f"{self.names[k]} has shape {tuple(h.shape)}: its first dimension must be "
                                          f"the probe batch (P = {P}); e.g. build attention layers with "
                                          f"batch_first=True")
                grads = torch.autograd.grad(scalar.sum(), hs, allow_unused=True)
        finally:
            self._captured = None
            for m in training:
                object.__setattr__(m, "training", True)
        shapes = [tuple(h.shape[1:]) for h in hs]
        up = (lambda t: t.float()) if hs[0].dtype in (torch.float16, torch.bfloat16) else (lambda t: t)  # stats
        h = [up(t.detach().reshape(P, -1)) for t in hs]
        g = [(torch.zeros_like(t) if d is None else up(d).reshape(t.shape)) * (g_scale or t.shape[-1])
             for t, d in zip(h, grads)]
        return h, g, f.detach(), shapes
