"""`python -m dynamics reproduce --profile smoke|cpu|gpu --out DIR`: the paper's claims (THEORY §3–§5, §7)
measured by this tool, written as ordinary runs plus one OUT/claims.json.

Experiments, in order: (1) initialisation: finite nets against the exact width-limit kernels (error vs width)
and the finite-L recursion against the continuum (error vs depth, kernels only); (2) and (4) the coupling
sweeps of dynamics.paper.experiments (at init and during training, vs width and depth); (3) training: finite nets
against the NFD limit vs depth, coupling full (reused) and none (decoupled); (5) the gia sweep (reused vs
decoupled, plain / μP / depth-μP); (6) two-layer blocks: a_move vs depth per inner-LR exponent, and the best
learning rate vs depth. Each writes its runs under OUT/runs/ (complete runs are reused, so a rerun resumes),
a tidy OUT/points-<name>.parquet, and the claims: every figure in claims.json is a `fit_loglog` of columns
(`x`, `y`) of that points file (rows filtered by `where`), so it can be recomputed from the file.
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
import pandas as pd

from ..runs import store
from ..config import RunConfig
from .experiments import ExperimentError, run_experiment, run_or_reuse
from .fits import fit_loglog, profile_error

__all__ = ["PROFILES", "reproduce", "compare_claims", "register", "CLAIMS_JSON"]

PROFILES = ("cpu", "gpu", "smoke")
CLAIMS_JSON = "claims.json"
LIMIT_PAGE, COUPLING_PAGE, SCALING_PAGE, TRAJ_PAGE = ("pages/3_Limit.py", "pages/4_Coupling.py",
                                                      "pages/5_Scaling.py", "pages/2_Trajectories.py")
_SIZES = {  # profile -> sizes of this module's own experiments; the coupling/gia sweeps use experiments._SIZES
    "smoke": dict(widths=[16, 32, 64], depth=2, seeds=1, cont_depths=[2, 4, 8, 16], train_width=16,
                  train_depths=[1, 2, 4], train_steps=1, particles=32, ref_grid=8, block_width=16,
                  block_depths=[1, 2, 4], alphas=[0.0, 1.0], block_steps=2, lrs=[0.1, 1.0], lr_depths=[1, 2, 4],
                  lr_steps=2, lr_seeds=1),
    "cpu": dict(widths=[64, 128, 256, 512, 1024], depth=8, seeds=4, cont_depths=[4, 8, 16, 32, 64, 128],
                train_width=512, train_depths=[2, 4, 8, 16], train_steps=5, particles=512, ref_grid=32,
                block_width=128, block_depths=[2, 4, 8, 16], alphas=[0.0, 0.5, 1.0], block_steps=20,
                lrs=[0.03, 0.1, 0.3, 1.0, 3.0], lr_depths=[2, 4, 8, 16], lr_steps=30, lr_seeds=2),
    "gpu": dict(widths=[256, 512, 1024, 2048, 4096], depth=16, seeds=5, cont_depths=[4, 8, 16, 32, 64, 128, 256],
                train_width=2048, train_depths=[2, 4, 8, 16, 32], train_steps=10, particles=4096, ref_grid=64,
                block_width=512, block_depths=[2, 4, 8, 16, 32], alphas=[0.0, 0.5, 1.0], block_steps=200,
                lrs=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0], lr_depths=[2, 4, 8, 16, 32], lr_steps=300, lr_seeds=3),
}


# --- claims ---------------------------------------------------------------------------------------
def _claim(cid: str, section: str, statement: str, points: pd.DataFrame, file: str, x: str, y: str, *,
           rate: float | None, rule: str = "rate", where: dict | None = None, page: str, runs: list[str],
           detail: str = "", tol: float = 0.0, view: dict | None = None) -> dict:
    """A claim: the slope of log y vs log x over the points (filtered by `where`) with its bootstrap CI.
    rule 'rate': agrees when the CI widened by `tol` holds `rate` (tol > 0 only for exact, noise-free points,
    whose CI measures nothing but the pre-asymptotic curvature); 'vanishes'/'persists': CI wholly below 0 /
    not below 0."""
    sel = points
    for k, v in (where or {}).items():
        sel = sel[sel[k] == v]
    fit = fit_loglog(sel[x], sel[y])
    finite_ci = math.isfinite(fit.ci_low) and math.isfinite(fit.ci_high)
    if not finite_ci:
        verdict, why = "inconclusive", "no confidence interval (needs 3+ distinct values of " + x + ")"
    elif rule == "rate":
        verdict = "agrees" if fit.ci_low - tol <= rate <= fit.ci_high + tol else "disagrees"
        why = f"the 95% interval {'contains' if verdict == 'agrees' else 'excludes'} the paper's slope {rate:g}"
        why += f" (within ±{tol:g}, allowed for the next-order term of exact points)" if tol else ""
        if verdict == "agrees" and rate != 0 and fit.ci_low <= 0 <= fit.ci_high:
            verdict, why = "inconclusive", f"the interval contains both the paper's slope {rate:g} and 0 (no decay)"
    elif fit.ci_low <= 0 <= fit.ci_high:
        verdict, why = "inconclusive", "the interval contains 0: shrinking and flat are both allowed"
    else:
        vanishes = fit.ci_high < 0
        verdict = "agrees" if vanishes == (rule == "vanishes") else "disagrees"
        why = f"the measured quantity {'shrinks' if vanishes else 'grows'} with {x}"
    return {"id": cid, "section": section, "statement": statement, "quantity": f"slope of log {y} vs log {x}",
            "paper_value": rate, "rule": rule, "measured": fit.slope, "ci": [fit.ci_low, fit.ci_high],
            "verdict": verdict, "why": why, "tol": tol, "n_points": int(len(sel)), "points": file, "x": x, "y": y,
            "where": where or {}, "page": page, "runs": sorted(set(runs)), "detail": detail, "view": view or {}}


def _save(out: Path, name: str, points: pd.DataFrame) -> str:
    import pyarrow as pa
    file = f"points-{name}.parquet"
    store.write_parquet_atomic(out / file, pa.Table.from_pandas(points, preserve_index=False))
    return file


def _profile(run: Path, metric: str, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(τ = layer/depth, value) of a per-layer metric at a step."""
    df = store.read_metrics(run, metrics=[metric], steps=[step])
    df = df[df.layer >= 0].sort_values("layer")
    depth = store.read_meta(run)["config"]["depth"]
    return df.layer.to_numpy() / depth, df.value.to_numpy()


