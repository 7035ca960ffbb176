"""Recording cost: wall time of a recorded run over an unrecorded run of the same model (issues #2, #19).

    python benchmarks/record_overhead.py [--width 512 --depth 32 --batch 64 --steps 60 --repeats 3]
    python benchmarks/record_overhead.py --user [--probes 8 ...]   # dynamics.record in a user's own loop

--user times a user's own loop (a residual MLP, SGD) four ways, in interleaved blocks of 10 steps: no recording,
`dynamics.record` every step (8 probes; overlap on, its default on a multi-core CPU), the same recorded in the
training thread (overlap=False), and what TensorBoard users do (forward hooks taking |h_ℓ|²/n on the training
batch, `SummaryWriter.add_scalar` per layer every step; skipped without tensorboard); ratios over no recording
(target, issue #19: dynamics.record ≤ 1.25×). Overlap moves the recording's work off the loop's path; it does
not remove it: `--cpu` (the process's CPU time, all threads) shows the work, the wall clock what the loop feels.

Prints the ratio for record_every = 1 and 10, with the coupling decomposition off and on (targets: issue #2,
≤ 1.5× and ≤ 1.1× for recording; issue #4, coupling adds ≤ 30% at record_every = 10; issue #19, record_every = 1
≤ 1.25× and with the coupling ≤ 2×). Each configuration is timed `repeats` times, interleaved, and the median is
used, so background load hits all of them alike; the load average is printed beside the figures. The
baseline still writes the per-step loss; it skips only the probe metrics, kernels and quantiles. With the
default 60 steps the coupling's window (n/(2P) = 32 records at width 512, 8 probes) slides for the last 28.
`--variants` picks some of the variants by name (e.g. `--variants "every=1 coupling=on"`); `--cpu` times the
process's CPU time instead of the wall clock (fairer on a shared machine); `--threads N` pins torch's threads.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynamics.config import RunConfig  # noqa: E402
from dynamics.train import train  # noqa: E402


CLOCK = time.perf_counter  # --cpu: time.process_time, this process's CPU time (other jobs on a shared machine
#                            slow the wall clock of every variant, but not the CPU time they take)


def _clock_name() -> str:
    return "CPU time" if CLOCK is time.process_time else "wall time"


def _time(cfg: RunConfig, record: bool) -> float:
    with tempfile.TemporaryDirectory() as d:
        t0 = CLOCK()
        train(cfg, Path(d) / "run", record_probes=record)
        return CLOCK() - t0


def user_loop(width: int, depth: int, batch: int, probes: int, steps: int, repeats: int,
              threads: int | None = None, block: int = 10) -> dict[str, list[float]]:
    """Seconds per training step of a user's loop: 'none', 'dynamics.record' every step (overlap on: each step's
    pass runs on a background thread while the loop trains on), 'record in-thread' (overlap=False) and
    'tensorboard hooks' (add_scalar of |h_ℓ|²/n per block every step). Kinds take turns in blocks of `block`
    steps (steps × repeats steps of each in all); a block's time ends when its recording is done
    (`rec.wait()`), so background work is charged to its own kind. Compare medians over blocks."""
    import torch
    from torch import nn

    import dynamics
    if threads:
        torch.set_num_threads(threads)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(width, width)

        def forward(self, h):
            return h + self.lin(torch.relu(h)) / depth

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, width), *[Block() for _ in range(depth)], nn.Linear(width, 10))
    x, y = torch.randn(batch, 32), torch.randn(batch, 10)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def train_step():
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    blocks = list(model[1:depth + 1])
    tmp = tempfile.TemporaryDirectory()
    times: dict[str, list[float]] = {"none": [], "dynamics.record": [], "record in-thread": [],
                                     "tensorboard hooks": []}
    recs = {"dynamics.record": dynamics.record(model, blocks=blocks, probe=x[:probes], out=tmp.name, name="user",
                                               act="relu", overlap=True),
            "record in-thread": dynamics.record(model, blocks=blocks, probe=x[:probes], out=tmp.name,
                                                name="user-in-thread", act="relu", overlap=False)}
    try:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(Path(tmp.name) / "tb"))
    except ImportError:
        writer = None
        del times["tensorboard hooks"]
    seen: list = []

    def hook(module, args, out):
        seen.append(out.detach().pow(2).mean())

    def run_block(kind: str, t: int) -> float:
        hooks = [b.register_forward_hook(hook) for b in blocks] if kind == "tensorboard hooks" else []
        start = CLOCK()
        for k in range(block):
            seen.clear()
            loss = train_step()
            if kind in recs:
                recs[kind].step(t + k, loss=loss.item())
            elif kind == "tensorboard hooks":
                writer.add_scalar("loss", loss.item(), t + k)
                for ell, v in enumerate(seen):
                    writer.add_scalar(f"layer_{ell + 1}/h_sq", v.item(), t + k)
        if kind in recs:
            recs[kind].wait()
        took = CLOCK() - start
        for h in hooks:
            h.remove()
        return took / block

    for rec in recs.values():  # warm-up, the reference step and (overlap) the model's copy
        for t in range(3):
            train_step()
            rec.step(t)
        rec.wait()
    t = 3
    for _ in range(max(1, repeats * steps // block)):  # kinds in turn: load changes hit all kinds alike
        for kind in times:
            times[kind].append(run_block(kind, t))
        t += block
    for rec in recs.values():
        rec.close()
    if writer is not None:
        writer.close()
    tmp.cleanup()
    return times


def gemm_rates(width: int, depth: int, batch: int, probes: int, repeats: int = 20) -> dict[str, float]:
    """Why 8 probes cost far more than 8/64 of a step: ms for depth+1 products x·Wᵀ through distinct
    width × width weights (a forward pass's GEMMs), at `probes` and `batch` rows, and at `probes` rows through
    one weight used depth+1 times (it stays in cache). Few rows read each weight for little arithmetic, so
    the pass is bound by reading the weights from memory, which costs the same for 8 rows as for 64."""
    import torch
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(width, width, generator=g) for _ in range(depth + 1)]
    out = {}
    for label, rows, weights in ((f"{probes} rows, {depth + 1} weights", probes, ws),
                                 (f"{batch} rows, {depth + 1} weights", batch, ws),
                                 (f"{probes} rows, 1 weight (cached)", probes, ws[:1] * (depth + 1))):
        x = torch.randn(rows, width, generator=g)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(repeats):
                for w in weights:
                    torch.nn.functional.linear(x, w)
            best = min(best, (time.perf_counter() - t0) / repeats)
        out[label] = best
        print(f"{label:<28}{best * 1e3:8.2f} ms {2 * rows * width * width * len(weights) / best / 1e9:8.1f} GFLOP/s")
    return out


def _user_main(a: argparse.Namespace) -> None:
    print(f"GEMMs of one pass (x·Wᵀ, width {a.width}), best of 3:")
    gemm_rates(a.width, a.depth, a.batch, a.probes)
    times = user_loop(a.width, a.depth, a.batch, a.probes, a.steps, a.repeats)
    t0 = statistics.median(times["none"])
    import torch
    print(f"user loop: width {a.width}, depth {a.depth}, batch {a.batch}, {a.probes} probes, {len(times['none'])} "
          f"blocks of 10 steps of each kind taken in turn (median); {_clock_name()}; torch threads "
          f"{torch.get_num_threads()} of {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    for kind, ts in times.items():
        print(f"{kind:<20}{statistics.median(ts) * 1e3:>10.1f} ms/step{statistics.median(ts) / t0:>8.2f}×")
    for kind, ts in times.items():
        if kind != "none":
            print(f"RESULT user_{kind.replace('.', '_').replace(' ', '_')}_ratio={statistics.median(ts) / t0:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--user", action="store_true", help="time dynamics.record in a user's own loop instead")
    ap.add_argument("--probes", type=int, default=8, help="probes of dynamics.record (with --user)")
    ap.add_argument("--variants", nargs="*", help="time only these variants (and the unrecorded baseline)")
    ap.add_argument("--cpu", action="store_true", help="time this process's CPU time instead of the wall clock")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    a = ap.parse_args()
    global CLOCK
    if a.cpu:
        CLOCK = time.process_time
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    if a.user:
        return _user_main(a)
    base = RunConfig(width=a.width, depth=a.depth, batch=a.batch, steps=a.steps, device=a.device)
    variants = {"unrecorded": (base, False)}
    for every in (1, 10):
        for coupling in ("off", "on"):
            variants[f"every={every} coupling={coupling}"] = (
                dataclasses.replace(base, record_every=every, record_coupling=coupling), True)
    if a.variants:
        unknown = set(a.variants) - set(variants)
        if unknown:
            raise SystemExit(f"unknown variant(s) {sorted(unknown)}; choose from {sorted(variants)[1:]}")
        variants = {k: v for k, v in variants.items() if k == "unrecorded" or k in a.variants}
    _time(dataclasses.replace(base, steps=2), True)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(a.repeats):
        for name, (cfg, record) in variants.items():
            times[name].append(_time(cfg, record))
    t0 = statistics.median(times["unrecorded"])
    print(f"width {a.width}, depth {a.depth}, batch {a.batch}, {a.steps} steps, median of {a.repeats}; "
          f"{_clock_name()}; load {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<26}{'seconds':>10}{'ratio':>8}")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:<26}{t:>10.2f}{t / t0:>8.2f}")
    for name, ts in times.items():  # machine-readable lines for benchmarks/run_all.py
        if name != "unrecorded":
            print(f"RESULT record_{name.replace('=', '').replace(' ', '_')}_ratio={statistics.median(ts) / t0:.3f}")


if __name__ == "__main__":
    main()
