"""`python -m dynamics coordcheck`: train the rungs, judge every (metric, τ, step) row, write OUT/summary.json.

    python -m dynamics coordcheck --widths 64,128,256,512 --depths 4,8,16,32 --seeds 4 --steps 3 --out cc/
    python -m dynamics coordcheck --model examples/coordcheck_models.py:mlp --widths 64,128,256 --out cc-mlp/

Runs go to OUT/runs/ (ordinary run directories: the dashboard's Coord check page reads them), the judgement
to OUT/summary.json: `verdict` (consistent / inconsistent / inconclusive, dynamics.coordcheck.judge), the
tolerance, each axis's values, fixed value, seeds and counts, and one entry per row with its slope, 95%
interval and judgement. The exit status is 1 when the verdict is inconsistent, else 0.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..cli import add_config_flags, config_from_args
from ..config import RunConfig
from ..runs import store
from . import judge
from .ladder import Ladder, axis_value, gather
from .rungs import CoordCheckError, load_factory, train_factory, train_resnet

__all__ = ["run_check", "register", "SUMMARY", "DEFAULT_WIDTHS", "DEFAULT_DEPTHS", "DEFAULT_SEEDS", "DEFAULT_STEPS"]

SUMMARY = "summary.json"
DEFAULT_WIDTHS, DEFAULT_DEPTHS, DEFAULT_SEEDS, DEFAULT_STEPS = (64, 128, 256, 512), (4, 8, 16, 32), 6, 3
# our ResNet's recording defaults for a check: every step, the coupling off (it is not judged), tests at the ends
CHECK_DEFAULTS = {"record_every": 1, "record_coupling": "off"}


def _ladder_values(values: Sequence[int] | None, flag: str) -> tuple[int, ...]:
    if values is None:
        return ()
    values = tuple(values)
    if any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values):
        raise CoordCheckError(f"{flag} must be positive integers; got {list(values)}")
    if len(set(values)) < len(values):
        raise CoordCheckError(f"{flag} lists a value twice: {list(values)}")
    if len(values) < 2:
        raise CoordCheckError(f"{flag} needs at least 2 values to fit a slope; got {list(values)}")
    return tuple(sorted(values))


def run_check(out: Path, *, base: RunConfig | None = None, model: str | None = None,
              widths: Sequence[int] | None = None, depths: Sequence[int] | None = None,
              seeds: int = DEFAULT_SEEDS, steps: int = DEFAULT_STEPS, tolerance: float = judge.TOLERANCE,
              progress: bool = False, workers: int | None = None) -> dict[str, Any]:
    """Train (or reuse) every rung, judge, write out/summary.json and return it (module docstring).

    base: our ResNet's setting (widths train at base.depth, depths at base.width, seeds base.seed + k);
    model: 'module:function' of a factory instead (rungs.py), called as function(width, depth) with
    width/depth fixed at base's for the other ladder. steps is the number of training steps."""
    widths, depths = _ladder_values(widths, "--widths"), _ladder_values(depths, "--depths")
    if not widths and not depths:
        raise CoordCheckError("give --widths and/or --depths (at least 2 values each)")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2:
        raise CoordCheckError(f"--seeds must be at least 2 (the interval resamples seeds); got {seeds!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise CoordCheckError(f"--steps must be at least 1; got {steps!r}")
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance > 0):
        raise CoordCheckError(f"--tolerance must be a positive number; got {tolerance!r}")
    base = replace(base or RunConfig(**CHECK_DEFAULTS), steps=steps)
    factory = load_factory(model) if model is not None else None  # an import error writes nothing
    out = store.check_writable(Path(out))
    folder = out / "runs"
    if model is None:
        paths = train_resnet(base, widths, depths, seeds, folder, progress=progress, workers=workers)
    else:
        points = [(w, base.depth, base.seed + k) for w in widths for k in range(seeds)]
        points += [(base.width, d, base.seed + k) for d in depths for k in range(seeds)
                   if (base.width, d, base.seed + k) not in points]
        paths = train_factory(model, points, steps, folder, progress=progress, factory=factory)
    metas = [store.read_meta(p) for p in paths]
    axes: dict[str, Any] = {}
    rows = []
    for axis, values, other, fixed in (("width", widths, "depth", base.depth), ("depth", depths, "width", base.width)):
        if not values:
            continue
        runs = [m for m in metas if axis_value(m, other) == fixed and axis_value(m, axis) in values]
        ladder = Ladder(axis, {other: fixed}, {}, runs)
        r = judge.fit_rows(gather(ladder), axis, tol=tolerance)
        rows.append(r)
        axes[axis] = {"values": list(values), "fixed": {other: fixed}, "seeds": seeds, **judge.overall(r),
                      "diverged": sorted(m["run_id"] for m in runs if m.get("status") == "diverged")}
    table = pd.concat(rows, ignore_index=True)
    summary = {"schema_version": 1, "kind": "coordcheck", **judge.overall(table), "tolerance": tolerance,
               "rule": "flat: the 95% seed-bootstrap interval of the log-log slope lies in [-tol, tol]; grows/shrinks:"
                       " it lies beyond; inconclusive: it straddles; verdict inconsistent if any row grows, shrinks "
                       f"or diverged, consistent if none does and at least {judge.CONSISTENT_SHARE:.0%} of rows are "
                       "flat (docs/coordcheck.md)",
               "model": model or "dynamics ResNet", "setting": base.to_dict() if model is None else
               {"model": model, "width": base.width, "depth": base.depth, "seed": base.seed},
               "steps": steps, "seeds": seeds, "axes": axes, "not_judged": judge.NOT_JUDGED,
               "runs": "runs", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "rows": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
                        for row in table.to_dict("records")]}
    store.write_json_atomic(out / SUMMARY, summary)
    return summary


