"""The training-time limit (NFD, docs/theory.md §6): a particle solver for one-layer-block ResNets trained by SGD on
MSE with a scalar output, at infinite width on a depth grid of K blocks. `solve_limit(cfg, ...)` takes the
RunConfig of a finite run and returns tidy frames with the same metrics (plus Monte-Carlo `stderr`);
`dynamics.limit.run` writes them as a run of kind `limit`.

Derivation (one block, W = W_ℓ(0), branch multiplier b; docs/theory.md §5 with particle averages for /n). A vector's
coordinates are i.i.d. copies of a random variable, held as M particles. What SGD has done with W is a list
of forward queries u = φ(h_{ℓ−1}(x,s)) with answers Wu/√n and backward queries g = ĝ_ℓ(x,s) with answers
Wᵀg/√n. Keep orthonormal bases of both lists (|q|²/M = 1, Gram–Schmidt in the particle average) and W's
answers on them: Q_A, Y = W Q_A/√n and Q_B, X = Wᵀ Q_B/√n. Conditioning the Gaussian W on those answers gives,
for a new query u = Q_A a + r with a = Q_A·u/M and r ⊥ Q_A factored as r = Q_r R (R upper triangular),

    W u/√n = Y a + [Π_B^⊥ ε + Q_B (X·Q_r/M)] R ,      ε: fresh i.i.d. N(0, 1) per particle and new direction,

i.e. regression on past answers + fresh noise + the transpose coupling Q_B (X·r/M), whose weights are particle
covariances of past backward answers with the new residual (the Tensor-Programs term Σ_j g_j E[∂u/∂Ẑ^{Wᵀg_j}],
by Stein's lemma). Wᵀg/√n is the same with (Q_A, Y) and (Q_B, X) swapped. `coupling="none"` drops the
coupling and the projection: the backward pass then queries an independent W̃(0), the `decoupled` net. SGD
adds ΔW_ℓ/√n = ηγ0 b Σ_{s,μ} χ_μ(s) ĝ_ℓ(x_μ,s) φ(h_{ℓ−1}(x_μ,s))ᵀ/n. With α, β the coordinates of
φ(h_{ℓ−1}(x_μ,s)) in Q_A and of ĝ_ℓ(x_μ,s) in Q_B, D = ηγ0 Σ χ β αᵀ gives ΔW u/√n = b Q_Bᵀ D a and
ΔWᵀg/√n = b Q_Aᵀ Dᵀ(Q_B·g/M); times the branch's b these are docs/theory.md §6's (ηγ0β²/K) sums.
U (rows in R^d) and v are carried per particle: h_0 = U x/√d, ĝ_L = v φ'(h_L) (v for a linear readout), ΔU =
ηγ0 Σ χ ĝ_0 xᵀ/√d, Δv = ηγ0 Σ χ φ(h_L), χ_μ = (y_μ − f_μ)/batch. The output is centred, f(x,t) =
mean[v(t)φ(h_L(x,t)) − v(0)φ(h_L(x,0))]/γ0: the limit has f(x,0) = 0, and centring removes O(M^-½) noise that
one-step differences would divide by η. With the projection Π_B^⊥, M particles sample a width-M network exactly
in law (apart from centring) at cost O(M (TP)² K) instead of O(M² TP K); the limit is M → ∞. Errors: R
independent replicas of M/R particles; value = replica mean, stderr = replica std/√R. Every replica draws its
noise in a fixed order and shape, so both couplings see the same ε (common random numbers).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .. import probes as PR
from ..runs import store
from ..config import RunConfig
from ..data import Dataset, load_task
from . import COUPLINGS, LimitError
from .kernels import init_kernels, phi, phi_prime

__all__ = ["LimitError", "LimitResult", "COUPLINGS", "check_covered", "plan_inputs", "estimate_bytes",
           "solve_limit"]

MAX_INPUTS = 256        # distinct inputs the solver conditions on (probes ∪ every batch input used)
_DROP = 1e-24           # a residual with |r|² below this × |u|² is round-off: the query is in the span
_REL = 1e-20            # ... and one below this × its own |r|² is a dependent column of the same step
_COND = 1e-8            # Cholesky-QR only when every pivot keeps this share of its column (else MGS)
_REORTH = 1e-8          # project a second time when |r|² < this × |x|² (CGS2; one pass loses ~eps|x|/|r|)


@dataclass
class LimitResult:
    """Tidy frames in the run format's columns, the centred outputs per replica, and the `limit` section."""
    metrics: pd.DataFrame        # step, layer, metric, value, stderr
    kernels: pd.DataFrame        # step, layer, kind, i, j, value (probes)
    neurons: pd.DataFrame        # step, layer, probe, quantile, value (particles of all replicas)
    f: Tensor                    # (steps done + 1, R, P_all) centred outputs f(x, t) per replica
    inputs: list[int]            # training-set indices of the P_all inputs (the probes first)
    info: dict = field(default_factory=dict)
    status: str = "complete"


