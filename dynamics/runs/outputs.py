"""What `dynamics.record` backpropagates, and how it reads the blocks' outputs, for any model's output type.

The recorder needs one scalar f_μ per probe μ; ĝ_ℓ = n_ℓ · ∂(Σ_μ f_μ)/∂h_ℓ(x_μ). In eval mode the probes do not
interact (no batch statistics), so the sum gives each probe its own gradient. `output=` (a callable: the model's
output -> a tensor of shape (P,) or (P, C)) chooses f; with (P, C), f is column 0. The default:

- a tensor of shape (P, …): flattened to (P, C); f_μ = its first coordinate (a classifier's first logit, a
  regressor's first output; what our own ResNets record);
- a tuple or list: its first element, read by these rules;
- a dict, a Hugging Face ModelOutput (a dict subclass) or any object with `.logits`: its `logits`. Logits of
  shape (P, T, V) are a language model's: f_μ = mean over positions t < T−1 of the next-token loss
  −log softmax(logits[μ, t])[x_μ,t+1], the probe's own tokens as labels (positions whose next token is masked
  out by the probe's `attention_mask` are left out). Under causal attention this gives every position but
  the last (which has no next token) a gradient; the first logit alone would reach position 0 only. Token
  logits without token ids are refused;
- anything else is refused with one line that says to pass `output=`.

Blocks may return a tensor, a tuple/list (its first element is the residual stream, as in nn.TransformerEncoder
layers written by hand and Hugging Face blocks) or a dict / ModelOutput (its first tensor value).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch
import torch.nn.functional as F

__all__ = ["RecordError", "pick_scalar", "block_tensor", "next_token_loss", "probe_size", "call"]


class RecordError(RuntimeError):
    """record() cannot handle the model as given; the one-line message says what to pass instead."""


def probe_size(probe: Any) -> int:
    """P: the probe batch's first dimension (a tensor, or a dict of tensors such as a tokenizer's output)."""
    if isinstance(probe, torch.Tensor) and probe.dim() >= 1:
        return int(probe.shape[0])
    if isinstance(probe, Mapping) and probe and all(isinstance(v, torch.Tensor) for v in probe.values()):
        sizes = {int(v.shape[0]) for v in probe.values()}
        if len(sizes) == 1:
            return sizes.pop()
    raise RecordError("probe must be a tensor of shape (P, ...) or a dict of tensors sharing their first "
                      "dimension P (e.g. a tokenizer's input_ids and attention_mask)")


def call(model: torch.nn.Module, probe: Any) -> Any:
    """model(probe), or model(**probe) for a dict of inputs."""
    return model(**probe) if isinstance(probe, Mapping) else model(probe)


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(P, T, V) logits, (P, T) token ids -> (P,): mean over t < T−1 of −log softmax(logits[:, t])[ids[:, t+1]],
    over the positions whose next token is kept by `mask` (P, T) when given."""
    P_, T, V = logits.shape
    if logits.dtype in (torch.float16, torch.bfloat16):  # half-precision logits: the loss in float32
        logits = logits.float()
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1).long(),
                          reduction="none").reshape(P_, T - 1)
    w = torch.ones_like(nll) if mask is None else mask[:, 1:].to(nll.dtype)
    return (nll * w).sum(1) / w.sum(1).clamp_min(1)


def _logits(out: Any) -> Any:
    if isinstance(out, Mapping):
        if "logits" not in out:
            raise RecordError(f"the model returned a {type(out).__name__} without 'logits' (keys: "
                              f"{', '.join(map(str, list(out)[:8]))}); pass output=lambda out: <one scalar "
                              f"per probe, shape (P,)>")
        return out["logits"]
    return out.logits


def default_scalar(out: Any, probe: Any) -> torch.Tensor:
    """The documented default (module docstring): (P,) or (P, C)."""
    if isinstance(out, (tuple, list)) and out:
        return default_scalar(out[0], probe)
    if isinstance(out, Mapping) or (not isinstance(out, torch.Tensor) and hasattr(out, "logits")):
        logits = _logits(out)
        ids = probe.get("input_ids") if isinstance(probe, Mapping) else probe
        if isinstance(logits, torch.Tensor) and logits.dim() == 3:
            if not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point or ids.shape != logits.shape[:2]:
                raise RecordError(f"token logits of shape {tuple(logits.shape)} but the probe holds no token ids "
                                  f"of shape {tuple(logits.shape[:2])}; pass output=callable")
            mask = probe.get("attention_mask") if isinstance(probe, Mapping) else None
            return next_token_loss(logits, ids, mask)
        return default_scalar(logits, probe)
    if isinstance(out, torch.Tensor) and out.dim() >= 1:
        return out
    raise RecordError(f"record() cannot read a model output of type {type(out).__name__}; pass output=callable "
                      f"(the model's output -> one scalar per probe, shape (P,))")


def pick_scalar(out: Any, probe: Any, output: Callable[[Any], torch.Tensor] | None) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    """(f as (P, C) for the run, the (P,) scalars to backpropagate) from the model's output."""
    P_ = probe_size(probe)
    f = output(out) if output is not None else default_scalar(out, probe)
    who = "output=" if output is not None else "the default output rule"
    if not isinstance(f, torch.Tensor) or f.dim() < 1 or f.shape[0] != P_:
        got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise RecordError(f"{who} gave {got}; expected a tensor of shape (P,) or (P, C) with P = {P_} probes")
    if not f.requires_grad:
        raise RecordError(f"{who} gave a tensor that does not depend on the blocks (no gradient); compute it "
                          f"from the model's output")
    f2 = f.reshape(P_, -1)
    return f2, f2[:, 0]


def block_tensor(output: Any) -> torch.Tensor:
    """The residual stream in a block's output: the tensor, a tuple's first element, a dict's first tensor."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, Mapping):
        for v in output.values():
            if isinstance(v, torch.Tensor):
                return v
    raise RecordError(f"a block returned {type(output).__name__}; a block must return a tensor, a tuple whose "
                      f"first element is the hidden state, or a dict holding it")
