"""What the limit solver records: the run format's three frames (metrics with a Monte-Carlo `stderr`, kernels,
neuron quantiles) from the particles, with the very metric functions finite runs use (dynamics.probes). Step 0
is exact (the width-limit recursion `init_kernels`); later steps are the replica mean, stderr = replica std/√R.
`LimitResult` holds them with the solver's outputs (nfd.solve_limit returns it; `dynamics.limit.nfd.LimitResult`
is the same class).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .. import probes as PR
from ..activations import phi
from ..runs import store
from .kernels import init_kernels
from .readout import mean_loss


@dataclass
class LimitResult:
    """Tidy frames in the run format's columns, the centred outputs per replica, and the `limit` section."""
    metrics: pd.DataFrame        # step, layer, metric, value, stderr
    kernels: pd.DataFrame        # step, layer, kind, i, j, value (probes)
    neurons: pd.DataFrame        # step, layer, probe, quantile, value (particles of all replicas)
    f: Tensor                    # (steps done + 1, R, P_all, C) centred outputs f(x, t) per replica
    inputs: list[int]            # training-set indices of the P_all inputs (the probes first)
    info: dict = field(default_factory=dict)
    status: str = "complete"


class Records:
    """Rows of the three frames: exact at step 0 (init_kernels), replica mean ± stderr afterwards. `s` is the
    solver (dynamics.limit.nfd): its cfg, X, y, R, m, K, Pp, skip, center, block, inputs are read."""

    def __init__(self, s):
        self.s, cfg = s, s.cfg
        self.rows: dict[str, list[dict]] = {"metrics": [], "kernels": [], "neurons": []}
        H0 = s.X64[:s.Pp] @ s.X64[:s.Pp].T / s.X64.shape[1]
        self.exact = init_kernels(H0, cfg.depth, act=cfg.act, beta=cfg.beta, param=cfg.param,
                                  readout=cfg.readout, gamma0=cfg.gamma0, block=cfg.block)
        self.s0: list[PR.ProbeState] = []

    def _add(self, file, **cols):
        self.rows[file].append(cols)

    def scalar(self, t: int, name: str, per_replica: Tensor) -> None:
        v = per_replica.double().cpu().numpy()
        exact = t == 0 and self.s.center                                  # f(0) = 0 exactly
        self._add("metrics", step=t, layer=store.NETWORK_LAYER, metric=name, value=[v.mean()],
                  stderr=[0.0 if exact else v.std(ddof=1) / math.sqrt(len(v))])

    def record(self, t: int, hs: Tensor, gs: Tensor, f: Tensor, inner: tuple[Tensor, Tensor] | None) -> None:
        """hs (K+1, R, m, P) features, gs (K+1, R, m, Nb) backward columns (the first Pp are ĝ of the first
        output at the probes), f (R, P, C); two-layer blocks: inner = (a (K, R, m, P) inner pre-activations,
        their update-driven parts ΔW_ℓ,1 φ(h_ℓ−1)/√n (K, R, m, Pp)), whose mean square is a_learn."""
        s, Pp, K = self.s, self.s.Pp, self.s.K
        a_s, learned = inner if inner is not None else (None, None)
        states = [PR.ProbeState(h=hs[:, r, :, :Pp].mT, g_hat=gs[:, r, :, :Pp].mT,
                                phi_h=phi(hs[:, r, :, :Pp].mT, s.cfg.act),
                                a=None if a_s is None else a_s[:, r, :, :Pp].mT, f=f[r, :Pp],
                                a_learn=None if learned is None else learned[:, r].pow(2).mean(dim=(1, 2)))
                  for r in range(s.R)]
        if t == 0:
            self.s0 = states
        self.scalar(t, "probe_loss", mean_loss(s.cfg.loss, f[:, :Pp], s.y[:Pp]))
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
        q = torch.tensor(PR.QUANTILES, dtype=hs.dtype, device=hs.device)
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
        # f and ĝ are odd in v(0), φ(h) even: the 2P×2P Gram of [φ(h); ĝ] is block-diagonal (Φ, G) at init
        eigmin = torch.minimum(torch.linalg.eigvalsh(e["Phi"])[:, 0], torch.linalg.eigvalsh(e["G"])[:, 0]).numpy()
        out = {"h_sq": diag["H"], "phi_sq": diag["Phi"], "g_sq": diag["G"], "h_move": zero, "g_move": zero,
               "fg_cov": zero, "fg_eigmin": eigmin}
        res = {k: (v, np.zeros_like(v), 0) for k, v in out.items()}
        res["diversity"] = (div, np.zeros(K), 1)
        if self.s.cfg.block == 2:
            res["a_move"] = (np.zeros(K), np.zeros(K), 1)
            res["a_learn"] = (np.zeros(K), np.zeros(K), 1)
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
                "history_steps": s.T, "centred_output": s.center, "dtype": str(s.kw["dtype"]).split(".")[-1],
                "device": str(s.dev), "outputs": s.C, "backward_columns": s.Nb, "block": s.cfg.block,
                "steps_done": int(f.shape[0]) - 1}
        return LimitResult(frames["metrics"], frames["kernels"], frames["neurons"], f, s.inputs, info, status)
