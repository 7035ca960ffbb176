"""The training loop: SGD on a depth-μP ResNet, recording every layer's statistics into a run directory.

Conventions (issue #2): step 0 is the initialisation; `steps=S` performs S SGD updates and records steps
0..S; `loss` at step t is the loss of the parameters after t updates on the batch of step t (the whole
training set for batch="full"); probe metrics are recorded at step 0, every `record_every` steps and at S;
the probes are the first `probes` training inputs. A non-finite loss ends the run as `diverged`, keeping
everything recorded so far. Files are flushed right after the first record, then every 30 s or
`store.RECORDING_FLUSH_RECORDS` = 100 records (throttled to ~10% overhead; a flush rewrites whole files),
and run.json's heartbeat is refreshed every 30 s between records too, so a run killed early keeps its steps
and shows as `stale` (dynamics.runs.store.liveness), not running.
`train(cfg, run_dir)` is what the CLI, the sweeps and the tests call.
"""
from __future__ import annotations

import math
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import probes as P
from .background import Background
from .runs import store
from .config import ConfigError, RunConfig, usable_cores
from .data import Dataset, load_task
from .model import ResNet, sgd_step

__all__ = ["train", "resolve_device", "loss_fn", "package_versions"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} was asked for but CUDA is not available here; use --device cpu")
    return torch.device(name)


def loss_fn(cfg: RunConfig, f: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """mse: mean over the batch of ½‖f − y‖²;  xent: mean cross-entropy of the logits f."""
    if cfg.loss == "xent":
        return F.cross_entropy(f, labels)
    return 0.5 * (f - y).pow(2).sum(dim=1).mean()


def package_versions() -> dict[str, str]:
    import pandas, pyarrow  # noqa: E401
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pandas.__version__, "pyarrow": pyarrow.__version__}


def _batches(cfg: RunConfig, n_train: int, gen: torch.Generator):
    """Index batches for steps 0..S: shuffled epochs without replacement (or the whole set)."""
    if cfg.batch == "full":
        idx = torch.arange(n_train)
        while True:
            yield idx
    bs, perm, pos = cfg.batch_size, torch.randperm(n_train, generator=gen), 0
    while True:
        if pos + bs > n_train:
            perm, pos = torch.randperm(n_train, generator=gen), 0
        yield perm[pos:pos + bs]
        pos += bs


class _Recorder:
    """Turns probe states into rows of the run's three Parquet files.

    With `overlap`, `record` runs only the probe pass (it needs the weights of this step) and leaves the rest
    (metrics, the coupling's update, kernels, quantiles, the writer's rows) to a background thread, which
    works on the pass's own tensors while the next training step runs. The caller calls `wait()` before it
    touches the writer itself; `wait` raises the background work's error."""

    def __init__(self, writer: store.RunWriter, model: ResNet, data: Dataset, cfg: RunConfig,
                 dev: torch.device, dtype: torch.dtype, overlap: bool = False):
        self.w, self.model, self.cfg = writer, model, cfg
        self.behind = Background("dynamics-train-record") if overlap else None
        self.x = data.x[:cfg.probes].to(dev, dtype)
        self.y, self.labels = data.y[:cfg.probes].to(dev, dtype), _maybe(data.labels, cfg.probes, dev)
        self.s0: P.ProbeState | None = None
        self.prev: P.ProbeState | None = None   # the last recorded state, for h_step
        # two-layer blocks: the inner layer's weights at initialisation, for a_learn (one more L·n² copy)
        self.W1_0 = model.W.detach().clone() if cfg.block == 2 else None
        self.coupling = None
        if cfg.record_coupling == "on":
            window = coupling_window(cfg)
            writer.meta["coupling"] = {"window": window, "matrix": "W" if cfg.block == 1 else "W2",
                                       "history": "probe vectors at past recorded steps",
                                       "chance": "expectation with an independent Gaussian matrix"}
            W0 = model.W if cfg.block == 1 else model.W2
            self.coupling = P.CouplingTracker(W0, window, model.decoupled, model.s.branch or 1.0)

    def in_loop(self) -> bool:
        """The next record runs entirely in the caller's thread: no overlap, or the first record (so that
        its errors come out at once)."""
        return self.behind is None or self.s0 is None

    def record(self, step: int) -> None:
        s = P.probe_pass(self.model, self.x)
        if self.W1_0 is not None:  # at this step's weights, before training goes on (the rest may overlap)
            s.a_learn = P.inner_learning(s, self.model.W, self.W1_0, self.model.s.hidden)
        if self.in_loop():
            return self._write(step, s)
        self.behind.submit(self._write, step, s)

    def wait(self) -> None:
        if self.behind is not None:
            self.behind.wait()

    def close(self) -> None:
        """Wait for the background work (its error is raised) and stop the thread."""
        if self.behind is not None:
            self.behind.close()

    def _write(self, step: int, s: P.ProbeState) -> None:
        cfg = self.cfg
        if self.s0 is None:
            self.s0 = s
        rows = []  # (metric, first layer, values) gathered on device, moved to CPU once
        metrics = P.layer_metrics(s, self.s0, cfg.depth, self.prev)
        self.prev = s
        if self.coupling is not None:
            u = s.phi_h[:-1] if s.a is None else P.phi(s.a, cfg.act)  # (L, P, n) inputs of the matrix
            metrics.update(self.coupling.update(u, s.g_hat[1:]))
        for name, (values, first) in metrics.items():
            rows.append((name, first, values))
        with torch.no_grad():
            rows.append(("probe_loss", -1, loss_fn(cfg, s.f, self.y, self.labels).reshape(1)))
        kern = P.kernels(s)
        quant = P.neuron_quantiles(s)
        flat = torch.cat([v.reshape(-1) for _, _, v in rows]).double().cpu().numpy()
        pos = 0
        for name, first, values in rows:
            k = values.numel()
            layer = np.arange(first, first + k) if first >= 0 else np.full(k, store.NETWORK_LAYER)
            self.w.add_metrics(step, layer, name, flat[pos:pos + k])
            pos += k
        L1, Pn = s.h.shape[0], s.h.shape[1]
        ii, jj = np.meshgrid(np.arange(Pn), np.arange(Pn), indexing="ij")
        for kind, mat in kern.items():
            m = mat.double().cpu().numpy()  # (L+1, P, P)
            self.w.add(store.KERNELS, step=step, layer=np.repeat(np.arange(L1), Pn * Pn), kind=kind,
                       i=np.tile(ii.reshape(-1), L1), j=np.tile(jj.reshape(-1), L1), value=m.reshape(-1))
        q = quant.double().cpu().numpy()  # (L+1, P, Q)
        nq = len(P.QUANTILES)
        self.w.add(store.NEURONS, step=step, layer=np.repeat(np.arange(L1), Pn * nq),
                   probe=np.tile(np.repeat(np.arange(Pn), nq), L1),
                   quantile=np.tile(np.array(P.QUANTILES, dtype=np.float32), L1 * Pn), value=q.reshape(-1))
        self.w.meta["steps_done"] = step