def _limit(like: Path, out: Path, grid: int, particles: int, coupling: str, device: str) -> Path:
    """The limit run of `like` on a K = grid depth grid, reused when already complete."""
    from ..limit.run import limit_like
    name = f"{like.name}_limit-{coupling}-K{grid}-M{particles}"
    run = out / name
    if (run / store.RUN_JSON).exists() and store.read_meta(run)["status"] == "complete":
        return run
    if run.exists():
        import shutil
        shutil.rmtree(run)
    return limit_like(like, out, grid=grid, particles=particles, coupling=coupling, device=device,
                      replicas=4, name=name)


# --- (1) initialisation ---------------------------------------------------------------------------
def _init(out: Path, s: dict, base: RunConfig, log) -> list[dict]:
    from ..limit.kernels import continuum_kernels, init_kernels
    rows, runs = [], []
    cfg0 = dataclasses.replace(base, steps=0, record_coupling="off", depth=s["depth"])
    ref = None
    for width in s["widths"]:
        for seed in range(s["seeds"]):
            run = run_or_reuse(dataclasses.replace(cfg0, width=width, seed=seed), out / "runs", log)
            # step 0 of a limit run is exact (init_kernels) and depends on neither width nor seed nor M
            ref = ref or _limit(run, out / "runs", s["depth"], 32, "full", "cpu")
            err = {m: profile_error(*_profile(run, m, 0), *_profile(ref, m, 0)) for m in ("h_sq", "g_sq")}
            rows.append({"width": width, "depth": s["depth"], "seed": seed, "run_id": run.name,
                         "limit_run": ref.name, "err_h_sq": err["h_sq"], "err_g_sq": err["g_sq"]})
            runs += [run.name, ref.name]
    pts = pd.DataFrame(rows)
    fw = _save(out, "init-width", pts)
    g = fit_loglog(pts.width, pts.err_g_sq)
    claims = [_claim("init-width", "§3", "finite width vs the width limit at initialisation: O(n^-1/2) per "
                     "realisation (O(1/n) only for averages over many seeds; measured here per seed)", pts, fw,
                     "width", "err_h_sq", rate=-0.5, page=LIMIT_PAGE, runs=runs,
                     detail=f"RMS over layers of h_sq(finite) − h_sq(limit), depth {s['depth']}, "
                            f"{s['seeds']} seeds per width; g_sq slope {g.slope:.3g} [{g.ci_low:.3g}, {g.ci_high:.3g}]")]
    H0 = store.kernel_matrix(store.read_kernels(ref, kinds=["H"], layers=[0], steps=[0]))  # the probes' x·x'/d
    rows = []
    for L in s["cont_depths"]:
        fin = init_kernels(H0, L, act=base.act)
        tau = np.arange(L + 1) / L
        cont = continuum_kernels(H0, tau, act=base.act)
        diag = lambda K: K.diagonal(dim1=-2, dim2=-1).mean(-1).numpy()  # (L+1,) h_sq / g_sq profiles
        rows.append({"depth": L, "err_h_sq": profile_error(tau, diag(fin["H"]), tau, diag(cont["H"])),
                     "err_g_sq": profile_error(tau, diag(fin["G"]), tau, diag(cont["G"]))})
    pts = pd.DataFrame(rows)
    fd = _save(out, "init-depth", pts)
    g = fit_loglog(pts.depth, pts.err_g_sq)
    claims.append(_claim("init-depth", "§3", "finite depth L vs the depth-μP continuum at initialisation: O(1/L)",
                         pts, fd, "depth", "err_h_sq", rate=-1.0, page=LIMIT_PAGE, runs=[], tol=0.05,
                         detail=f"exact kernels (no sampling) on the probes of {ref.name}; "
                                f"g_sq slope {g.slope:.3g} [{g.ci_low:.3g}, {g.ci_high:.3g}]"))
    return claims


