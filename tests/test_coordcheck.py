"""The coordinate check (dynamics/coordcheck): the judgement rule, its power on synthetic ladders with known
slopes, the verdict on parametrizations known to be right and wrong (depth-μP and width-only μP over widths,
sp over widths; depth-μP against width-only μP over depths), user-model factories end to end (an MLP in μP and
in sp, a residual CNN with and without its 1/√L), reuse of finished runs, and one-line refusals.

What theory says (docs/theory.md §1–2, docs/coordcheck.md): every judged metric is a squared coordinate size,
Θ(1) in n and L under depth-μP. sp's 1/√n readout and un-scaled learning rate leave the features moving like
n^−1/2, so h_move ∝ 1/n (slope −1) over widths, while at initialisation sp's forward pass is the same as μP's
(h_sq flat). Width-only μP (branch β, not β/√L) is right in width but its h_sq grows like (1 + β²/2)^ℓ over
depth at fixed τ.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dynamics.config import RunConfig
from dynamics.coordcheck import CoordCheckError, fit_rows, overall, run_check
from dynamics.coordcheck.judge import TOLERANCE, common_taus, judge_interval
from dynamics.paper.stats import Interval
from dynamics.runs import store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "coordcheck_models.py"


# --- the rule -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("low, high, expected", [(-0.2, 0.3, "flat"), (0.6, 1.4, "grows"), (-1.5, -0.7, "shrinks"),
                                                 (-0.2, 0.8, "inconclusive"), (-0.6, 0.4, "inconclusive")])
def test_an_interval_decides_only_when_it_clears_the_tolerance(low, high, expected):
    assert judge_interval(Interval((low + high) / 2, low, high, 6), 0.5)[0] == expected


def test_no_interval_is_inconclusive_and_says_why():
    j, why = judge_interval(Interval(0.1, math.nan, math.nan, 1))
    assert j == "inconclusive" and "fewer than 2 seeds" in why
    _, why = judge_interval(Interval(0.4, -0.2, 1.0, 6), 0.5)
    assert "seeds would decide it" in why


def test_depth_rows_are_the_depth_times_every_depth_has():
    assert [float(t) for t in common_taus([2, 4, 8])] == [0.0, 0.5, 1.0]
    assert [float(t) for t in common_taus([4])] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [float(t) for t in common_taus([3, 4])] == [0.0, 1.0]


def _ladder(slopes: dict[str, float], xs=(64, 128, 256, 512), seeds=6, noise=0.2, depth=2, steps=(0, 1),
            rng_seed=0) -> pd.DataFrame:
    """A synthetic width ladder: value = x^slope · lognormal(noise) per seed, every layer and step."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for metric, b in slopes.items():
        for x in xs:
            for s in range(seeds):
                for step in steps:
                    for layer in range(depth + 1):
                        v = (x / xs[0]) ** b * math.exp(noise * rng.standard_normal())
                        rows.append((x, str(s), depth, step, layer, metric, v, False))
    return pd.DataFrame(rows, columns=["x", "seed", "depth", "step", "layer", "metric", "value", "diverged"])


def test_known_slopes_are_judged_flat_and_shrinking():
    rows = fit_rows(_ladder({"h_sq": 0.0, "h_move": -1.0}), "width")
    assert set(rows.loc[rows.metric == "h_sq", "judgement"]) == {"flat"}
    # movements are not judged at the reference step (they are 0 there)
    assert set(rows.loc[rows.metric == "h_move", "step"]) == {1}
    assert set(rows.loc[rows.metric == "h_move", "judgement"]) == {"shrinks"}
    assert rows["judgement"].iloc[0] == "shrinks"  # failing rows first
    assert overall(rows)["verdict"] == "inconsistent"
    assert overall(rows[rows.metric == "h_sq"])["verdict"] == "consistent"


def test_too_few_seeds_or_too_much_noise_is_inconclusive_not_a_verdict():
    rows = fit_rows(_ladder({"h_sq": -1.0}, seeds=2, noise=0.5), "width")
    assert set(rows["judgement"]) == {"inconclusive"}
    assert overall(rows)["verdict"] == "inconclusive"


def test_the_verdict_tolerates_a_few_undecided_rows_but_not_many():
    rows = lambda flat, undecided, failing=0: pd.DataFrame(  # noqa: E731
        {"judgement": ["flat"] * flat + ["inconclusive"] * undecided + ["shrinks"] * failing})
    assert overall(rows(97, 3))["verdict"] == "consistent"          # 97% flat, none failing
    assert overall(rows(90, 10))["verdict"] == "inconclusive"
    assert overall(rows(99, 0, 1))["verdict"] == "inconsistent"     # one failing row decides
    assert overall(rows(0, 0))["verdict"] == "inconclusive"


