"""The metric names of docs/theory.md §2: name -> (human caption, layers it lives on).

This is the one list of names used as Parquet values, CLI choices, page labels and test names. It imports
nothing heavy, so the dashboard can label metrics without loading torch; `probes.py` holds the functions
that compute them, keyed by the same names.
"""
from __future__ import annotations

# layers: "0..L" (features and gradients), "1..L" (per block), "net" (network scalars, layer −1)
METRICS: dict[str, tuple[str, str]] = {
    "h_sq": ("feature second moment |h_ℓ|²/n", "0..L"),
    "phi_sq": ("post-activation second moment |φ(h_ℓ)|²/n", "0..L"),
    "g_sq": ("gradient second moment |ĝ_ℓ|²/n", "0..L"),
    "h_move": ("feature movement |h_ℓ(t)−h_ℓ(0)|²/n", "0..L"),
    "h_step": ("feature change since the previous record |h_ℓ(t)−h_ℓ(t′)|²/n (each step when recorded every step)",
               "0..L"),
    "g_move": ("gradient movement |ĝ_ℓ(t)−ĝ_ℓ(0)|²/n", "0..L"),
    "fg_cov": ("feature–gradient covariance φ(h_ℓ)·ĝ_ℓ/n", "0..L"),
    "fg_eigmin": ("smallest eigenvalue of the joint covariance of [φ(h_ℓ(x)), ĝ_ℓ(x)] over the probes (2P×2P)",
                  "0..L"),
    "diversity": ("layer increment L·|h_ℓ−h_{ℓ−1}|²/n", "1..L"),
    "a_move": ("inner feature movement |a_ℓ(t)−a_ℓ(0)|²/n (two-layer blocks)", "1..L"),
    "a_learn": ("inner layer's own feature learning |ΔW_ℓ,1(t)·φ(h_ℓ−1)/√n|²/n (two-layer blocks)", "1..L"),
    "coupling_fwd": ("forward transpose coupling: the message's part along past backward vectors "
                     "(docs/theory.md §5)", "1..L"),
    "coupling_bwd": ("backward transpose coupling: the message's part along past forward inputs "
                     "(docs/theory.md §5)", "1..L"),
    "coupling_fwd_frac": ("forward coupling as a fraction of the whole message", "1..L"),
    "coupling_bwd_frac": ("backward coupling as a fraction of the whole message", "1..L"),
    "coupling_acc": ("forward coupling accumulated on the residual stream up to block ℓ (docs/theory.md §5)",
                     "1..L"),
    "coupling_fwd_chance": ("chance level of coupling_fwd (independent matrix)", "1..L"),
    "coupling_bwd_chance": ("chance level of coupling_bwd (independent matrix)", "1..L"),
    "coupling_acc_chance": ("chance level of coupling_acc: the same accumulation over independent matrices, "
                            "β²/L·Σ_{k≤ℓ} coupling_fwd_chance(k)", "1..L"),
    "loss": ("training loss on the step's batch", "net"),
    "probe_loss": ("loss on the probe set", "net"),
    "test_loss": ("loss on the held-out test set", "net"),
    "grad_norm": ("norm of the raw-parameter gradient on the step's batch", "net"),
}


def measured_exactly(config: dict, window: int | None) -> bool:
    """Whether a run's recorded coupling is the exact split of what SGD applied W(0) to (dynamics.coupling_tracker):
    the probes are the whole training set, trained full-batch, recorded every step, and the history window holds
    every record; otherwise it is a probe proxy. `config` is run.json's config, `window` its coupling.window."""
    c = config or {}
    try:
        records = int(c["steps"]) // int(c["record_every"]) + 2
        return (c.get("batch") == "full" and int(c["probes"]) >= int(c["train_size"]) and int(c["record_every"]) == 1
                and window is not None and int(window) >= records - 1)
    except (KeyError, TypeError, ValueError):
        return False