# --- (2, 4) coupling, (5) gia: the experiments module's sweeps -----------------------------------------
def _coupling(out: Path, profile: str, device: str, log) -> list[dict]:
    claims = []
    for name in ("coupling-width", "coupling-depth"):
        run_experiment(name, out, profile=profile, device=device, log=log)
    pw, pd_ = (pd.read_parquet(out / f"points-{n}.parquet") for n in ("coupling-width", "coupling-depth"))
    fw, fd = "points-coupling-width.parquet", "points-coupling-depth.parquet"
    claims.append(_claim("coupling-init-width", "§5", "at initialisation the coupling is a finite-width effect: "
                         "O(1/n)", pw, fw, "width", "init_coupling_bwd", rate=-1.0, page=COUPLING_PAGE,
                         runs=list(pw.run_id)))
    claims.append(_claim("coupling-init-depth", "§5", "at initialisation the coupling is O(1/n) uniformly in L "
                         "(no growth with depth)", pd_, fd, "depth", "init_coupling_bwd", rate=0.0,
                         page=COUPLING_PAGE, runs=list(pd_.run_id)))
    claims.append(_claim("coupling-train-depth", "§5", "during training the per-block coupling is O(L^-2)", pd_,
                         fd, "depth", "train_coupling_fwd", rate=-2.0, page=COUPLING_PAGE, runs=list(pd_.run_id)))
    claims.append(_claim("coupling-acc-depth", "§5", "under depth-μP the accumulated coupling over layers "
                         "vanishes as L → ∞", pd_, fd, "depth", "coupling_acc", rate=None, rule="vanishes",
                         page=COUPLING_PAGE, runs=list(pd_.run_id)))
    claims.append(_fg_eigmin(out, pw))
    return claims


def _fg_eigmin(out: Path, runs: pd.DataFrame) -> dict:
    """Fig. 3 on the coupling-width runs (trained, every step recorded): per run the smallest eigenvalue of
    the feature–gradient covariance (metric fg_eigmin), minimised over the steps and layers of training.
    The claim is non-degeneracy uniformly in width, so it fails only if that minimum shrinks with width
    (rule 'persists'); a finite-n sample covariance has its smallest eigenvalue biased low (by about
    (1 − √(2P/n))², Marchenko–Pastur), so it may rise with width towards the limit's."""
    rows = []
    for r in runs.itertuples():
        df = store.read_metrics(out / "runs" / r.run_id, metrics=["fg_eigmin"])
        last = df[df.step == df.step.max()]
        rows.append({"width": r.width, "seed": r.seed, "run_id": r.run_id, "fg_eigmin_min": df.value.min(),
                     "fg_eigmin_final": last.value.min(), "steps": int(df.step.max())})
    pts = pd.DataFrame(rows)
    low = pts.loc[pts.fg_eigmin_min.idxmin()]
    probes = store.read_meta(out / "runs" / low.run_id)["config"]["probes"]
    return _claim("fg-eigmin-width", "§7", "the feature–gradient covariance stays non-degenerate during training: "
                  "its smallest eigenvalue is bounded away from 0 uniformly in width (Fig. 3)", pts,
                  _save(out, "fg-eigmin", pts), "width", "fg_eigmin_min", rate=None, rule="persists",
                  page=TRAJ_PAGE,
                  runs=list(pts.run_id), view={"metric": "fg_eigmin", "view": "Over steps"},
                  detail=f"λ_min of the 2P×2P covariance of [φ(h_ℓ), ĝ_ℓ] over P = {probes} "
                  f"probes, minimised over layers and steps 0..{int(pts.steps.max())}; smallest seen "
                  f"{low.fg_eigmin_min:.3g} (width {int(low.width)}, seed {int(low.seed)})")