def check_covered(cfg: RunConfig, data: Dataset | None = None) -> None:
    """Raise LimitError for what the solver does not cover yet: two-layer blocks, cross-entropy, C > 1, sp."""
    if cfg.block != 1:
        raise LimitError("the limit engine covers one-layer blocks only; two-layer blocks (block=2) are not "
                         "covered yet")
    if cfg.loss != "mse":
        raise LimitError("the limit engine covers the MSE loss only; cross-entropy (loss=xent) is not covered yet")
    if cfg.param == "sp":
        raise LimitError("param=sp is not covered by the limit engine: its width limit is the lazy kernel "
                         "regime with a Gaussian-process f(0), not a particle average; use depth-mup, mup or plain")
    if data is not None and data.n_outputs != 1:
        raise LimitError(f"the limit engine covers a scalar output only; this task has C={data.n_outputs} "
                         f"outputs (C > 1 is not covered yet)")


def plan_inputs(cfg: RunConfig, n_train: int) -> tuple[list[int], list[Tensor]]:
    """(inputs, batches): the training indices involved (probes first, then every batch input of steps
    0..S, sorted) and the batch of each step, in `dynamics.train._batches` order (seed cfg.seed + 7919)."""
    from ..train import _batches  # lazily: train imports model, which imports this package
    gen = torch.Generator().manual_seed(cfg.seed + 7919)
    it = _batches(cfg, n_train, gen)
    batches = [next(it).clone() for _ in range(cfg.steps + 1)]
    used = sorted(set(torch.cat(batches).tolist()) - set(range(cfg.probes)))
    return list(range(cfg.probes)) + used, batches


def estimate_bytes(particles: int, grid: int, steps: int, inputs: int, probes: int, replicas: int) -> int:
    """Float64 bytes the solver holds: per block four M×(T·P) histories (bases and answers, both directions)
    and D (R×(T·P)²), plus per-layer features and gradients of the current and initial step."""
    T, P, M, K = steps + 1, inputs, particles, grid
    hist = 4 * K * M * T * P + K * replicas * (T * P) ** 2
    live = (K + 1) * M * (3 * P + 2 * probes) + 12 * M * P
    return 8 * (hist + live)


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


# --- one matrix's conditional sampler ----------------------------------------------------------------
@dataclass
class _Side:
    """Queries of one matrix (W, or Wᵀ): orthonormal directions Q and the matrix's answers Z, both
    (R, capacity, m) with |q|²/m = 1; rows [tP, (t+1)P) are the P directions opened at step t (zero if dropped)."""
    Q: Tensor
    Z: Tensor