def test_the_rule_has_power_and_a_small_false_alarm_rate():
    """200 flat rows and 200 rows falling like 1/n, 6 seeds, 30% seed-to-seed noise, widths 64..512 (the
    spread measured on real ladders is smaller): no flat row is called failing, fewer than 2% stay
    inconclusive, and at least 95% of the 1/n rows are caught (none is called flat)."""
    flat = fit_rows(_ladder({"h_sq": 0.0}, noise=0.3, depth=99, rng_seed=1), "width", n_boot=400)
    fall = fit_rows(_ladder({"h_sq": -1.0}, noise=0.3, depth=99, rng_seed=2), "width", n_boot=400)
    assert len(flat) == len(fall) == 200
    assert (flat["judgement"] == "shrinks").sum() == 0 and (flat["judgement"] == "inconclusive").mean() < 0.02
    assert (fall["judgement"] == "shrinks").mean() >= 0.95 and (fall["judgement"] == "flat").sum() == 0


def test_a_diverged_rung_fails_its_rows():
    f = _ladder({"h_sq": 0.0}, steps=(0, 1, 2))
    gone = (f.x == 512) & (f.step == 2)
    f = f[~gone].assign(diverged=lambda d: d.x == 512)
    rows = fit_rows(f, "width")
    assert set(rows.loc[rows.step == 2, "judgement"]) == {"diverged"}
    assert set(rows.loc[rows.step < 2, "judgement"]) == {"flat"}
    assert overall(rows)["verdict"] == "inconsistent"


# --- our ResNet: parametrizations known to be right and wrong ------------------------------------------------
def _check(tmp_path, name, **kw):
    base = RunConfig(record_every=1, record_coupling="off", train_size=256, **kw.pop("base", {}))
    return run_check(tmp_path / name, base=base, seeds=6, steps=3, **kw)


def _judged(summary, metric=None):
    return {(r["metric"], r["judgement"]) for r in summary["rows"] if metric in (None, r["metric"])}


@pytest.mark.slow
def test_over_widths_depth_mup_and_mup_are_flat_and_sp_features_stop_moving(tmp_path):
    """Widths 64..512 at depth 2 (cheap: 2 blocks): sp's h_move and h_step fall like 1/n (slope ≈ −1.1) while
    its initial h_sq is as flat as μP's; depth-μP and width-only μP are consistent over widths."""
    widths = (64, 128, 256, 512)
    good = _check(tmp_path, "depth-mup", widths=widths, base={"depth": 2})
    mup = _check(tmp_path, "mup", widths=widths, base={"depth": 2, "param": "mup"})
    sp = _check(tmp_path, "sp", widths=widths, base={"depth": 2, "param": "sp"})
    assert good["verdict"] == "consistent" and mup["verdict"] == "consistent"
    assert sp["verdict"] == "inconsistent"
    failing = [r for r in sp["rows"] if r["judgement"] in ("grows", "shrinks", "diverged")]
    assert failing and {r["metric"] for r in failing} <= {"h_move", "h_step", "g_move"}
    assert "h_step" in {r["metric"] for r in failing}  # the per-step change stops too, like the movement
    assert all(r["judgement"] == "shrinks" and r["ci_high"] < -TOLERANCE for r in failing)
    assert _judged(sp, "h_sq") == {("h_sq", "flat")}
    on_disk = json.loads((tmp_path / "sp" / "summary.json").read_text())
    assert on_disk["verdict"] == "inconsistent" and on_disk["axes"]["width"]["values"] == list(widths)


@pytest.mark.slow
def test_over_depths_depth_mup_is_flat_and_width_only_mup_grows(tmp_path):
    """Depths 2..16 at width 128: depth-μP consistent; μP's h_sq at the top grows with L already at
    initialisation (its later steps diverge at the largest depths, which also fails them)."""
    depths = (2, 4, 8, 16)
    good = _check(tmp_path, "depth-mup", depths=depths, base={"width": 128})
    mup = _check(tmp_path, "mup", depths=depths, base={"width": 128, "param": "mup"})
    assert good["verdict"] == "consistent"
    assert mup["verdict"] == "inconsistent"
    top0 = next(r for r in mup["rows"] if r["metric"] == "h_sq" and r["tau"] == 1.0 and r["step"] == 0)
    assert top0["judgement"] == "grows" and top0["ci_low"] > 1.0
    bottom0 = next(r for r in mup["rows"] if r["metric"] == "h_sq" and r["tau"] == 0.0 and r["step"] == 0)
    assert bottom0["judgement"] == "flat"  # h_0 = Ux/√d does not see the depth