def _gia(out: Path, profile: str, device: str, log) -> list[dict]:
    run_experiment("gia", out, profile=profile, device=device, log=log)
    pts = pd.read_parquet(out / "points-gia.parquet")
    claims = []
    for setting, rule, words in (("param=depth-mup", "vanishes", "under depth-μP reused and decoupled backward "
                                  "come together as L grows (Fig. 2, right)"),
                                 ("param=mup", "persists", "under width-only μP they do not come together as L "
                                  "grows (Fig. 2, middle)"),
                                 ("param=plain", "persists", "in a plain deep net they do not come together as L "
                                  "grows (Fig. 2, left)")):
        if (pts.setting == setting).any():
            claims.append(_claim(f"gia-{setting.split('=')[1]}", "§7", words, pts, "points-gia.parquet", "depth",
                                 "gia_gap", rate=None, rule=rule, where={"setting": setting}, page=SCALING_PAGE,
                                 runs=[], detail="relative gap of final test loss, reused vs decoupled"))
    return claims


# --- (3) training: finite vs the NFD limit ----------------------------------------------------------------
def _training(out: Path, s: dict, base: RunConfig, log) -> list[dict]:
    rows, runs = [], []
    cfg0 = dataclasses.replace(base, width=s["train_width"], steps=s["train_steps"], record_every=s["train_steps"],
                               test_every=s["train_steps"], record_coupling="off")
    for backward, coupling in (("reused", "full"), ("decoupled", "none")):
        ref = None
        for L in s["train_depths"]:
            run = run_or_reuse(dataclasses.replace(cfg0, depth=L, backward=backward), out / "runs", log)
            ref = ref or _limit(run, out / "runs", s["ref_grid"], s["particles"], coupling, base.device)
            err = profile_error(*_profile(run, "h_move", s["train_steps"]), *_profile(ref, "h_move", s["train_steps"]))
            rows.append({"coupling": coupling, "depth": L, "width": s["train_width"], "err_h_move": err,
                         "run_id": run.name, "limit_run": ref.name})
            runs += [run.name, ref.name]
    pts = pd.DataFrame(rows)
    f = _save(out, "train-limit", pts)
    return [_claim(f"train-limit-{c}", "§6", f"finite dynamics vs NFD (coupling {c}) is O(1/L) as L grows", pts, f,
                   "depth", "err_h_move", rate=-1.0, where={"coupling": c}, page=LIMIT_PAGE,
                   runs=list(pts[pts.coupling == c].run_id) + list(pts[pts.coupling == c].limit_run),
                   detail=f"RMS over τ of h_move at step {s['train_steps']}, width {s['train_width']}, against a "
                          f"K = {s['ref_grid']}, M = {s['particles']} limit run; a width floor O(n^-1/2) is included")
            for c in ("full", "none")]


