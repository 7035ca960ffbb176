"""`python -m dynamics reproduce`: the smoke profile end to end (claims.json from the runs it wrote, every figure
recomputable from its points file, a rerun reuses the runs) and the home page's "Claims vs measured" table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dynamics.runs import store
from dynamics.__main__ import main
from dynamics.paper.fits import fit_loglog
from dynamics.paper.experiments import ExperimentError
from dynamics.paper.reproduce import CLAIMS_JSON, compare_claims, reproduce
from dynamics.paper.verdicts import recompute

APP = Path(__file__).resolve().parents[1] / "app.py"
FIELDS = ("statement", "measured", "ci", "verdict", "page", "runs", "points", "x", "y")


def _rounded(obj):
    """obj with every float to 10 significant digits (nested dicts and lists)."""
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return float(f"{obj:.10g}") if isinstance(obj, float) else obj


def _nan(v):
    """claims.json writes NaN as null."""
    return float("nan") if v is None else v


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    lines: list[str] = []
    doc = reproduce(out, profile="smoke", device="cpu", log=lines.append)
    return out, doc, lines


@pytest.mark.slow
def test_smoke_writes_claims_for_every_experiment(smoke):
    out, doc, lines = smoke
    assert json.loads((out / CLAIMS_JSON).read_text()) == doc
    assert len(lines) == 6 and all(line.startswith(f"[{i}/6]") for i, line in enumerate(lines, 1))  # progress
    ids = {c["id"] for c in doc["claims"]}
    assert {"init-width", "init-depth", "coupling-init-width", "coupling-init-depth", "train-limit-full",
            "train-limit-none", "coupling-train-depth", "gia-depth-mup", "blocks-amove", "lr-transfer",
            "fg-eigmin-width", "coupling-step1-width", "coupling-acc-depth", "gia-fullbatch-depth-mup",
            "gia-digits-depth-mup", "gia-limit", "train-limit-width-full", "gia-limit-xent", "blocks-limit-alpha0",
            "blocks-limit-alpha1", "blocks-alearn", "blocks-alearn-alpha-half", "blocks-alearn-alpha1",
            "blocks-limit-alearn-alpha0", "blocks-limit-alearn-alpha-half", "blocks-limit-alearn-alpha1",
            "blocks-alearn-digits", "blocks-alearn-digits-alpha-half", "blocks-loss-alpha-half"} <= ids
    present = {r["run_id"]: r["status"] for r in store.list_runs(out / "runs")}
    for c in doc["claims"]:
        assert all(k in c for k in FIELDS), c["id"]
        assert c["verdict"] in ("agrees", "disagrees", "inconclusive")
        assert c["alternative"]["words"] and c["theory"].startswith("docs/theory.md")  # issue 13
        assert (Path(APP).parent / c["theory"].split("#")[0]).exists()
        if c["id"].startswith("coupling-") and c["y"].endswith("_excess"):
            assert c["raw"]["y"] == c["y"][:-len("_excess")]
        assert (Path(APP).parent / c["page"]).exists()
        assert all(present.get(r) in ("complete", "diverged") for r in c["runs"]), c["id"]


@pytest.mark.slow
def test_smoke_limit_references_are_the_runs_they_name(smoke):
    """gia-limit-xent: coupling full and none limit runs of the digits task with cross-entropy (C = 10) per grid;
    blocks-limit-alpha*, blocks-limit-alearn-*: limit runs of two-layer blocks at that α, one per grid, whose a_move
    and a_learn (mean over blocks at the last step) are the points file's; the finite blocks claim quotes the limit
    at the same depth; the finite a_learn claims read the largest width, where every α was trained."""
    from dynamics.paper import blocks, gia
    out, doc, _ = smoke
    by = {c["id"]: c for c in doc["claims"]}
    meta = [store.read_meta(out / "runs" / r) for r in by["gia-limit-xent"]["runs"]]
    assert {(m["kind"], m["config"]["task"], m["config"]["loss"], m["config"]["classes"]) for m in meta} == {
        ("limit", "digits", "xent", 10)}
    assert sorted((m["limit"]["grid"], m["limit"]["coupling"]) for m in meta) == sorted(
        (K, c) for K in gia.LIMIT_XENT_SIZES["smoke"]["grids"] for c in ("full", "none"))
    pts = pd.read_parquet(out / "points-blocks-limit.parquet")
    for alpha, cid in ((0.0, "blocks-limit-alpha0"), (1.0, "blocks-limit-alpha1"), (0.0, "blocks-limit-alearn-alpha0"),
                       (0.5, "blocks-limit-alearn-alpha-half"), (1.0, "blocks-limit-alearn-alpha1")):
        c = by[cid]
        base = c["extra"].get("base", c["method"])  # α = 1 is a contrast against α = 0 (1/2), both limit slopes
        assert base == "mc_slope" and c["where"] == {"alpha": alpha} and c["page"] == "pages/3_Limit.py"
        assert c["extra"]["se"] == f"{c['y']}_stderr"
        limits = [store.read_meta(out / "runs" / r) for r in c["runs"]]
        limits = [m for m in limits if m["kind"] == "limit"]
        assert {(m["config"]["block"], m["config"]["inner_lr_exponent"]) for m in limits} <= {
            (2, alpha), (2, c.get("reference", {}).get("where", {}).get("alpha"))}  # a contrast: its reference too
        own = [m for m in limits if m["config"]["inner_lr_exponent"] == alpha]
        assert sorted(m["limit"]["grid"] for m in own) == blocks.LIMIT_SIZES["smoke"]["grids"]
        for r in pts[pts.alpha == alpha].itertuples():
            for y in ("a_move", "a_learn"):
                m = store.read_metrics(out / "runs" / r.run, metrics=[y])
                last = m[m.step == m.step.max()]
                assert getattr(r, y) == pytest.approx(last.value.mean()), (cid, y)
                assert getattr(r, f"{y}_stderr") == pytest.approx(last.stderr.mean()), (cid, y)
    assert "L=K=2:" in by["blocks-amove"]["detail"] and "blocks-limit-alpha0" in by["blocks-amove"]["detail"]
    finite = pd.read_parquet(out / "points-blocks-amove.parquet")
    for cid, alpha in (("blocks-alearn", 0.0), ("blocks-alearn-alpha-half", 0.5), ("blocks-alearn-alpha1", 1.0)):
        c = by[cid]
        assert c["where"] == {"alpha": alpha, "width": int(finite.width.max())} and c["y"] == "a_learn", cid
        for name in c["runs"]:
            meta = store.read_meta(out / "runs" / name)
            assert meta["config"]["block"] == 2 and meta["config"]["width"] == finite.width.max()
    assert by["blocks-alearn-alpha1"]["reference"]["where"]["alpha"] == 0.5
    ratio = pd.read_parquet(out / by["blocks-loss-alpha-half"]["points"])  # paired by seed at the largest width
    top = finite.width.max()
    for r in ratio.itertuples():
        pair = finite[(finite.width == top) & (finite.depth == r.depth) & (finite.seed == r.seed)].set_index("alpha")
        assert r.log10_loss_ratio == pytest.approx(np.log10(pair.loss[0.5] / pair.loss[0.0]))
    for cid in ("blocks-alearn-digits", "blocks-alearn-digits-alpha-half"):  # the real-data variant
        cfgs = [store.read_meta(out / "runs" / r)["config"] for r in by[cid]["runs"]]
        assert {(c["task"], c["loss"], c["classes"], c["block"]) for c in cfgs} == {("digits", "xent", 10, 2)}


@pytest.mark.slow
def test_every_figure_is_recomputed_from_its_points(smoke):
    out, doc, _ = smoke
    for c in doc["claims"]:
        pts = pd.read_parquet(out / c["points"])
        for k, v in c["where"].items():
            pts = pts[pts[k] == v]
        assert len(pts) == c["n_points"], c["id"]
        got = recompute(c, pd.read_parquet(out / c["points"]))
        assert _nan(c["measured"]) == pytest.approx(got.value, nan_ok=True), c["id"]
        assert c["ci"] == pytest.approx([v if v == v else None for v in (got.low, got.high)], nan_ok=True), c["id"]
        if c["method"] == "points":  # the plain log-log fit of the rows, as before issue 13
            assert c["measured"] == pytest.approx(fit_loglog(pts[c["x"]], pts[c["y"]]).slope, nan_ok=True)


@pytest.mark.slow
def test_rerun_reuses_runs(smoke, monkeypatch):
    out, doc, _ = smoke
    mtimes = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/run.json")}

    def never(*a, **k):
        raise AssertionError("a rerun trained or solved again instead of reusing the run")
    monkeypatch.setattr("dynamics.train.train", never)            # both are looked up when called
    monkeypatch.setattr("dynamics.limit.run.limit_like", never)
    again = reproduce(out, profile="smoke", device="cpu", log=lambda m: None)
    assert {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/run.json")} == mtimes
    assert [c["measured"] for c in again["claims"]] == [c["measured"] for c in doc["claims"]]


@pytest.mark.slow
def test_bundle_holds_each_claims_span_and_replaces_the_old_one(smoke, tmp_path, capsys):
    """--bundle DEST: claims, points and per claim the first seed's runs across its x values (plus each limit
    run's finite twin); a stale file of an earlier bundle is gone; DEST = OUT is refused before any work."""
    from dashboard import evidence
    from dynamics.paper.bundle import claim_runs
    out, doc, _ = smoke
    dest = tmp_path / "bundle"
    (dest / "runs" / "stale").mkdir(parents=True)
    assert main(["reproduce", "--profile", "smoke", "--out", str(out), "--rejudge", "--bundle", str(dest)]) == 0
    assert "bundle: " in capsys.readouterr().out and not (dest / "runs" / "stale").exists()
    got = json.loads((dest / CLAIMS_JSON).read_text())
    assert [c["id"] for c in got["claims"]] == [c["id"] for c in doc["claims"]]
    assert {p.name for p in out.glob("points-*.parquet")} == {p.name for p in dest.glob("points-*.parquet")}
    by = {c["id"]: c for c in got["claims"]}
    for c in got["claims"]:
        for name in claim_runs(out, c):
            assert (dest / "runs" / name / "run.json").is_file(), (c["id"], name)
            meta = store.read_meta(dest / "runs" / name)
            if meta["kind"] == "limit":
                assert (dest / "runs" / meta["limit"]["like"] / "run.json").is_file()
    c = by["blocks-alearn"]  # the link opens the first seed at every depth the claim reads
    page, params = evidence.run_link(dest / "runs", c)
    depths = {store.read_meta(dest / "runs" / r)["config"]["depth"] for r in params["runs"]}
    assert page == "pages/2_Trajectories.py" and params["metric"] == "a_learn"
    assert depths == set(pd.read_parquet(out / c["points"]).depth)
    assert main(["reproduce", "--profile", "smoke", "--out", str(out), "--bundle", str(out)]) == 2
    assert "DEST must not be OUT" in capsys.readouterr().err


