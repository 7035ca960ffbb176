"""`python -m dynamics reproduce --profile smoke|cpu|gpu --out DIR`: the paper's claims (docs/theory.md §3–§7)
measured by this tool, written as ordinary runs plus one OUT/claims.json.

Experiments, in order: (1) initialisation: finite nets against the exact width-limit kernels (error vs width)
and the finite-L recursion against the continuum (error vs depth, kernels only); (2) the coupling sweeps of
dynamics.paper.experiments, fitted on the excess over chance, and the feature–gradient covariance; (3) training:
a widths × depths × seeds grid against NFD limit runs, coupling full (reused) and none (decoupled), with the
joint fit err ≈ a·n^−p + b·L^−q; (4) reused vs decoupled twins (plain / μP / depth-μP, full batch, the digits
images) and the limit engine's noise-free gap over depth grids K, on the teacher task and on the digits images
with cross-entropy; (5) two-layer blocks: the inner layer's own learning a_learn and its whole movement a_move
vs depth at several widths and inner-LR exponents, and the limit's vs the depth grid K for α = 0, 1/2, 1; (6) learning-rate transfer, depth-μP against μP. Each
writes its runs under OUT/runs/ (complete runs are reused, so a rerun resumes), a tidy
OUT/points-<name>.parquet, and its claims (dynamics.paper.verdicts documents the fields): every figure in
claims.json is recomputed from its points file by `verdicts.recompute` with the claim's `method`, so
`--rejudge` (dynamics.paper.rejudge) applies the current rules to a bundle's stored points without training.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from ..runs import store
from ..config import RunConfig
from . import blocks, sweeps, vs_limit
from .common import CLAIMS_JSON, clean_json
from .experiments import ExperimentError

__all__ = ["PROFILES", "reproduce", "compare_claims", "register", "CLAIMS_JSON"]

PROFILES = ("cpu", "gpu", "smoke")
_SIZES = {  # profile -> sizes of the claims built here; the coupling/gia sweeps use experiments._SIZES
    "smoke": dict(widths=[16, 32, 64], depth=2, seeds=2, cont_depths=[2, 4, 8, 16], fig_widths=[16, 32],
                  fig_depths=[1, 2, 4], fig_seeds=2, train_steps=1, particles=32, ref_grid=8, block_width=16,
                  block_widths=[16, 32], block_depths=[1, 2, 4], block_seeds=2, alphas=[0.0, 0.5, 1.0], block_steps=2,
                  lrs=[0.1, 0.3, 1.0], lr_depths=[1, 2, 4], lr_steps=2, lr_seeds=2),
    "cpu": dict(widths=[64, 128, 256, 512, 1024], depth=8, seeds=6, cont_depths=[4, 8, 16, 32, 64, 128],
                fig_widths=[64, 128, 256, 512], fig_depths=[2, 4, 8, 16], fig_seeds=3, train_steps=5,
                particles=16384, ref_grid=64, block_width=128, block_widths=[64, 128, 256, 512],
                block_depths=[2, 4, 8, 16], block_seeds=3, alphas=[0.0, 0.5, 1.0], block_steps=20,
                lrs=list(np.geomspace(0.003, 3.0, 13)), lr_depths=[2, 4, 8, 16], lr_steps=30, lr_seeds=6),
    "gpu": dict(widths=[256, 512, 1024, 2048, 4096], depth=16, seeds=8, cont_depths=[4, 8, 16, 32, 64, 128, 256],
                fig_widths=[256, 512, 1024, 2048, 4096], fig_depths=[2, 4, 8, 16, 32], fig_seeds=5, train_steps=10,
                particles=16384, ref_grid=64, block_width=512, block_widths=[256, 512, 1024, 2048],
                block_depths=[2, 4, 8, 16, 32], block_seeds=4, alphas=[0.0, 0.5, 1.0], block_steps=200,
                lrs=list(np.geomspace(0.01, 3.0, 13)), lr_depths=[2, 4, 8, 16, 32], lr_steps=300, lr_seeds=4),
}


# --- the command --------------------------------------------------------------------------------------
def _base(device: str) -> RunConfig:
    """The synthetic task of the coupling sweeps: probes = the whole training set, full batch (gpu swaps in
    CIFAR-10 for the two-layer-block and learning-rate experiments, see _task)."""
    return RunConfig(task="teacher", train_size=8, probes=8, batch="full", test_size=0, lr=0.5, act="relu",
                     device=device)


def _check_gpu(data_dir: str | None) -> None:
    from ..data import CIFAR_TRAIN_FILES
    if not data_dir or not all((Path(data_dir) / f).exists() for f in CIFAR_TRAIN_FILES):
        raise ExperimentError(f"--profile gpu needs --data-dir holding the CIFAR-10 binary batches "
                              f"({', '.join(CIFAR_TRAIN_FILES)}, test_batch.bin); got {data_dir or 'none'}")


def reproduce(out: Path, *, profile: str = "cpu", device: str = "auto", data_dir: str | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Run every experiment into out/ and write out/claims.json; returns its content."""
    if profile not in PROFILES:
        raise ExperimentError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if profile == "gpu":
        _check_gpu(data_dir)
    out = store.check_writable(Path(out))
    store.check_writable(out / "runs")
    s, base = _SIZES[profile], _base(device)
    quiet = lambda m: None  # noqa: E731  (per-run lines would drown the per-experiment progress)
    init_base = dataclasses.replace(base, device="cpu")
    steps = [("init", lambda: vs_limit.init_claims(out, s, init_base, quiet)),
             ("coupling", lambda: sweeps.coupling_claims(out, profile, device, quiet)),
             ("training vs limit", lambda: vs_limit.training_claims(out, s, base, quiet)),
             ("reused vs decoupled", lambda: sweeps.gia_claims(out, profile, device, quiet)
              + vs_limit.gia_limit_claims(out, profile, device, quiet)),
             ("two-layer blocks", lambda: blocks.blocks_claims(out, s, _task(base, profile, data_dir), profile,
                                                                quiet)),
             ("learning rate", lambda: sweeps.lr_claims(out, s, _task(base, profile, data_dir), quiet))]
    claims, timings, t_all = [], {}, time.monotonic()
    for i, (name, fn) in enumerate(steps, 1):
        t0 = time.monotonic()
        got = fn()
        timings[name] = round(time.monotonic() - t0, 1)
        claims += got
        verdicts = ", ".join(f"{c['id']} {c['verdict']}" for c in got)
        log(f"[{i}/{len(steps)}] {name}: {timings[name]:.1f} s; {verdicts}")
    doc = {"schema": 1, "profile": profile, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "paper": "Yao, Wu, Gao, Feature Learning Dynamics in Infinite-Depth Neural Networks, arXiv 2512.21075",
           "theory": "docs/theory.md", "runs_dir": "runs", "timings_s": timings, "wall_s": round(time.monotonic() - t_all, 1),
           "claims": [clean_json(c) for c in claims]}
    store.write_json_atomic(out / CLAIMS_JSON, doc)
    return doc