# --- (6) two-layer blocks ---------------------------------------------------------------------------------
def _blocks(out: Path, s: dict, base: RunConfig, log) -> list[dict]:
    rows = []
    cfg0 = dataclasses.replace(base, block=2, width=s["block_width"], steps=s["block_steps"],
                               record_every=s["block_steps"], test_every=s["block_steps"], record_coupling="off")
    for alpha in s["alphas"]:
        for L in s["block_depths"]:
            run = run_or_reuse(dataclasses.replace(cfg0, depth=L, inner_lr_exponent=alpha), out / "runs", log)
            a = store.read_metrics(run, metrics=["a_move"], steps=[s["block_steps"]]).value.mean()
            rows.append({"alpha": alpha, "depth": L, "a_move": a, "run_id": run.name})
    pa_ = pd.DataFrame(rows)
    fa = _save(out, "blocks-amove", pa_)
    other = "; ".join(f"α={a:g}: slope {fit_loglog(g.depth, g.a_move).slope:.3g}" for a, g in pa_.groupby("alpha"))
    claims = [_claim("blocks-amove", "§1", "two-layer blocks lose feature learning in the first internal layer as "
                     "L grows (α = 0, no LR correction)", pa_, fa, "depth", "a_move", rate=None, rule="vanishes",
                     where={"alpha": 0.0}, page=TRAJ_PAGE, runs=list(pa_[pa_.alpha == 0].run_id),
                     detail=f"mean a_move over blocks at the last step; per inner-LR exponent: {other}")]
    rows = []
    cfg1 = dataclasses.replace(base, steps=s["lr_steps"], record_every=s["lr_steps"], test_every=s["lr_steps"],
                               record_coupling="off", train_size=256, batch=64, test_size=64)
    for L in s["lr_depths"]:
        for seed in range(s["lr_seeds"]):
            losses = {}
            for lr in s["lrs"]:
                run = run_or_reuse(dataclasses.replace(cfg1, depth=L, lr=lr, seed=seed), out / "runs", log)
                df = store.read_metrics(run, metrics=["loss"], steps=[s["lr_steps"]])
                loss = float(df.value.iloc[0]) if len(df) and store.read_meta(run)["status"] == "complete" else math.inf
                losses[lr] = loss if math.isfinite(loss) else math.inf
                rows.append({"depth": L, "seed": seed, "lr": lr, "loss": losses[lr], "run_id": run.name})
    pl = pd.DataFrame(rows)
    best = pl.loc[pl.groupby(["depth", "seed"]).loss.idxmin()].rename(columns={"lr": "best_lr"})
    pl = pl.merge(best[["depth", "seed", "best_lr"]], on=["depth", "seed"])
    pl["is_best"] = pl.lr == pl.best_lr  # one row per (depth, seed)
    fl = _save(out, "lr-transfer", pl)
    claims.append(_claim("lr-transfer", "§7", "under depth-μP the best learning rate does not move with depth "
                         "(hyperparameter transfer)", pl, fl, "depth", "lr", rate=0.0, where={"is_best": True},
                         page=SCALING_PAGE,
                         runs=list(pl.run_id), detail=f"best of lr ∈ {s['lrs']} by training loss after "
                                                      f"{s['lr_steps']} steps; one point per (depth, seed)"))
    return claims


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
    steps = [("init", lambda: _init(out, s, dataclasses.replace(base, device="cpu"), quiet)),
             ("coupling", lambda: _coupling(out, profile, device, quiet)),
             ("training vs limit", lambda: _training(out, s, base, quiet)),
             ("reused vs decoupled", lambda: _gia(out, profile, device, quiet)),
             ("two-layer blocks", lambda: _blocks(out, s, _task(base, profile, data_dir), quiet))]
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
           "runs_dir": "runs", "timings_s": timings, "wall_s": round(time.monotonic() - t_all, 1),
           "claims": [_clean(c) for c in claims]}
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


def _clean(obj):
    """NaN/inf -> None, numpy scalars -> Python, so claims.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def register(sub) -> None:
    """Add `python -m dynamics reproduce` to the CLI's subparsers."""
    p = sub.add_parser("reproduce", help="the paper's claims measured: runs plus OUT/claims.json",
                       description="Run the experiments behind THEORY §3–§7 (init vs limit kernels, coupling, "
                                   "training vs the limit, reused vs decoupled, two-layer blocks and LR transfer) "
                                   "as ordinary runs under OUT/runs and write OUT/claims.json: per claim the "
                                   "paper's statement, the fitted figure with its 95% interval and a verdict. "
                                   "A rerun reuses complete runs.")
    p.add_argument("--profile", default="cpu", choices=PROFILES,
                   help="smoke: seconds (tests); cpu: synthetic data on 2 cores; gpu: paper-sized, CIFAR-10")
    p.add_argument("--out", required=True, help="folder for runs/, points-*.parquet and claims.json")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--data-dir", help="gpu profile: folder holding the CIFAR-10 binary batches")
    p.add_argument("--compare", metavar="CLAIMS", help="a claims.json (or its folder) from an earlier run of this "
                   "profile, e.g. data/reproduce: check that every figure of this run lies in that run's 95%% "
                   "interval; exit status 1 if one does not")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
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