@pytest.mark.slow
def test_a_rerun_from_scratch_reproduces_every_claim(smoke, tmp_path, capsys):
    """The must-hold of issue 9: same seeds, a fresh folder (no run reused) -> every figure in the first run's
    95% interval, the same verdicts; the CLI says so and exits 0."""
    out, doc, _ = smoke
    assert main(["reproduce", "--profile", "smoke", "--device", "cpu", "--out", str(tmp_path / "again"),
                 "--compare", str(out)]) == 0
    again = json.loads((tmp_path / "again" / CLAIMS_JSON).read_text())
    rows = compare_claims(doc, again)
    assert len(rows) == len(doc["claims"]) and all(r["within_ci"] for r in rows)
    assert [r["verdict"] for r in rows] == [r["ref_verdict"] for r in rows]
    assert f"reproduced {len(rows)} of {len(rows)} claims" in capsys.readouterr().out


def test_compare_flags_a_figure_outside_its_interval_and_a_missing_claim():
    new = json.loads(json.dumps(CLAIMS))
    assert all(r["within_ci"] for r in compare_claims(CLAIMS, new))  # itself
    new["claims"][0]["measured"] = -1.03  # just outside [-1.02, -0.95]
    new["claims"][2]["measured"] = 0.5  # a figure where the reference had none
    del new["claims"][1]
    rows = {r["id"]: r for r in compare_claims(CLAIMS, new)}
    assert [rows[k]["within_ci"] for k in ("init-depth", "coupling-train-depth", "gia-plain")] == [False] * 3
    assert rows["coupling-train-depth"]["verdict"] is None
    with pytest.raises(ExperimentError, match="compare runs of one profile"):
        compare_claims(CLAIMS, dict(new, profile="smoke"))