def compare_claims(ref: dict, new: dict) -> list[dict]:
    """Does `new` (a rerun) reproduce `ref`? Per claim of ref: new's figure must lie in ref's 95% interval
    (a claim without an interval must come back without a figure or with the same one), and the verdict should
    match. Claims missing from the rerun count as not reproduced."""
    if ref.get("profile") != new.get("profile"):
        raise ExperimentError(f"the reference is a {ref.get('profile')!r} run and this one {new.get('profile')!r}; "
                              "compare runs of one profile")
    got = {c["id"]: c for c in new["claims"]}
    rows = []
    for c in ref["claims"]:
        n = got.get(c["id"])
        m_new = None if n is None else n["measured"]
        lo, hi = c["ci"]
        if n is None:
            ok = False
        elif lo is None or hi is None:
            ok = (m_new is None) == (c["measured"] is None) and (
                m_new is None or math.isclose(m_new, c["measured"], rel_tol=1e-9, abs_tol=1e-12))
        else:
            ok = m_new is not None and lo <= m_new <= hi
        rows.append({"id": c["id"], "ref_measured": c["measured"], "ref_ci": [lo, hi], "measured": m_new,
                     "within_ci": ok, "ref_verdict": c["verdict"],
                     "verdict": None if n is None else n["verdict"]})
    return rows


def _task(base: RunConfig, profile: str, data_dir: str | None) -> RunConfig:
    if profile != "gpu":
        return base
    return dataclasses.replace(base, task="cifar10", data_dir=data_dir, loss="xent", classes=10)