@pytest.mark.slow
def test_a_rerun_reuses_every_finished_run(tmp_path):
    first = _check(tmp_path, "cc", widths=(32, 64), base={"depth": 2})
    runs = sorted((tmp_path / "cc" / "runs").iterdir())
    stamps = {p.name: (p / store.RUN_JSON).stat().st_mtime_ns for p in runs if p.is_dir()}
    again = _check(tmp_path, "cc", widths=(32, 64), base={"depth": 2})
    assert {p.name: (p / store.RUN_JSON).stat().st_mtime_ns for p in runs if p.is_dir()} == stamps
    assert again["rows"] == first["rows"]
    manifest = json.loads((tmp_path / "cc" / "runs" / "sweep.json").read_text())
    assert not any(e["attempted"] for e in manifest["runs"])


# --- a user's model --------------------------------------------------------------------------------------------
def _model(tmp_path, name, fn, seeds=6, steps=3, **kw):
    base = RunConfig(**{k: kw.pop(k) for k in ("width", "depth") if k in kw})
    return run_check(tmp_path / name, base=base, model=f"{EXAMPLES}:{fn}", seeds=seeds, steps=steps, **kw)


def _fails(summary):
    return [r for r in summary["rows"] if r["judgement"] in ("grows", "shrinks", "diverged")]


@pytest.mark.slow
def test_an_mlp_factory_end_to_end_in_mup_and_in_sp(tmp_path):
    """Widths 64..512 at 2 hidden layers (as for our ResNet, sp's movement reaches its 1/n regime only from
    about 128 on; measured: sp's h_move slope −1.02 to −1.08 on every row, μP's within ±0.15)."""
    good = _model(tmp_path, "mlp", "mlp", widths=(64, 128, 256, 512), depth=2)
    sp = _model(tmp_path, "mlp_sp", "mlp_sp", widths=(64, 128, 256, 512), depth=2)
    assert not _fails(good) and good["verdict"] != "inconsistent"
    assert sp["verdict"] == "inconsistent" and {r["metric"] for r in _fails(sp)} == {"h_move", "h_step"}
    run = store.read_meta(next(p for p in (tmp_path / "mlp" / "runs").iterdir() if p.is_dir()))
    assert run["kind"] == "imported" and run["config"]["coordcheck"]["width"] in (64, 128, 256, 512)
    assert len(run["layers"]) == 3  # h_0 (the first block's input) and two blocks


@pytest.mark.slow
def test_a_residual_cnn_factory_end_to_end_and_its_missing_depth_factor(tmp_path):
    """Channels 8..32 at 2 blocks and 2..8 blocks at 8 channels, 4 seeds, 2 steps: no row fails; without 1/√L
    (width-only μP) rows grow with depth from initialisation on."""
    good = _model(tmp_path, "cnn", "cnn", widths=(8, 16, 32), depths=(2, 4, 8), width=8, depth=2, seeds=4,
                  steps=2)
    assert not _fails(good) and set(good["axes"]) == {"width", "depth"}
    run = store.read_meta(next(p for p in (tmp_path / "cnn" / "runs").iterdir() if p.is_dir()))
    assert run["layers"][0]["shape"][1:] == [8, 8] and run["layers"][0]["layout"].endswith("64 positions")
    bad = _model(tmp_path, "cnn_mup", "cnn_mup", depths=(2, 4, 8), width=8, depth=2, seeds=3, steps=1)
    assert bad["verdict"] == "inconsistent" and {r["judgement"] for r in _fails(bad)} == {"grows"}
    # the layer increment L·|h_ℓ − h_ℓ−1|²/n grows like L (and faster) without the 1/√L, from step 0 on
    assert any(r["metric"] == "diversity" and r["step"] == 0 for r in _fails(bad))


def _factory_file(tmp_path, body: str) -> str:
    path = tmp_path / "factories.py"
    path.write_text("import torch\nfrom torch import nn\n" + body)
    return f"{path}:make"


def test_a_factory_that_returns_the_wrong_thing_is_one_clear_error(tmp_path):
    spec = _factory_file(tmp_path, "def make(width, depth):\n    return nn.Linear(width, 1)\n")
    with pytest.raises(CoordCheckError, match="must return model, probe, a callable step"):
        run_check(tmp_path / "out", model=spec, widths=(8, 16), seeds=2, steps=1)
    assert not any((tmp_path / "out" / "runs").iterdir())


