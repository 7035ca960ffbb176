"""The training-time limit (NFD): a particle solver for depth-μP ResNets (one- or two-layer blocks, C ≥ 1
outputs, MSE or cross-entropy) trained by SGD, at infinite width on a depth grid of K blocks.
`solve_limit(cfg, ...)` takes the RunConfig of a finite run and returns tidy frames with the same metrics (plus
Monte-Carlo `stderr`); `dynamics.limit.run` writes them as a run of kind `limit`.

Derivation (one block, W = W_ℓ(0), branch multiplier b; the conditional-Gaussian representation of W's answers, with
particle averages for /n). A vector's coordinates are i.i.d. copies of a random variable, held as M particles. What
SGD has done with W is a list of forward queries u = φ(h_{ℓ−1}(x,s)) with answers Wu/√n and backward queries g =
ĝ_ℓ(x,s) with answers Wᵀg/√n. Keep orthonormal bases of both lists (|q|²/M = 1, Gram–Schmidt in the particle
average) and W's answers on them: Q_A, Y = W Q_A/√n and Q_B, X = Wᵀ Q_B/√n. Conditioning the Gaussian W on those
answers gives, for a new query u = Q_A a + r with a = Q_A·u/M and r ⊥ Q_A factored as r = Q_r R (R upper
triangular),

    W u/√n = Y a + [Π_B^⊥ ε + Q_B (X·Q_r/M)] R ,      ε: fresh i.i.d. N(0, 1) per particle and new direction,

i.e. regression on past answers + fresh noise + the transpose coupling Q_B (X·r/M), whose weights are particle
covariances of past backward answers with the new residual (the Tensor-Programs term Σ_j g_j E[∂u/∂Ẑ^{Wᵀg_j}],
by Stein's lemma). Wᵀg/√n is the same with (Q_A, Y) and (Q_B, X) swapped. `coupling="none"` drops the
coupling and the projection: the backward pass then queries an independent W̃(0), the `decoupled` net. SGD
adds ΔW_ℓ/√n = ηγ0 b Σ_{s,μ} χ_μ(s) ĝ_ℓ(x_μ,s) φ(h_{ℓ−1}(x_μ,s))ᵀ/n. With α, β the coordinates of
φ(h_{ℓ−1}(x_μ,s)) in Q_A and of ĝ_ℓ(x_μ,s) in Q_B, D = ηγ0 Σ χ β αᵀ gives ΔW u/√n = b Q_Bᵀ D a and
ΔWᵀg/√n = b Q_Aᵀ Dᵀ(Q_B·g/M); times the branch's b these are the limit's (ηγ0β²/K) drift sums.
U (rows in R^d) and v are carried per particle: h_0 = U x/√d, ĝ_L = v φ'(h_L) (v for a linear readout), ΔU =
ηγ0 Σ χ ĝ_0 xᵀ/√d, Δv = ηγ0 Σ χ φ(h_L), χ_μ = (y_μ − f_μ)/batch. The output is centred, f(x,t) =
mean[v(t)φ(h_L(x,t)) − v(0)φ(h_L(x,0))]/γ0: the limit has f(x,0) = 0, and centring removes O(M^-½) noise that
one-step differences would divide by η. With the projection Π_B^⊥, M particles sample a width-M network exactly
in law (apart from centring) at cost O(M (TP)² K) instead of O(M² TP K); the limit is M → ∞. Errors: R
independent replicas of M/R particles; value = replica mean, stderr = replica std/√R. Every replica draws its
noise in a fixed order and shape, so both couplings see the same ε (common random numbers).

C outputs: v is a C-vector per particle, f_c = mean[v_c φ(h_L)]/γ0 (centred), χ_μc = −∂loss/∂f_μc / batch
(readout.py). SGD only ever applies Wᵀ to the loss's own backward signal ĝ^χ(x_μ) = Σ_c χ_μc ĝ^c(x_μ) (the
backward pass is linear in its top signal v χ_μ), and the records need ĝ¹ (first output) at the probes; so
each step queries Nb = P columns (C = 1: ĝ¹ at every input, weighted by χ in the update, as before) or
Nb = Pp + P columns (C > 1: ĝ¹ at the probes on record steps, ĝ^χ at every input), never C·P.
Two-layer blocks a = W1 φ(h)/√n, h += b W2 φ(a)/√n: each W is its own `sampler.Matrix` (own histories, own D).
Backward: ĝ_a = φ'(a) ⊙ W2ᵀĝ_ℓ/√n, ĝ_{ℓ−1} = ĝ_ℓ + b φ'(h_{ℓ−1}) ⊙ W1ᵀĝ_a/√n; updates ΔW2/√n = ηγ0 b Σ χ ĝ_ℓ φ(a)ᵀ/n
and ΔW1/√n = K^α ηγ0 b Σ χ ĝ_a φ(h)ᵀ/n (the finite model's raw LR × L^α on the first inner layer, on the grid).
a_learn, the first inner layer's own feature learning, is the mean square over particles and probes of that
layer's drift ΔW1 φ(h)/√n = b Q_Bᵀ D a, the part of a that W1's update (not its input's movement) drives.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable

import torch
from torch import Tensor

from ..activations import phi, phi_prime
from ..config import RunConfig
from ..data import Dataset, load_task
from . import COUPLINGS, LimitError
from .cost import MAX_INPUTS
from .readout import loss_and_chi
from .records import LimitResult, Records
from .sampler import Matrix

__all__ = ["LimitError", "LimitResult", "COUPLINGS", "DTYPES", "check_covered", "plan_inputs",
           "estimate_bytes", "solve_limit"]

DTYPES = ("float64", "float32")


def check_covered(cfg: RunConfig, data: Dataset | None = None) -> None:
    """Raise LimitError for what the solver does not cover: param sp (one line, naming why)."""
    if cfg.param == "sp":
        raise LimitError("param=sp is not covered by the limit engine: its width limit is the lazy kernel "
                         "regime with a Gaussian-process f(0), not a particle average; use depth-mup, mup or plain")


def plan_inputs(cfg: RunConfig, n_train: int) -> tuple[list[int], list[Tensor]]:
    """(inputs, batches): the training indices involved (probes first, then every batch input of steps
    0..S, sorted) and the batch of each step, in `dynamics.train._batches` order (seed cfg.seed + 7919)."""
    from ..train import _batches  # lazily: only planning needs the trainer's batch order
    gen = torch.Generator().manual_seed(cfg.seed + 7919)
    it = _batches(cfg, n_train, gen)
    batches = [next(it).clone() for _ in range(cfg.steps + 1)]
    used = sorted(set(torch.cat(batches).tolist()) - set(range(cfg.probes)))
    return list(range(cfg.probes)) + used, batches


def backward_columns(inputs: int, probes: int, outputs: int) -> int:
    """Nb, the backward directions each matrix opens per step: P for C = 1, Pp + P for C > 1."""
    return inputs if outputs == 1 else probes + inputs


def estimate_bytes(particles: int, grid: int, steps: int, inputs: int, probes: int, replicas: int,
                   outputs: int = 1, block: int = 1, itemsize: int = 8) -> int:
    """Bytes the solver holds: per matrix (block per block) two M×T·P forward and two M×T·Nb backward
    histories and D (R×T·Nb×T·P), plus per-layer features and gradients of the current and initial step."""
    T, P, M, K = steps + 1, inputs, particles, grid
    Nb = backward_columns(inputs, probes, outputs)
    hist = block * K * (2 * M * T * (P + Nb) + replicas * T * T * P * Nb)
    live = ((K + 1) * M * (2 * P + Nb + 2 * probes) * block + 12 * M * (P + Nb) + M * outputs
            + (block - 1) * K * M * P)                                   # two-layer blocks: W1's ΔW φ/√n (a_learn)
    return itemsize * (hist + live)


def _available_bytes(dev: torch.device) -> int:
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def solve_limit(cfg: RunConfig, *, grid: int | None = None, particles: int = 4096, coupling: str = "full",
                seed: int = 0, device: str = "cpu", replicas: int = 8, center: bool = True,
                dtype: str = "float64", on_step: Callable[[int, float], None] | None = None) -> LimitResult:
    """Infinite-width SGD dynamics of cfg's network on a grid of K = grid (default cfg.depth) blocks
    (derivation in the module docstring). The returned frames use layer indices on the K grid: store them
    with depth = K so τ = layer/depth holds. Step 0 is exact (init_kernels; f = 0); later steps are particle
    averages with Monte-Carlo stderr. center=False keeps f(0) ≠ 0, which makes every replica an exact sample
    of a width-M/R network (a test oracle). dtype float32 halves memory and is faster on GPUs (docs/limit.md,
    "Precision and device", says what it costs in accuracy). Raises LimitError before any work when the
    setting is not covered or the histories would not fit in memory."""
    K = cfg.depth if grid is None else int(grid)
    if K < 1:
        raise LimitError(f"grid must be a positive number of blocks; got {K}")
    if coupling not in COUPLINGS:
        raise LimitError(f"coupling={coupling!r} is not supported; choose one of {', '.join(COUPLINGS)}")
    if dtype not in DTYPES:
        raise LimitError(f"dtype={dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    if replicas < 2 or particles // replicas < 8:
        raise LimitError(f"need at least 2 replicas of 8 particles; got particles={particles}, replicas={replicas}")
    cfg = cfg if K == cfg.depth else dataclasses.replace(cfg, depth=K)
    check_covered(cfg)
    from ..train import resolve_device
    dev = resolve_device(device)
    data, _ = load_task(cfg)
    check_covered(cfg, data)
    inputs, batches = plan_inputs(cfg, len(data))
    R, m = replicas, particles // replicas
    M, P, Pp, T, C = R * m, len(inputs), cfg.probes, cfg.steps + 1, data.n_outputs
    if P > MAX_INPUTS:
        raise LimitError(f"the limit engine conditions on every input it sees: this run involves {P} distinct "
                         f"training inputs (train_size={cfg.train_size}, batch={cfg.batch}, steps={cfg.steps}); "
                         f"it covers up to {MAX_INPUTS}: rerun the finite run with a smaller --train-size "
                         f"(8-64) or fewer --steps")
    need = estimate_bytes(M, K, cfg.steps, P, Pp, R, C, cfg.block, 8 if dtype == "float64" else 4)
    have = _available_bytes(dev)
    if need > 0.8 * have:
        raise LimitError(f"the limit needs about {need / 2**30:.1f} GiB for M·K·T·P = {M}·{K}·{T}·{P} history "
                         f"entries but {dev.type} has {have / 2**30:.1f} GiB available; lower --particles, "
                         f"--grid, --steps or the number of inputs (train_size, probes)")
    res = _Solver(cfg, data, inputs, batches, R, m, coupling, seed, dev, center, getattr(torch, dtype)).run(on_step)
    Nb = backward_columns(P, Pp, C)
    if m < T * (P + Nb):
        res.info["warning"] = (f"{m} particles per replica against T·(P + Nb) = {T * (P + Nb)} history "
                               f"directions per matrix: each replica is an exact width-{m} network whose explored "
                               f"subspace fills much of R^{m}, so expect its O(1/{m}) finite-width bias; raise "
                               f"--particles to at least {T * (P + Nb) * R} for a closer limit")
    return res


class _Solver:
    def __init__(self, cfg, data, inputs, batches, R, m, coupling, seed, dev, center, dtype):
        self.cfg, self.R, self.m, self.dev, self.center = cfg, R, m, dev, center
        kw = dict(dtype=dtype, device=dev)
        self.kw = kw
        self.X64 = data.x[inputs].double()                               # (P, d) as given (the exact step 0)
        self.X = self.X64.to(**kw)
        self.y = data.y[inputs].to(**kw)                                 # (P, C) targets (one-hot for xent)
        self.inputs, self.P, self.Pp, self.C = inputs, len(inputs), cfg.probes, data.n_outputs
        self.Nb = backward_columns(self.P, self.Pp, self.C)
        pos = {i: k for k, i in enumerate(inputs)}
        self.masks = [torch.zeros(self.P, **kw).index_fill_(0, torch.tensor([pos[int(i)] for i in b],
                                                                           device=dev), 1.0) for b in batches]
        self.bsz = cfg.batch_size
        K, T = cfg.depth, cfg.steps + 1
        self.K, self.T = K, T
        self.b = {"depth-mup": cfg.beta / math.sqrt(K), "mup": cfg.beta, "plain": 1.0}[cfg.param]
        self.skip = cfg.param != "plain"
        self.lr = cfg.lr * cfg.gamma0                                     # ηγ0: every drift's prefactor
        self.gen = torch.Generator(device=dev).manual_seed(seed)
        d = self.X.shape[1]
        self.U = torch.randn(R, m, d, generator=self.gen, **kw)          # raw input rows, N(0, 1)
        self.v = torch.randn(R, m, self.C, generator=self.gen, **kw)     # raw readout, N(0, 1)
        coupled, trained = coupling == "full", set(cfg.trained)
        self.coupled = coupled
        inner = K ** cfg.inner_lr_exponent if cfg.block == 2 else 1.0    # first inner layer's LR × L^α
        self.W1 = [Matrix(R, m, T, self.P, self.Nb, self.lr * inner, coupled, self.b, kw,
                          track_learning=cfg.block == 2) for _ in range(K)]
        self.W2 = ([Matrix(R, m, T, self.P, self.Nb, self.lr, coupled, self.b, kw) for _ in range(K)]
                   if cfg.block == 2 else None)
        self.trained = trained

    def _eps(self, cols: int) -> Tensor:
        return torch.randn(self.R, self.m, cols, generator=self.gen, **self.kw)

    def forward(self):
        """Features h_0..h_K (K+1, R, m, P), readout features ψ, inner pre-activations a (K, ...) or None
        with their update-driven parts ΔW_ℓ,1 φ(h_ℓ−1)/√n (K, R, m, Pp at the probes) or None, and each
        matrix's forward coordinates α."""
        act, P = self.cfg.act, self.P
        h = self.U @ self.X.T / math.sqrt(self.X.shape[1])               # (R, m, P)
        hs, a_s, learned, alphas = [h], [], [], []
        for ell in range(self.K):
            z, al = self.W1[ell].forward(phi(h, act), self._eps(P))
            alphas.append([al])
            if self.W2 is not None:
                a_s.append(z)
                learned.append(self.W1[ell].learned[..., :self.Pp])
                z, al2 = self.W2[ell].forward(phi(z, act), self._eps(P))
                alphas[-1].append(al2)
            h = (h if self.skip else 0.0) + self.b * z
            hs.append(h)
        psi = phi(h, act) if self.cfg.readout == "phi" else h
        inner = (torch.stack(a_s), torch.stack(learned)) if a_s else None
        return torch.stack(hs), psi, inner, alphas

    def top(self, hs: Tensor, chi: Tensor, record: bool) -> Tensor:
        """ĝ_K columns (R, m, Nb): v_1 φ'(h_K) at every input (C = 1), or [v_1 φ'(h_K) at the probes on record
        steps (else 0), (v χ_μ) φ'(h_K) at every input] (C > 1)."""
        d = phi_prime(hs[-1], self.cfg.act) if self.cfg.readout == "phi" else torch.ones_like(hs[-1])
        if self.C == 1:
            return self.v * d
        probe = self.v[..., :1] * d[..., :self.Pp] * (1.0 if record else 0.0)
        return torch.cat([probe, (self.v @ chi.mT) * d], dim=-1)

    def weights(self, chi: Tensor) -> Tensor:
        """(R, Nb, P): how much of backward column j enters the update with input μ (see Matrix.update)."""
        if self.C == 1:
            return torch.diag_embed(chi[..., 0])
        w = torch.zeros(self.R, self.Nb, self.P, **self.kw)
        w[:, self.Pp:] = torch.eye(self.P, **self.kw)
        return w

    def backward(self, hs: Tensor, a_s: Tensor | None, g: Tensor):
        """ĝ_0..ĝ_K (K+1, R, m, Nb) from the top columns g, and each matrix's backward coordinates β."""
        act, Nb = self.cfg.act, self.Nb
        gs, betas = [g], [None] * self.K
        for ell in reversed(range(self.K)):
            if self.W2 is not None:
                msg2, be2 = self.W2[ell].backward(g, self._eps(Nb))
                ga = self._at_inputs(phi_prime(a_s[ell], act)) * msg2   # ĝ_a = φ'(a) ⊙ W2ᵀĝ/√n
                msg, be1 = self.W1[ell].backward(ga, self._eps(Nb))
                betas[ell] = [be1, be2]
            else:
                msg, be1 = self.W1[ell].backward(g, self._eps(Nb))
                betas[ell] = [be1]
            g = (g if self.skip else 0.0) + self.b * self._at_inputs(phi_prime(hs[ell], act)) * msg
            gs.append(g)
        return torch.stack(gs[::-1]), betas

    def _at_inputs(self, x: Tensor) -> Tensor:
        """A per-input factor (R, m, P) laid out on the backward columns (R, m, Nb)."""
        if self.Nb == self.P:
            return x
        return torch.cat([x[..., :self.Pp], x], dim=-1)

    def output(self, psi: Tensor) -> Tensor:
        """Centred outputs f (R, P, C) = mean over particles of [v ψ − v(0) ψ(0)] / γ0."""
        f = psi.mT @ self.v                                               # (R, P, C)
        if self.center:
            f = f - self.f0_sum
        return f / (self.m * self.cfg.gamma0)

    def update(self, chi: Tensor, psi: Tensor, gs: Tensor, alphas, betas) -> None:
        """One SGD step: chi (R, P, C) = −∂loss/∂f, zero off the batch."""
        w = self.weights(chi)                                             # (R, Nb, P)
        if "readout" in self.trained:
            self.v = self.v + self.lr * psi @ chi
        if "input" in self.trained:
            self.U = self.U + self.lr * (gs[0] @ w) @ self.X / math.sqrt(self.X.shape[1])
        if "hidden" in self.trained:
            for ell in range(self.K):
                mats = [self.W1[ell]] + ([self.W2[ell]] if self.W2 is not None else [])
                for mat, al, be in zip(mats, alphas[ell], betas[ell]):
                    mat.update(al, be, w)

    def run(self, on_step) -> LimitResult:
        cfg, rec = self.cfg, Records(self)
        fs, status = [], "complete"
        for t in range(self.T):
            hs, psi, inner, alphas = self.forward()
            a_s = inner[0] if inner is not None else None
            if t == 0:
                self.f0_sum = psi.mT @ self.v
            f = self.output(psi)                                          # (R, P, C)
            fs.append(f)
            loss, chi = loss_and_chi(cfg.loss, f, self.y, self.masks[t], self.bsz)
            rec.scalar(t, "loss", loss)
            if not bool(torch.isfinite(loss).all()):
                status = "diverged"
                break
            record = t % cfg.record_every == 0 or t == cfg.steps
            if record or t < cfg.steps:
                gs, betas = self.backward(hs, a_s, self.top(hs, chi, record))
            if record:
                rec.record(t, hs, gs, f, inner)
            if t < cfg.steps and cfg.trained:
                self.update(chi, psi, gs, alphas, betas)
            if on_step is not None:
                on_step(t, float(loss.mean()))
        return rec.result(torch.stack(fs).cpu(), status)