def register(sub) -> None:
    """Add `python -m dynamics reproduce` to the CLI's subparsers."""
    p = sub.add_parser("reproduce", help="the paper's claims measured: runs plus OUT/claims.json",
                       description="Run the experiments behind docs/theory.md §3–§7 (init vs limit kernels, coupling, "
                                   "training vs the limit, reused vs decoupled, two-layer blocks and LR transfer) "
                                   "as ordinary runs under OUT/runs and write OUT/claims.json: per claim the "
                                   "paper's statement, the fitted figure with its 95% interval and a verdict. "
                                   "A rerun reuses complete runs.")
    p.add_argument("--profile", default="cpu", choices=PROFILES,
                   help="smoke: seconds (tests); cpu: synthetic data on 2 cores; gpu: paper-sized, CIFAR-10")
    p.add_argument("--out", required=True, help="folder for runs/, points-*.parquet and claims.json")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--data-dir", help="gpu profile: folder holding the CIFAR-10 binary batches")
    p.add_argument("--rejudge", action="store_true", help="train nothing: judge OUT/claims.json again under the "
                   "current rules from the points files stored beside it, and rewrite it (dynamics.paper.rejudge)")
    p.add_argument("--compare", metavar="CLAIMS", help="a claims.json (or its folder) from an earlier run of this "
                   "profile, e.g. data/reproduce: check that every figure of this run lies in that run's 95%% "
                   "interval; exit status 1 if one does not")
    p.add_argument("--bundle", metavar="DEST", help="afterwards, copy OUT's claims, points files and the few runs "
                   "each claim's links open into DEST (rebuilt whole, e.g. data/reproduce; dynamics.paper.bundle)")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    if args.bundle and Path(args.bundle).resolve() == Path(args.out).resolve():
        raise ExperimentError("--bundle: DEST must not be OUT itself; name another folder, e.g. data/reproduce")
    if args.rejudge:
        from .rejudge import rejudge
        if not (Path(args.out) / CLAIMS_JSON).is_file():
            raise ExperimentError(f"--rejudge: {Path(args.out) / CLAIMS_JSON} does not exist; run "
                                  f"`python -m dynamics reproduce --profile {args.profile} --out {args.out}` first")
        doc = rejudge(Path(args.out))
        print(f"claims: {Path(args.out) / CLAIMS_JSON} rejudged ({len(doc['claims'])} claims)")
        _bundle(args)
        return 0
    ref = _read_claims(Path(args.compare)) if args.compare else None  # a bad path fails before any training
    if ref is not None and ref.get("profile") != args.profile:
        raise ExperimentError(f"--compare: {args.compare} holds a {ref.get('profile')!r} run; rerun with "
                              f"--profile {ref.get('profile')} to compare against it")
    doc = reproduce(Path(args.out), profile=args.profile, device=args.device, data_dir=args.data_dir)
    for c in doc["claims"]:
        lo, hi = c["ci"]
        ci = f"[{lo:.3g}, {hi:.3g}]" if lo is not None and hi is not None else "[no interval]"
        m = "nan" if c["measured"] is None else f"{c['measured']:.3g}"
        print(f"{c['verdict']:>12}  {c['id']:<22} {m:>8} {ci:<20} {c['statement']}")
    print(f"claims: {Path(args.out) / CLAIMS_JSON}  ({doc['wall_s']} s)")
    _bundle(args)
    if ref is None:
        return 0
    rows = compare_claims(ref, doc)
    print(f"\nagainst {args.compare}: is each figure inside the earlier run's 95% interval?")
    for r in rows:
        lo, hi = r["ref_ci"]
        ci = f"[{lo:.3g}, {hi:.3g}]" if lo is not None and hi is not None else "[no interval]"
        m = "missing" if r["measured"] is None and r["verdict"] is None else (
            "nan" if r["measured"] is None else f"{r['measured']:.3g}")
        same = "" if r["verdict"] == r["ref_verdict"] else f"  (verdict {r['ref_verdict']} -> {r['verdict']})"
        print(f"{'yes' if r['within_ci'] else 'NO':>4}  {r['id']:<22} {m:>8} in {ci}{same}")
    bad = [r["id"] for r in rows if not r["within_ci"]]
    print(f"reproduced {len(rows) - len(bad)} of {len(rows)} claims" + (f"; not: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


def _bundle(args) -> None:
    if not args.bundle:
        return
    from .bundle import bundle
    dest = Path(args.bundle)
    got = bundle(Path(args.out), dest)
    print(f"bundle: {dest} ({got['claims']} claims, {got['runs']} runs, {got['bytes'] / 1e6:.1f} MB)")


def _read_claims(path: Path) -> dict:
    f = path / CLAIMS_JSON if path.is_dir() else path
    try:
        doc = json.loads(f.read_text())
        doc["claims"]  # noqa: B018  (a claims.json has them)
    except FileNotFoundError:
        raise ExperimentError(f"--compare: {f} does not exist; give a claims.json or the folder holding one") from None
    except (ValueError, KeyError, TypeError):
        raise ExperimentError(f"--compare: {f} is not a claims.json written by "
                              "`python -m dynamics reproduce`") from None
    return doc