def _orthonormalise(r: Tensor, x_sq: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    """r (R, m, P), already ⊥ the history -> (Qn (R, m, P), Rn (R, P, P) upper, keep (R, P)) with r ≈ Qn Rn,
    Qnᵀ Qn/m = diag(keep). Columns at round-off (in the span) are dropped: zero in Qn and Rn. Cholesky-QR
    twice when well conditioned (smooth in r, so common random numbers stay common), else modified
    Gram–Schmidt with reorthogonalisation, column by column."""
    S = r.mT @ r / m                                                   # (R, P, P)
    d = S.diagonal(dim1=-2, dim2=-1)                                   # (R, P) |r_k|²/m
    small = d <= _DROP * x_sq
    if bool(small.all()):
        return torch.zeros_like(r), r.new_zeros(S.shape), torch.zeros_like(small)
    keep = ~small
    unit = torch.diag_embed(small.to(r.dtype))                         # round-off columns: identity pivots
    r = r * keep[:, None, :]
    S = S * (keep[:, :, None] & keep[:, None, :]) + unit
    L, info = torch.linalg.cholesky_ex(S)
    if bool((info == 0).all()) and bool((L.diagonal(dim1=-2, dim2=-1) ** 2 > _COND * (d + small)).all()):
        Q1 = torch.linalg.solve_triangular(L, r.mT, upper=False).mT              # r L⁻ᵀ
        L2 = torch.linalg.cholesky(Q1.mT @ Q1 / m + unit)
        Q = torch.linalg.solve_triangular(L2, Q1.mT, upper=False).mT
        return Q, (L @ L2).mT * keep[:, :, None], keep
    Q, Rn = torch.zeros_like(r), r.new_zeros(S.shape)
    keep = torch.zeros_like(small)
    for k in range(r.shape[-1]):
        v, c = r[..., k:k + 1], r.new_zeros(r.shape[0], r.shape[-1], 1)
        for _ in range(2):
            dc = Q.mT @ v / m                                          # (R, P, 1)
            v, c = v - Q @ dc, c + dc
        nrm2 = (v * v).sum(1)[:, 0] / m                                # (R,)
        ok = (nrm2 > _DROP * x_sq[:, k]) & (nrm2 > _REL * d[:, k])
        nrm = torch.where(ok, nrm2, 1.0).sqrt()
        Q[..., k] = torch.where(ok[:, None], v[..., 0] / nrm[:, None], 0.0)
        Rn[:, :, k] = c[..., 0]
        Rn[:, k, k] = torch.where(ok, nrm, 0.0)
        keep[:, k] = ok
    return Q, Rn, keep


def _coords(Q: Tensor, x: Tensor) -> Tensor:
    """Q (R, n, m) · x (R, m, P) -> (R, n, P), i.e. q_k·x; computed as (xᵀQᵀ)ᵀ, the faster BLAS orientation."""
    return (x.mT @ Q.mT).mT


def _comb(Q: Tensor, c: Tensor) -> Tensor:
    """Σ_k q_k c_k: Qᵀ (R, m, n) · c (R, n, P) -> (R, m, P), computed as (cᵀQ)ᵀ (row-major Q read once)."""
    return (c.mT @ Q).mT


def _query(side: _Side, other: _Side, x: Tensor, eps: Tensor, n: int, n_other: int, couple: bool,
           drift: Callable[[Tensor], Tensor] | None) -> tuple[Tensor, Tensor]:
    """Answer of the matrix for new queries x (R, m, P) given its n past directions, and the coordinates of x
    in its basis (R, n + P, P); opens P new directions at rows n..n+P. `other` holds the transposed matrix's
    queries (first n_other rows): with couple=True they add the coupling and project ε; couple=False is the
    decoupled case. drift(a) gives the update's coefficients on other's rows (R, n_other, P), added in the
    same pass over other's basis."""
    m = x.shape[1]
    Q, Z = side.Q[:, :n], side.Z[:, :n]                                # (R, n, m)
    a = _coords(Q, x) / m                                              # (R, n, P)
    r = x - _comb(Q, a)
    x_sq, r_sq = (x * x).sum(1) / m, (r * r).sum(1) / m                # (R, P)
    if n and bool((r_sq < _REORTH * x_sq).any()):                      # cancellation: project once more
        a2 = _coords(Q, r) / m
        r, a = r - _comb(Q, a2), a + a2
    Qn, Rn, keep = _orthonormalise(r, x_sq, m)
    Qo = other.Q[:, :n_other]                                          # (R, n_o, m)
    coef = drift(a) if drift is not None and n_other else None         # (R, n_o, P)
    P = x.shape[-1]
    if couple and n_other:
        C = (_coords(other.Z[:, :n_other], Qn) - _coords(Qo, eps)) / m  # coupling weights; −projection of ε
        both = _comb(Qo, C if coef is None else torch.cat([C, coef], -1))  # one pass over Qo
        Zn, extra = eps + both[..., :P], (both[..., P:] if coef is not None else None)
    else:
        Zn, extra = eps, (_comb(Qo, coef) if coef is not None else None)
    Zn = Zn * keep[:, None, :]
    side.Q[:, n:n + P] = Qn.mT
    side.Z[:, n:n + P] = Zn.mT
    msg = _comb(Z, a) + Zn @ Rn
    return (msg if extra is None else msg + extra), torch.cat([a, Rn], dim=1)


# --- the solver --------------------------------------------------------------------------------------
def solve_limit(cfg: RunConfig, *, grid: int | None = None, particles: int = 4096, coupling: str = "full",
                seed: int = 0, device: str = "cpu", replicas: int = 8, center: bool = True,
                on_step: Callable[[int, float], None] | None = None) -> LimitResult:
    """Infinite-width SGD dynamics of cfg's network on a grid of K = grid (default cfg.depth) blocks
    (docs/theory.md §6; derivation in the module docstring). The returned frames use layer indices on the K grid:
    store them with depth = K so τ = layer/depth holds. Step 0 is exact (init_kernels; f = 0); later steps
    are particle averages with Monte-Carlo stderr. center=False keeps f(0) ≠ 0, which makes every replica an
    exact sample of a width-M/R network (a test oracle). Raises LimitError before any work when the setting
    is not covered or the histories would not fit in memory."""
    K = cfg.depth if grid is None else int(grid)
    if K < 1:
        raise LimitError(f"grid must be a positive number of blocks; got {K}")
    if coupling not in COUPLINGS:
        raise LimitError(f"coupling={coupling!r} is not supported; choose one of {', '.join(COUPLINGS)}")
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
    M, P, Pp, T = R * m, len(inputs), cfg.probes, cfg.steps + 1
    if P > MAX_INPUTS:
        raise LimitError(f"the limit engine conditions on every input it sees: this run involves {P} distinct "
                         f"training inputs (train_size={cfg.train_size}, batch={cfg.batch}, steps={cfg.steps}); "
                         f"it covers up to {MAX_INPUTS}: rerun the finite run with a smaller --train-size "
                         f"(8-64) or fewer --steps")
    need, have = estimate_bytes(M, K, cfg.steps, P, Pp, R), _available_bytes(dev)
    if need > 0.8 * have:
        raise LimitError(f"the limit needs about {need / 2**30:.1f} GiB for M·K·T·P = {M}·{K}·{T}·{P} history "
                         f"entries but {dev.type} has {have / 2**30:.1f} GiB available; lower --particles, "
                         f"--grid, --steps or the number of inputs (train_size, probes)")
    res = _Solver(cfg, data, inputs, batches, R, m, coupling, seed, dev, center).run(on_step)
    if m < 2 * T * P:
        res.info["warning"] = (f"{m} particles per replica against 2·T·P = {2 * T * P} history directions per "
                               f"block: each replica is an exact width-{m} network whose explored subspace fills "
                               f"much of R^{m}, so expect its O(1/{m}) finite-width bias; raise --particles to "
                               f"at least {2 * T * P * R} for a closer limit")
    return res


class _Solver:
    def __init__(self, cfg, data, inputs, batches, R, m, coupling, seed, dev, center):
        self.cfg, self.R, self.m, self.dev, self.center = cfg, R, m, dev, center
        self.coupled = coupling == "full"
        kw = dict(dtype=torch.float64, device=dev)
        self.kw = kw
        self.X = data.x[inputs].to(**kw)                                 # (P, d)
        self.y = data.y[inputs, 0].to(**kw)                              # (P,)
        self.inputs, self.P, self.Pp = inputs, len(inputs), cfg.probes
        pos = {i: k for k, i in enumerate(inputs)}
        self.masks = [torch.zeros(self.P, **kw).index_fill_(0, torch.tensor([pos[int(i)] for i in b],
                                                                           device=dev), 1.0) for b in batches]
        self.bsz = cfg.batch_size
        K, T, P = cfg.depth, cfg.steps + 1, self.P
        self.K, self.T = K, T
        self.b = {"depth-mup": cfg.beta / math.sqrt(K), "mup": cfg.beta, "plain": 1.0}[cfg.param]
        self.skip = cfg.param != "plain"
        self.lr = cfg.lr * cfg.gamma0                                     # ηγ0: every drift's prefactor
        self.gen = torch.Generator(device=dev).manual_seed(seed)
        d = self.X.shape[1]
        self.U = torch.randn(R, m, d, generator=self.gen, **kw)          # raw input rows, N(0, 1)
        self.v = torch.randn(R, m, 1, generator=self.gen, **kw)          # raw readout, N(0, 1)
        cap = T * P

        def side() -> _Side:
            return _Side(torch.zeros(R, cap, m, **kw), torch.zeros(R, cap, m, **kw))
        self.fwd = [side() for _ in range(K)]                            # W_ℓ(0) queried with φ(h_{ℓ-1})
        self.bwd = [side() for _ in range(K)]                            # W_ℓ(0)ᵀ (none: W̃_ℓ(0)ᵀ), ĝ_ℓ
        self.D = [torch.zeros(R, cap, cap, **kw) for _ in range(K)]      # ΔW_ℓ/(b√n) in (bwd, fwd) bases
        self.trained = set(cfg.trained)

    def _eps(self) -> Tensor:
        return torch.randn(self.R, self.m, self.P, generator=self.gen, **self.kw)

    def forward(self, t: int):
        """Features h_0..h_K (K+1, R, m, P), readout features ψ, coordinates α of every block's input."""
        cfg, n = self.cfg, t * self.P
        h = self.U @ self.X.T / math.sqrt(self.X.shape[1])               # (R, m, P)
        hs, alphas = [h], []
        for ell in range(self.K):
            u = phi(h, cfg.act)
            D = self.D[ell][:, :n, :n]                                    # drift b ΔW u/√n = b Q_Bᵀ D a
            msg, alpha = _query(self.fwd[ell], self.bwd[ell], u, self._eps(), n, n, self.coupled,
                                lambda a: self.b * (D @ a))
            h = (h if self.skip else 0.0) + self.b * msg
            hs.append(h)
            alphas.append(alpha)
        psi = phi(h, cfg.act) if cfg.readout == "phi" else h
        return torch.stack(hs), psi, alphas

    def backward(self, t: int, hs: Tensor):
        """ĝ_0..ĝ_K (K+1, R, m, P) and the coordinates β of every block's backward input."""
        cfg, n = self.cfg, t * self.P
        g = self.v * phi_prime(hs[-1], cfg.act) if cfg.readout == "phi" else self.v.expand_as(hs[-1])
        gs, betas = [g], [None] * self.K
        for ell in reversed(range(self.K)):
            D = self.D[ell][:, :n, :n].mT                                 # drift b ΔWᵀg/√n = b Q_Aᵀ Dᵀ (Q_B g)
            msg, beta = _query(self.bwd[ell], self.fwd[ell], g, self._eps(), n, n + self.P, self.coupled,
                               lambda a: torch.nn.functional.pad(self.b * (D @ a), (0, 0, 0, self.P)))
            g = (g if self.skip else 0.0) + self.b * phi_prime(hs[ell], cfg.act) * msg
            gs.append(g)
            betas[ell] = beta
        return torch.stack(gs[::-1]), betas

    def output(self, psi: Tensor) -> Tensor:
        f = (self.v * psi).sum(1)                                         # (R, P)
        if self.center:
            f = f - self.f0_sum
        return f / (self.m * self.cfg.gamma0)

    def update(self, t: int, chi: Tensor, psi: Tensor, gs: Tensor, alphas, betas) -> None:
        """One SGD step: chi (R, P) = −∂loss/∂f, zero off the batch."""
        n1 = (t + 1) * self.P
        if "readout" in self.trained:
            self.v = self.v + self.lr * psi @ chi[:, :, None]
        if "input" in self.trained:
            self.U = self.U + self.lr * gs[0] @ (chi[:, :, None] * self.X) / math.sqrt(self.X.shape[1])
        if "hidden" in self.trained:
            for ell in range(self.K):
                self.D[ell][:, :n1, :n1] += self.lr * betas[ell] @ (chi[:, :, None] * alphas[ell].mT)

    def run(self, on_step) -> LimitResult:
        cfg, rec = self.cfg, _Records(self)
        fs, status = [], "complete"
        for t in range(self.T):
            hs, psi, alphas = self.forward(t)
            if t == 0:
                self.f0_sum = (self.v * psi).sum(1)
            f = self.output(psi)                                          # (R, P)
            fs.append(f)
            chi = (self.y - f) * self.masks[t] / self.bsz                 # (R, P)
            loss = 0.5 * ((f - self.y) ** 2 * self.masks[t]).sum(1) / self.bsz   # (R,)
            rec.scalar(t, "loss", loss)
            if not bool(torch.isfinite(loss).all()):
                status = "diverged"
                break
            record = t % cfg.record_every == 0 or t == cfg.steps
            if record or t < cfg.steps:
                gs, betas = self.backward(t, hs)
            if record:
                rec.record(t, hs, gs, f)
            if t < cfg.steps and cfg.trained:
                self.update(t, chi, psi, gs, alphas, betas)
            if on_step is not None:
                on_step(t, float(loss.mean()))
        return rec.result(torch.stack(fs).cpu(), status)


class _Records:
    """Rows of the three frames: exact at step 0 (init_kernels), replica mean ± stderr afterwards."""

    def __init__(self, s: _Solver):
        self.s, cfg = s, s.cfg
        self.rows: dict[str, list[dict]] = {"metrics": [], "kernels": [], "neurons": []}
        H0 = (s.X[:s.Pp] @ s.X[:s.Pp].T / s.X.shape[1]).cpu()
        self.exact = init_kernels(H0, cfg.depth, act=cfg.act, beta=cfg.beta, param=cfg.param,
                                  readout=cfg.readout, gamma0=cfg.gamma0)
        self.s0: list[PR.ProbeState] = []

    def _add(self, file, **cols):
        self.rows[file].append(cols)

    def scalar(self, t: int, name: str, per_replica: Tensor) -> None:
        v = per_replica.double().cpu().numpy()
        exact = t == 0 and self.s.center                                  # f(0) = 0 exactly
        self._add("metrics", step=t, layer=store.NETWORK_LAYER, metric=name, value=[v.mean()],
                  stderr=[0.0 if exact else v.std(ddof=1) / math.sqrt(len(v))])

    def record(self, t: int, hs: Tensor, gs: Tensor, f: Tensor) -> None:
        s, Pp, K = self.s, self.s.Pp, self.s.K
        states = [PR.ProbeState(h=hs[:, r, :, :Pp].mT, g_hat=gs[:, r, :, :Pp].mT,
                                phi_h=phi(hs[:, r, :, :Pp].mT, s.cfg.act), a=None, f=f[r, :Pp, None])
                  for r in range(s.R)]
        if t == 0:
            self.s0 = states
        probe_loss = 0.5 * ((f[:, :Pp] - s.y[:Pp]) ** 2).mean(1)
        self.scalar(t, "probe_loss", probe_loss)
        if t == 0:
            per_layer, kern = self._exact_metrics(), self.exact
        else:
            vals: dict[str, list] = {}
            for st, st0 in zip(states, self.s0):
                for name, (values, first) in PR.layer_metrics(st, st0, K).items():
                    vals.setdefault(name, (first, []))[1].append(values)
            per_layer = {}
            for name, (first, vs) in vals.items():
                v = torch.stack(vs).cpu().numpy()                          # (R, layers)
                per_layer[name] = (v.mean(0), v.std(0, ddof=1) / math.sqrt(len(v)), first)
            ks = [PR.kernels(st) for st in states]
            kern = {k: torch.stack([x[k] for x in ks]).mean(0).cpu() for k in ("H", "Phi", "G")}
        for name, (value, se, first) in per_layer.items():
            self._add("metrics", step=t, layer=np.arange(first, first + len(value)), metric=name,
                      value=value, stderr=se)
        ii, jj = np.meshgrid(np.arange(Pp), np.arange(Pp), indexing="ij")
        for kind, mat in kern.items():
            self._add("kernels", step=t, layer=np.repeat(np.arange(K + 1), Pp * Pp), kind=kind,
                      i=np.tile(ii.reshape(-1), K + 1), j=np.tile(jj.reshape(-1), K + 1),
                      value=mat.double().numpy().reshape(-1))
        q = torch.tensor(PR.QUANTILES, dtype=torch.float64, device=hs.device)
        pooled = hs[..., :Pp].permute(0, 3, 1, 2).reshape(K + 1, Pp, -1)  # (K+1, Pp, M): all replicas
        quant = torch.stack([torch.quantile(layer, q, dim=-1).T for layer in pooled]).cpu().numpy()
        nq = len(PR.QUANTILES)
        self._add("neurons", step=t, layer=np.repeat(np.arange(K + 1), Pp * nq),
                  probe=np.tile(np.repeat(np.arange(Pp), nq), K + 1),
                  quantile=np.tile(np.array(PR.QUANTILES, dtype=np.float32), (K + 1) * Pp),
                  value=quant.reshape(-1))

    def _exact_metrics(self) -> dict:
        """Step-0 metrics from the exact kernels: f, ĝ are odd in v(0), so fg_cov = 0; moves are 0."""
        e, K, skip = self.exact, self.s.K, self.s.skip
        diag = {k: e[k].diagonal(dim1=-2, dim2=-1).mean(-1).numpy() for k in ("H", "Phi", "G")}
        H = diag["H"]
        div = K * (H[1:] - H[:-1]) if skip else K * (H[1:] + H[:-1])
        zero = np.zeros(K + 1)
        out = {"h_sq": diag["H"], "phi_sq": diag["Phi"], "g_sq": diag["G"], "h_move": zero, "g_move": zero,
               "fg_cov": zero}
        res = {k: (v, np.zeros_like(v), 0) for k, v in out.items()}
        res["diversity"] = (div, np.zeros(K), 1)
        return res

    def result(self, f: Tensor, status: str) -> LimitResult:
        frames = {}
        for file, parts in self.rows.items():
            cols = {}
            for part in parts:
                size = max(np.size(v) for v in part.values())
                for k, v in part.items():
                    cols.setdefault(k, []).append(np.broadcast_to(np.asarray(v), (size,)).reshape(-1))
            frames[file] = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
        s = self.s
        info = {"grid": s.K, "particles": s.R * s.m, "replicas": s.R, "particles_per_replica": s.m,
                "coupling": "full" if s.coupled else "none", "inputs": len(s.inputs),
                "history_steps": s.T, "centred_output": s.center, "dtype": "float64",
                "steps_done": int(f.shape[0]) - 1}
        return LimitResult(frames["metrics"], frames["kernels"], frames["neurons"], f, s.inputs, info, status)