@pytest.mark.parametrize("content, says", [(None, "does not exist"), ("{]", "is not a claims.json"),
                                           ("CLAIMS", "--profile cpu")])
def test_compare_with_a_bad_reference_is_one_line_before_any_run(tmp_path, capsys, content, says):
    ref = tmp_path / "ref.json"
    if content is not None:
        ref.write_text(json.dumps(CLAIMS) if content == "CLAIMS" else content)
    assert main(["reproduce", "--profile", "smoke", "--out", str(tmp_path / "o"), "--compare", str(ref)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and says in err and not (tmp_path / "o" / "runs").exists()


@pytest.mark.slow  # every claim's bootstrap again: 86 s measured here under heavy load
def test_the_bundled_claims_recompute_from_bundled_points_and_link_to_bundled_runs():
    """data/reproduce as a clone gets it: every figure refits from its points file, every claim with runs can
    open at least one of them (the home page links there), and no claim is from the smoke profile."""
    bundle = Path(APP).parent / "data" / "reproduce"
    doc = json.loads((bundle / CLAIMS_JSON).read_text())
    assert doc["profile"] == "cpu" and len(doc["claims"]) >= 20
    for c in doc["claims"]:
        pts = pd.read_parquet(bundle / c["points"])
        for k, v in c["where"].items():
            pts = pts[pts[k] == v]
        got = recompute(c, pd.read_parquet(bundle / c["points"]))
        assert _nan(c["measured"]) == pytest.approx(got.value, nan_ok=True), c["id"]
        assert c["ci"] == pytest.approx([v if v == v else None for v in (got.low, got.high)], nan_ok=True), c["id"]
        if c["runs"]:
            assert any((bundle / "runs" / r / "run.json").exists() for r in c["runs"]), c["id"]


@pytest.mark.slow
def test_gpu_profile_runs_end_to_end_on_cifar_files_at_smoke_sizes(tmp_path, monkeypatch):
    """No GPU and no CIFAR-10 here: the gpu profile's wiring (CIFAR-10 with cross-entropy for the two-layer-block
    and learning-rate experiments) runs at the smoke sizes on files in the real binary layout (label byte, then
    3072 pixel bytes), on the CPU. The finite-net stages whose task does not change with the profile are
    the smoke fixture's: here they are stubbed, each recording that it was called (with the gpu profile)."""
    import numpy as np
    from dynamics.paper import blocks, experiments, gia, reproduce as R, sweeps, vs_limit
    called = []
    for mod, name in ((vs_limit, "init_claims"), (sweeps, "coupling_claims"), (vs_limit, "training_claims"),
                      (sweeps, "gia_claims")):
        monkeypatch.setattr(mod, name, lambda *a, _n=name, **k: called.append((_n, a)) or [])
    from dynamics.data import CIFAR_TEST_FILE, CIFAR_TRAIN_FILES
    rng = np.random.default_rng(0)
    for name in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE):  # 5 × 220 training records: train_size 1024 fits
        rec = np.concatenate([rng.integers(0, 10, (220, 1)), rng.integers(0, 256, (220, 3072))], axis=1)
        rec.astype(np.uint8).tofile(tmp_path / name)
    monkeypatch.setitem(R._SIZES, "gpu", R._SIZES["smoke"])
    monkeypatch.setitem(experiments._SIZES, "gpu", experiments._SIZES["smoke"])
    monkeypatch.setitem(gia.LIMIT_SIZES, "gpu", gia.LIMIT_SIZES["smoke"])
    monkeypatch.setitem(gia.LIMIT_XENT_SIZES, "gpu", gia.LIMIT_XENT_SIZES["smoke"])
    monkeypatch.setitem(blocks.LIMIT_SIZES, "gpu", blocks.LIMIT_SIZES["smoke"])
    doc = reproduce(tmp_path / "out", profile="gpu", device="cpu", data_dir=str(tmp_path), log=lambda m: None)
    assert doc["profile"] == "gpu" and {c["id"] for c in doc["claims"]} == {
        "gia-limit", "gia-limit-xent", "blocks-amove", "blocks-limit-alpha0", "blocks-limit-alpha1", "lr-transfer",
        "blocks-alearn", "blocks-alearn-alpha-half", "blocks-alearn-alpha1", "blocks-limit-alearn-alpha0",
        "blocks-limit-alearn-alpha-half", "blocks-limit-alearn-alpha1", "blocks-alearn-digits",
        "blocks-alearn-digits-alpha-half", "blocks-loss-alpha-half"}
    assert [n for n, _ in called] == ["init_claims", "coupling_claims", "training_claims", "gia_claims"]
    assert all("gpu" in a for n, a in called if n in ("coupling_claims", "gia_claims"))
    tasks = {store.read_meta(tmp_path / "out" / "runs" / r)["config"]["task"] for c in doc["claims"]
             if c["id"] in ("blocks-amove", "lr-transfer", "blocks-limit-alpha0") for r in c["runs"]}
    assert tasks == {"cifar10"}


def test_gpu_profile_without_cifar_is_a_one_line_error(tmp_path, capsys):
    assert main(["reproduce", "--profile", "gpu", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "CIFAR-10" in err and "--data-dir" in err


CLAIMS = {"profile": "cpu", "created": "2026-11-29T00:00:00+00:00", "claims": [
    {"id": "init-depth", "section": "§3", "statement": "finite depth vs the continuum: O(1/L)",
     "quantity": "slope of log err_h_sq vs log depth", "paper_value": -1.0, "rule": "rate", "measured": -0.98,
     "ci": [-1.02, -0.95], "verdict": "agrees", "why": "the 95% interval contains the paper's slope -1",
     "page": "pages/3_Limit.py"},
    {"id": "coupling-train-depth", "section": "§5", "statement": "during training the per-block coupling is O(L^-2)",
     "quantity": "slope of log train_coupling_fwd vs log depth", "paper_value": -2.0, "rule": "rate",
     "measured": -1.04, "ci": [-1.2, -0.9], "verdict": "disagrees",
     "why": "the 95% interval excludes the paper's slope -2", "page": "pages/4_Coupling.py"},
    {"id": "gia-plain", "section": "§7", "statement": "plain nets: reused and decoupled stay apart",
     "quantity": "slope of log gia_gap vs log depth", "paper_value": None, "rule": "persists", "measured": None,
     "ci": [None, None], "verdict": "inconclusive", "why": "no confidence interval", "page": "pages/5_Scaling.py"}]}


def _home(monkeypatch, folder: Path) -> AppTest:
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(folder))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    return at


def test_home_page_shows_claims_table_with_disagreement_in_words(tmp_path, monkeypatch):
    (tmp_path / "reproduce" / "runs" / "r1").mkdir(parents=True)  # a claim's run beside claims.json
    (tmp_path / "reproduce" / "runs" / "r1" / "run.json").write_text('{"run_id": "r1", "config": {}}')
    claims = json.loads(json.dumps(CLAIMS))
    claims["claims"][1]["runs"] = ["r1", "gone"]
    claims["claims"][1]["view"] = {"metric": "coupling_fwd"}  # the claim's own view settings join the link
    claims["claims"][1]["raw"] = {"y": "train_coupling_fwd", "measured": -0.3, "ci": [-0.4, -0.2]}
    (tmp_path / "reproduce" / CLAIMS_JSON).write_text(json.dumps(claims))
    at = _home(monkeypatch, tmp_path)
    assert at.subheader[0].value == "Claims vs measured"  # the first thing on the page after the title
    rows = [e.label for e in at.expander]  # one short row per claim, the rest behind it
    assert rows[1] == "**coupling-train-depth** · rate · :red[**disagrees**] · -1.04 [-1.2, -0.9]"
    assert rows[2] == "**gia-plain** · persists · :orange[**inconclusive**] · n/a [no interval]"
    (forest,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]  # above the rows: every claim
    assert [a["text"] for a in forest["layout"]["annotations"]] == [f"<b>{c['statement']}</b>" for c in CLAIMS[
        "claims"]]  # no paper_group in these entries: each statement is its own group
    text = " ".join(m.value for m in at.markdown)
    assert "1 agree, 1 disagree, 1 inconclusive" in text
    assert "DISAGREES with the paper" in text and "excludes the paper's slope -2" in text
    assert "O(L^-2)" in text and "-1.04 (95% CI -1.2 to -0.9; paper: -2)" in text
    assert "n/a (no interval; paper: not negative)" in text
    assert "chance-corrected (fitted) -1.04; raw -0.3 (95% CI -0.4 to -0.2)" in text  # both where they differ
    links = [e.proto for e in at.get("page_link") if e.proto.query_string]  # the page's own links carry none
    assert [(e.label, e.page) for e in links] == [("Coupling", "Coupling")]  # no points files: no evidence links
    link = links[0]  # opens the Coupling page on the claim's bundled run, named (no server path)
    assert "dir=" not in link.query_string and "runs=r1" in link.query_string and "gone" not in link.query_string
    assert "metric=coupling_fwd" in link.query_string


def test_home_page_without_claims_says_which_command(tmp_path, monkeypatch):
    at = _home(monkeypatch, tmp_path)
    assert any("No measured claims yet" in m.value and "python -m dynamics reproduce --profile cpu" in m.value
               for m in at.markdown)


@pytest.mark.slow  # every bundled claim's bootstrap again (about a minute)
def test_the_bundled_claims_are_what_rejudging_their_points_writes(tmp_path):
    """data/reproduce/claims.json is written by code: rejudging a copy of the bundle (claims and points, no runs)
    gives the same claims, every one with a kind, the paper's wording and, where the fit is not identified, why."""
    import shutil
    from dynamics.paper.rejudge import rejudge
    bundle = Path(APP).parent / "data" / "reproduce"
    for f in [bundle / CLAIMS_JSON, *bundle.glob("points-*.parquet")]:
        shutil.copy(f, tmp_path / f.name)
    ref = json.loads((bundle / CLAIMS_JSON).read_text())
    got = rejudge(tmp_path, log=lambda m: None)
    assert [c["id"] for c in got["claims"]] == [c["id"] for c in ref["claims"]]
    for a, b in zip(got["claims"], ref["claims"]):
        assert _rounded(a) == _rounded(b), a["id"]  # the last bits of a bootstrap may differ between BLAS builds
        assert b["kind"] in ("rate", "bound", "persists", "vanishes", "contrast") and b["paper_wording"]
        assert b["identified"] or b["why"].startswith("not identified")
