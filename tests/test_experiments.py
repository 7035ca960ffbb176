"""The coupling experiments (issue #4): the smoke profile runs end to end, resumes, and its summary is
computed from the runs it wrote."""
import numpy as np
import pandas as pd
import pytest

from dynamics.runs import store
from dynamics.__main__ import main
from dynamics.paper.experiments import COUPLING_QUANTITIES, ExperimentError, run_experiment, summarise


def test_coupling_width_smoke_writes_runs_and_summary(tmp_path):
    s = run_experiment("coupling-width", tmp_path, profile="smoke", device="cpu", log=lambda m: None)
    assert set(s.quantity) == set(COUPLING_QUANTITIES)
    assert (s.n_points == 4).all() and (s.why.str.len() > 0).all()  # the excess may be < 0 at smoke sizes
    runs = store.list_runs(tmp_path / "runs")
    assert len(runs) == 4 and all(r["status"] == "complete" for r in runs)
    points = pd.read_parquet(tmp_path / "points-coupling-width.parquet")
    # the summary is the fit of the seed means of the points, recomputed independently here
    m = points.groupby("width").init_coupling_bwd.mean()
    assert s.set_index("quantity").slope["init_coupling_bwd"] == pytest.approx(
        np.polyfit(np.log(m.index.to_numpy(float)), np.log(m.to_numpy()), 1)[0])
    # raw, chance and excess of every coupling quantity are in the points, excess = raw − chance
    for q in ("init_coupling_bwd", "step1_coupling_fwd", "train_coupling_fwd", "step1_coupling_acc", "coupling_acc"):
        assert np.allclose(points[f"{q}_excess"], points[q] - points[f"{q}_chance"])
        assert (points[f"{q}_chance"] > 0).all()
    mtimes = {r["run_id"]: (tmp_path / "runs" / r["run_id"] / "run.json").stat().st_mtime_ns for r in runs}
    run_experiment("coupling-width", tmp_path, profile="smoke", device="cpu", log=lambda m: None)  # resume
    assert {r["run_id"]: (tmp_path / "runs" / r["run_id"] / "run.json").stat().st_mtime_ns
            for r in store.list_runs(tmp_path / "runs")} == mtimes
    assert pd.read_parquet(tmp_path / "summary.parquet").experiment.tolist() == ["coupling-width"] * 5


def test_gia_smoke_pairs_twins(tmp_path):
    s = run_experiment("gia", tmp_path, profile="smoke", device="cpu", log=lambda m: None)
    assert set(s.setting) == {"param=plain", "param=depth-mup", "depth-mup batch=full", "depth-mup task=digits"}
    points = pd.read_parquet(tmp_path / "points-gia.parquet")
    assert ((points.test_reused != points.test_decoupled) | points.diverged).all()
    # twins share the seed; the signed gaps are (decoupled − reused) / their mean
    ok = points[~points.diverged]
    assert np.allclose(ok.gap_train, (ok.loss_decoupled - ok.loss_reused) / (0.5 * (ok.loss_decoupled + ok.loss_reused)))
    assert np.allclose(ok.gia_gap, ok.gap_test.abs())
    runs = {r["run_id"]: r for r in store.list_runs(tmp_path / "runs")}
    for row in points.itertuples():
        a, b = (store.read_meta(tmp_path / "runs" / r)["config"] for r in (row.run_reused, row.run_decoupled))
        assert a["seed"] == b["seed"] == row.seed and (a["backward"], b["backward"]) == ("reused", "decoupled")
    assert len(runs) == 2 * len(points)


def test_verdicts_follow_the_interval():
    pts = pd.DataFrame({"width": [128, 256, 512, 1024] * 2, "q": [1 / w for w in [128, 256, 512, 1024]] * 2})
    row = summarise(pts.rename(columns={"q": "init_coupling_bwd"}), "width", ["init_coupling_bwd"], "x").iloc[0]
    assert row.verdict == "agrees" and row.slope == pytest.approx(-1)
    pts["init_coupling_bwd"] = 1.0 / pts.width ** 2
    assert summarise(pts, "width", ["init_coupling_bwd"], "x").iloc[0].verdict == "disagrees"


def test_bad_experiment_is_an_error(tmp_path, capsys):
    with pytest.raises(ExperimentError):
        run_experiment("nope", tmp_path)
    with pytest.raises(SystemExit):
        main(["experiment", "nope", "--out", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
def test_limit_gap_on_a_tiny_setting(tmp_path):
    """The noise-free reference of reused vs decoupled: coupling full and none limit runs of one setting per
    depth grid K; the gap is the signed relative difference of their final losses, read back here."""
    from dynamics.paper import gia
    from dynamics.paper.common import limit
    from dynamics.paper.experiments import run_or_reuse
    pts = gia.limit_gap(tmp_path, "smoke", "cpu", lambda m: None, run_or_reuse, limit)
    assert pts.grid.tolist() == gia.LIMIT_SIZES["smoke"]["grids"]
    for r in pts.itertuples():
        loss = {}
        for c, run in (("full", r.run_full), ("none", r.run_none)):
            meta = store.read_meta(tmp_path / "runs" / run)
            assert meta["status"] == "complete" and meta["config"]["depth"] == r.grid
            df = store.read_metrics(tmp_path / "runs" / run, metrics=["loss"])
            loss[c] = df[df.step == df.step.max()].value.iloc[0]
        assert r.gap == pytest.approx((loss["none"] - loss["full"]) / (0.5 * (loss["none"] + loss["full"])))
        assert r.gap != 0 and np.isfinite(r.stderr_full)  # the coupling changes the dynamics
    # the same limit runs are reused on a second call (the reference is not recomputed)
    again = gia.limit_gap(tmp_path, "smoke", "cpu", lambda m: None, run_or_reuse, limit)
    assert again.gap.tolist() == pts.gap.tolist()