def test_a_training_step_that_raises_leaves_no_run_behind(tmp_path):
    spec = _factory_file(tmp_path, (
        "def make(width, depth):\n"
        "    blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))\n"
        "    model = nn.Sequential(nn.Linear(4, width), *blocks)\n"
        "    def step():\n        raise RuntimeError('boom')\n"
        "    return {'model': model, 'blocks': list(blocks), 'probe': torch.randn(4, 4), 'step': step}\n"))
    with pytest.raises(CoordCheckError, match=r"training step 1: RuntimeError: boom"):
        run_check(tmp_path / "out", model=spec, widths=(8, 16), seeds=2, steps=1, base=RunConfig(depth=2))
    assert [p.name for p in (tmp_path / "out" / "runs").iterdir()] == []


# --- the command line ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["--widths", "64"], "--widths needs at least 2 values"),
    (["--widths", "64,64,128"], "lists a value twice"),
    (["--widths", "64,x"], "comma list of integers"),
    (["--widths", "64,128", "--seeds", "1"], "--seeds must be at least 2"),
    (["--widths", "64,128", "--steps", "0"], "--steps must be at least 1"),
    (["--widths", "64,128", "--tolerance", "0"], "--tolerance must be a positive number"),
    (["--model", "nosuchmodule_xyz:make", "--widths", "8,16"], "cannot import nosuchmodule_xyz"),
    (["--model", "nocolon", "--widths", "8,16"], "must look like module:function"),
    (["--model", f"{EXAMPLES}:nosuch", "--widths", "8,16"], "has no function nosuch"),
    (["--model", f"{EXAMPLES}:mlp", "--lr", "0.1", "--widths", "8,16"], "--lr sets our ResNet"),
    (["--widths", "64,128", "--param", "nope"], "param='nope' is not supported"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, words):
    from dynamics.__main__ import main
    out = tmp_path / "cc"
    try:
        code = main(["coordcheck", *argv, "--out", str(out), "--quiet"])
    except SystemExit as e:  # argparse's own refusals (a flag's type) exit from the parser
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and words in err
    assert err.startswith("python -m dynamics") and " error: " in err
    assert not (out / "summary.json").exists()


@pytest.mark.slow
def test_the_command_prints_the_failing_rows_and_exits_1_when_inconsistent(tmp_path, capsys):
    from dynamics.__main__ import main
    code = main(["coordcheck", "--model", f"{EXAMPLES}:cnn_mup", "--depths", "2,4,8", "--width", "8",
                 "--seeds", "3", "--steps", "1", "--out", str(tmp_path / "cc"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 1 and out.startswith("coordcheck: inconsistent")
    assert "failing rows" in out and "h_sq" in out and "summary.json" in out


def test_ladders_are_found_among_any_runs():
    """A sweep's width × depth grid holds a width ladder per depth and a depth ladder per width; recorded runs
    (dynamics.record: config width = the feature size, depth = the blocks) and factory runs (their
    coordcheck section) ladder too; other settings, limit runs and unfinished runs stay apart."""
    from dynamics.coordcheck import find_ladders

    def meta(kind="finite", status="complete", **cfg):
        return {"kind": kind, "status": status, "config": cfg, "run_id": str(cfg), "path": "."}
    grid = [meta(width=w, depth=d, seed=s, param="sp") for w in (64, 128) for d in (2, 4) for s in (0, 1)]
    found = {(l.axis, json.dumps(l.fixed), len(l.runs)) for l in find_ladders(grid)}
    assert found == {("width", '{"depth": 2}', 4), ("width", '{"depth": 4}', 4),
                     ("depth", '{"width": 64}', 4), ("depth", '{"width": 128}', 4)}
    recorded = [meta("imported", width=n, depth=3, source="x") for n in (32, 64, 128)]
    factory = [meta("imported", model="m:f", width=n * 64, depth=2, coordcheck={"width": n, "depth": 2}, seed=0)
               for n in (8, 16)]
    others = [meta(width=256, depth=2, param="mup"), meta("limit", width=512, depth=2, param="sp"),
              meta(status="running", width=512, depth=2, param="sp", seed=0)]
    ladders = find_ladders(recorded + factory + others)
    assert sorted((l.axis, l.values) for l in ladders) == [("width", [8, 16]), ("width", [32, 64, 128])]