def overlap_default(dev: torch.device) -> bool:
    """Overlap records with training on the CPU when torch leaves a core free (torch.set_num_threads(k) with
    k < cores). Measured at width 512, depth 32, record_every=1 with the coupling on 2 cores: one torch thread,
    1.37× of an unrecorded run with overlap against ≈1.9× without; two threads, 2.32× with against 1.88×
    without (the background thread then competes with torch's own): off."""
    return dev.type == "cpu" and torch.get_num_threads() < usable_cores()


def coupling_window(cfg: RunConfig) -> int:
    """Recorded steps kept in the coupling histories: cfg.coupling_window, or all records while the history
    stays under n/2 columns (0 means all and becomes that cap when it binds)."""
    if cfg.coupling_window:
        return cfg.coupling_window
    records = cfg.steps // cfg.record_every + 2
    return min(records, max(1, cfg.width // (2 * cfg.probes)))


def grad_norm(grads: list[torch.Tensor]) -> float:
    """‖∇θ‖ = √(Σ_tensors Σ_rows ‖row‖²): norms of rows of the last dimension, their squares added in float64.
    No squared copy of the (L, n, n) gradients is made (≈2 ms of CPU a record at width 512, depth 32, against
    ≈25–30 ms for Σ g.pow(2).sum()), and the sum is more accurate than one float32 accumulation (≈1e-9)."""
    total = 0.0
    for g in grads:
        rows = g.reshape(-1, g.shape[-1]) if g.dim() else g.reshape(1, 1)
        total += float(torch.linalg.vector_norm(rows, dim=1).double().pow(2).sum())
    return math.sqrt(total)


def _maybe(t: torch.Tensor | None, k: int | None, dev: torch.device) -> torch.Tensor | None:
    return None if t is None else t[:k].to(dev)


def build(cfg: RunConfig, data: Dataset, dev: torch.device) -> ResNet:
    """The model for cfg on dev; init drawn on the CPU from cfg.seed so it is identical on every device."""
    gen = torch.Generator().manual_seed(cfg.seed)
    dtype = getattr(torch, cfg.dtype)
    return ResNet(cfg, data.dim, data.n_outputs, gen, dtype).to(dev)


def train(cfg: RunConfig, run_dir: Path, *, record_probes: bool = True, progress: bool = False,
          on_step: Callable[[int, float], None] | None = None, run_id: str | None = None,
          data: tuple[Dataset, Dataset | None] | None = None, overlap: bool | None = None) -> Path:
    """Train per cfg and write the run to run_dir (created; must not hold a run). Returns run_dir.

    record_probes=False skips the probe metrics (losses are still written): the benchmark's baseline.
    on_step(step, loss) is called after every step (the dashboard's progress bar uses it).
    data: load_task(cfg)'s result when the caller already has it (the CLI loads it to fail early).
    overlap: compute each record's metrics on a background thread while the next step trains (the probe pass
    stays in the loop: it needs the step's weights); None: `overlap_default(device)`. The files are the same
    either way.
    """
    t_start = time.monotonic()
    dev = resolve_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    data, test = data if data is not None else load_task(cfg)
    model = build(cfg, data, dev)
    meta = {"run_id": run_id or Path(run_dir).name, "kind": "finite", "config": cfg.to_dict(),
            "probe_ids": list(range(cfg.probes)), "probe_source": "first training inputs",
            "quantiles": list(P.QUANTILES), "versions": package_versions(), "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "steps_done": 0}
    writer = store.RunWriter(run_dir, meta, flush_records=store.RECORDING_FLUSH_RECORDS)
    groups = model.param_groups()
    if overlap is None:
        overlap = overlap_default(dev)
    rec = _Recorder(writer, model, data, cfg, dev, dtype, overlap=bool(overlap and record_probes))
    gen = torch.Generator().manual_seed(cfg.seed + 7919)  # data order, independent of the init stream
    batches = _batches(cfg, len(data), gen)
    xs, ys = data.x.to(dev, dtype), data.y.to(dev, dtype)
    labels = None if data.labels is None else data.labels.to(dev)
    if test is not None:
        tx, ty, tl = test.x.to(dev, dtype), test.y.to(dev, dtype), _maybe(test.labels, None, dev)
    bar = _progress(cfg.steps + 1, progress)
    status, sc = "complete", _Scalars(writer)
    losses, norms = sc.losses, sc.norms
    try:
        for step in range(cfg.steps + 1):
            idx = next(batches).to(dev)
            f = model(xs[idx])
            loss = loss_fn(cfg, f, ys[idx], None if labels is None else labels[idx])
            if groups:
                loss.backward()
            lval = float(loss.detach())
            losses.append(lval)
            if not math.isfinite(lval):
                status = "diverged"
                break
            if test is not None and (step % cfg.test_every == 0 or step == cfg.steps):
                with torch.no_grad():
                    sc.tests.append((step, float(loss_fn(cfg, model(tx), ty, tl))))
            if record_probes and (step % cfg.record_every == 0 or step == cfg.steps):
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                norms.append((step, grad_norm(grads)))
                rec.wait()  # the last record's rows are in the writer: it is ours again
                sc.drain()
                if rec.in_loop():  # the first record (or no overlap): flushed right after it
                    rec.record(step)
                    writer.maybe_flush()
                else:  # the background thread adds this record's rows; they are flushed with a later one
                    writer.maybe_flush()
                    rec.record(step)
            else:
                rec.wait()
                writer.maybe_flush()  # the heartbeat, every flush period, between record steps too
            if step < cfg.steps:
                sgd_step(groups)
            else:
                model.zero_grad(set_to_none=True)
            if on_step is not None:
                on_step(step, lval)
            bar.update(1)
            bar.set_postfix(loss=f"{lval:.4g}", refresh=False)
        rec.close()
    except BaseException as e:
        try:
            rec.close()
        except BaseException:  # the loop's own error is the one to report
            pass
        sc.drain()
        writer.finish("failed", error=f"{type(e).__name__}: {e}", wall_seconds=time.monotonic() - t_start)
        raise
    finally:
        bar.close()
    sc.drain()
    writer.finish(status, steps_done=len(losses) - 1, wall_seconds=round(time.monotonic() - t_start, 3))
    return Path(run_dir)


class _Scalars:
    """Network scalars waiting for the writer: loss every step, grad_norm at record steps, test_loss."""

    def __init__(self, writer: store.RunWriter):
        self.w, self.losses, self.written = writer, [], 0
        self.norms: list[tuple[int, float]] = []  # (step, grad_norm)
        self.tests: list[tuple[int, float]] = []  # (step, test_loss)

    def drain(self) -> None:
        if len(self.losses) > self.written:
            self.w.add_metrics(np.arange(self.written, len(self.losses)), store.NETWORK_LAYER, "loss",
                               np.array(self.losses[self.written:]))
            self.written = len(self.losses)
        for name, pending in (("grad_norm", self.norms), ("test_loss", self.tests)):
            for st, value in pending:
                self.w.add_metrics(st, store.NETWORK_LAYER, name, value)
            pending.clear()


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, disable=not enabled, desc="train", unit="step", file=sys.stderr,
                dynamic_ncols=True, leave=False)