# --- the command line ---------------------------------------------------------------------------------------
def _ints(flag: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            return tuple(int(p) for p in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a comma list of integers, e.g. 64,128,256; "
                                             f"got {text!r}") from None
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    """Add `python -m dynamics coordcheck` to the CLI's subparsers."""
    p = sub.add_parser("coordcheck", help="coordinate check: is every layer Θ(1) across width and depth?",
                       description="Train our ResNet (or your model: --model) for a few steps over a ladder of "
                                   "widths and/or depths × seeds, fit every (metric, layer, step)'s log-log slope "
                                   "with a seed bootstrap, judge it against depth-μP's Θ(1) and write "
                                   "OUT/summary.json; prints the rows that fail. Reruns reuse finished runs.")
    add_config_flags(p)
    ours = {"steps": f"training steps per run (default here: {DEFAULT_STEPS})",
            **{k: f"(default here: {v})" for k, v in CHECK_DEFAULTS.items()}}
    for action in p._actions:  # the check's own defaults, not RunConfig's, in --help
        if action.dest in ours:
            action.help = ours[action.dest]
    p.add_argument("--widths", type=_ints("--widths"), help="widths at --depth, e.g. 64,128,256,512")
    p.add_argument("--depths", type=_ints("--depths"), help="depths at --width, e.g. 4,8,16,32 "
                   "(neither given: both ladders, widths 64..512 and depths 4..32)")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"seeds per rung: --seed + 0..S-1 "
                   f"(default: {DEFAULT_SEEDS})")
    p.add_argument("--model", help="module:function (or file.py:function) of a factory(width, depth) for your "
                                   "own model (docs/coordcheck.md); then only --steps, --seed, --width, --depth apply")
    p.add_argument("--tolerance", type=float, default=judge.TOLERANCE,
                   help=f"a slope within ±tolerance counts as flat (default: {judge.TOLERANCE})")
    p.add_argument("--out", required=True, help="folder for runs/ and summary.json")
    p.add_argument("--workers", type=int, help="parallel runs (our ResNet; default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    given = [f.name for f in fields(RunConfig) if getattr(args, f.name, None) is not None]
    if args.model:
        extra = sorted(set(given) - {"steps", "seed", "width", "depth"})
        if extra:
            raise CoordCheckError(f"--{extra[0].replace('_', '-')} sets our ResNet, not a --model factory's "
                                  f"model; set it inside your factory")
    steps = args.steps if args.steps is not None else DEFAULT_STEPS
    base = config_from_args(args, RunConfig(**CHECK_DEFAULTS))
    widths, depths = args.widths, args.depths
    if widths is None and depths is None:
        widths, depths = DEFAULT_WIDTHS, DEFAULT_DEPTHS
    s = run_check(Path(args.out), base=base, model=args.model, widths=widths, depths=depths, seeds=args.seeds,
                  steps=steps, tolerance=args.tolerance, progress=not args.quiet, workers=args.workers)
    print(report(s, args.out))
    return 1 if s["verdict"] == "inconsistent" else 0


def report(summary: dict[str, Any], out: str, max_rows: int = 20) -> str:
    """The verdict, each axis's counts, and the failing rows (largest |slope| first)."""
    lines = [f"coordcheck: {summary['verdict']} with depth-μP's Θ(1) (tolerance ±{summary['tolerance']:g} on the "
             f"log-log slope; {summary['seeds']} seeds, steps 0..{summary['steps']})"]
    for axis, a in summary["axes"].items():
        counts = ", ".join(f"{v} {k}" for k, v in sorted(a["counts"].items()))
        fixed = ", ".join(f"{k} {v}" for k, v in a["fixed"].items())
        lines.append(f"  over {axis} {','.join(map(str, a['values']))} ({fixed}): {a['verdict']} ({counts})")
    bad = [r for r in summary["rows"] if r["judgement"] in ("grows", "shrinks")]
    gone = [r for r in summary["rows"] if r["judgement"] == "diverged"]
    if bad or gone:
        lines.append(f"failing rows ({len(bad) + len(gone)}):")
    for axis in summary["axes"]:
        here = sorted({r["step"] for r in gone if r["axis"] == axis})
        if here:
            why = next(r["why"] for r in gone if r["axis"] == axis)
            lines.append(f"  {axis:<5} {sum(r['axis'] == axis for r in gone)} rows at steps "
                         f"{here[0]}..{here[-1]}: diverged (e.g. {why})")
    for r in bad[:max_rows]:
        slope = "" if r["slope"] is None else f" slope {r['slope']:+.2f}"
        lines.append(f"  {r['axis']:<5} {r['metric']:<9} tau {r['tau']:.3g} step {r['step']}: {r['judgement']}"
                     f"{slope} ({r['why']})")
    if len(bad) > max_rows:
        lines.append(f"  ... {len(bad) - max_rows} more in summary.json")
    lines.append(f"summary: {out.rstrip('/')}/{SUMMARY}; runs: {out.rstrip('/')}/runs (dashboard: Coord check page)")
    return "\n".join(lines)
