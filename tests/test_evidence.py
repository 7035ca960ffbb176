"""Every claim opens its evidence: the home page's claims links are followed with AppTest on the bundled data,
and each opened page must show the claim (Claims page) or the metric, step, tab and runs the link names.
Also the pure helpers that read a claim's entry (dashboard.evidence)."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import evidence as E
from dashboard.boot import BOOT_KEY

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGES = {p.stem.split("_", 1)[1]: f"pages/{p.name}" for p in (REPO / "pages").glob("*.py")}
KEYS = {"pages/1_Runs.py": "runs_page", "pages/2_Trajectories.py": "traj_page", "pages/3_Limit.py": "limit_page",
        "pages/4_Coupling.py": "coupling_page", "pages/5_Scaling.py": "scaling_page", "pages/0_Claims.py": "claims_page"}


def _links() -> list[tuple[str, dict]]:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    out = []
    for link in at.get("page_link"):
        if link.proto.query_string:
            out.append((PAGES[link.proto.page], parse_qs(link.proto.query_string)))
    return out


@pytest.fixture(scope="module")
def bundled_links():
    mp = pytest.MonkeyPatch()
    mp.delenv("DYNAMICS_RUNS", raising=False)
    mp.setenv("DYNAMICS_DATA_DIR", str(REPO / "data"))
    try:
        yield _links()
    finally:
        mp.undo()


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.key != BOOT_KEY]  # not boot's


def test_every_claim_has_an_evidence_link_and_bundled_runs_a_page_link(bundled_links):
    claims = json.loads((REPO / "data" / "reproduce" / "claims.json").read_text())["claims"]
    evidence = [q["claim"][0] for page, q in bundled_links if page == E.CLAIMS_PAGE]
    assert evidence == [c["id"] for c in claims]
    run_links = [(p, q) for p, q in bundled_links if p != E.CLAIMS_PAGE]
    assert len(run_links) >= 8 and all("runs" in q for _, q in run_links)
    assert not any("dir" in q for _, q in run_links)  # run names, never a server path


@pytest.mark.slow
def test_following_every_claims_link_shows_what_its_row_talks_about(bundled_links, monkeypatch):
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(REPO / "data"))
    monkeypatch.setenv("DYNAMICS_READONLY", "1")  # as a hosted instance serves it
    at = AppTest.from_file(APP, default_timeout=60).run()
    for page, query in bundled_links:
        at.query_params.clear()
        at.switch_page("app.py").run()  # each link is clicked on the home page
        at.switch_page(page)
        for k, v in query.items():
            at.query_params[k] = v
        at.run()
        where = f"{page}?{query}"
        assert not at.exception, (where, [e.value for e in at.exception])
        assert not at.error, (where, [e.value for e in at.error])
        charts = _charts(at)
        assert charts and all(any(len(t.get("x") or t.get("z") or []) for t in c["data"]) for c in charts), where
        titles = [c["layout"].get("title", {}).get("text", "") for c in charts]
        key = KEYS[page]
        if "claim" in query:
            assert at.selectbox(key=f"{key}.claim").value == query["claim"][0]
            assert titles[0].startswith(query["claim"][0] + ":"), where
            continue
        assert at.multiselect(key=f"{key}.runs").value == query["runs"], where
        if "metric" in query:
            assert at.selectbox(key=f"{key}.metric").value == query["metric"][0], where
            assert any(t.startswith(query["metric"][0]) for t in titles), (where, titles)
        if "step" in query:
            assert any(f"at step {query['step'][0]}" in t for t in titles), (where, titles)
        if "view" in query:
            assert at.session_state[f"{key}.view"] == query["view"][0], where
        if "limit" in query:
            assert at.session_state[f"{key}.limit"] == query["limit"][0], where


def test_metric_of_reads_the_recorded_metric_from_a_points_column():
    assert E.metric_of("err_h_move") == "h_move"
    assert E.metric_of("init_coupling_bwd") == "coupling_bwd"
    assert E.metric_of("step1_coupling_fwd_chance") == "coupling_fwd"
    assert E.metric_of("gia_gap") is None


def test_a_claim_entry_in_any_of_its_forms():
    assert E.statistic({"quantity": "slope of log y vs log width"}) == "slope"
    assert E.statistic({"quantity": "mean signed gap", "statistic": "mean"}) == "mean"
    assert E.statistic({"quantity": "gap of test loss", "method": "seed_mean"}) == "mean"
    assert E.statistic({"quantity": "slope of log y vs log depth", "method": "seed_means"}) == "slope"
    assert E.statistic({"quantity": "difference of the slope of log y vs log depth: this setting minus ...",
                        "method": "contrast", "extra": {"base": "seed_means"}}) == "slope"
    assert E.alternative({"alternative": {"value": 0.0, "words": "no decay", "side": "point"}}) == (0.0, "no decay")
    assert E.alternative({"alternative": -0.5}) == (-0.5, "")
    assert E.alternative({"rule": "vanishes"})[0] == 0.0 and E.alternative({"rule": "rate"}) == (None, "")
    pts = pd.DataFrame({"width": [64, 128], "c_excess": [1.0, 0.5], "c": [2.0, 1.0], "c_chance": [1.0, 0.5]})
    assert E.series({"y": "c_excess"}, pts) == [("c", "raw"), ("c_chance", "chance level")]
    assert E.series({"y": "c_excess", "raw": {"y": "c"}}, pts)[0] == ("c", "raw")
    assert E.series({"y": "c_excess", "raw": {"y": "c", "measured": -0.9, "ci": [-1, -0.8]}}, pts)[0] == (
        "c", "raw", -0.9)


def test_points_apply_the_where_filter(tmp_path):
    pd.DataFrame({"depth": [2, 4, 2, 4], "coupling": ["full", "full", "none", "none"], "err": [1, 2, 3, 4],
                  "is_best": [True, False, True, True]}).to_parquet(tmp_path / "p.parquet")
    rows, others = E.points(tmp_path / "claims.json", {"points": "p.parquet", "where": {"coupling": "none"}})
    assert list(rows["err"]) == [3, 4] and list(others["err"]) == [1, 2]
    rows, _ = E.points(tmp_path / "claims.json", {"points": "p.parquet", "where": {"is_best": True}})
    assert list(rows["err"]) == [1, 3, 4]


def test_a_regenerated_claims_file_with_new_fields_and_forms_still_opens(tmp_path, monkeypatch):
    """Fields a newer reproduce may add (statistic, alternative object, raw / chance columns, a joint fit on two
    x columns) are used where understood and never break the page."""
    folder = tmp_path / "reproduce"
    folder.mkdir()
    pd.DataFrame({"width": [64, 64, 128, 128, 256, 256], "seed": [0, 1] * 3,
                  "c_excess": [0.02, 0.03, 0.01, 0.012, 0.005, 0.006], "c": [0.05, 0.06, 0.03, 0.03, 0.015, 0.016],
                  "c_chance": [0.03] * 2 + [0.02] * 2 + [0.01] * 2}).to_parquet(folder / "points-c.parquet")
    claims = [{"id": "c-width", "statement": "s", "points": "points-c.parquet", "x": "width", "y": "c_excess",
               "measured": -1.0, "ci": [-1.2, -0.8], "paper_value": -1.0, "statistic": "slope of seed means",
               "alternative": {"value": 0.0, "words": "no decay", "side": "point"}, "page": "pages/4_Coupling.py",
               "raw": {"y": "c", "measured": -0.93, "ci": [-1.1, -0.8]},
               "runs": [], "verdict": "agrees", "new_field": {"anything": [1, 2]}},
              {"id": "joint", "statement": "j", "points": "points-c.parquet", "x": ["width", "seed"], "y": "c",
               "measured": 1.0, "ci": [0.5, 1.5], "verdict": "inconclusive"}]
    (folder / "claims.json").write_text(json.dumps({"profile": "cpu", "claims": claims}))
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and not at.error
    at.switch_page(E.CLAIMS_PAGE).run()
    assert not at.exception and not at.error
    spec, forest = _charts(at)  # the claim's evidence, then every claim at a glance
    assert len([a for a in forest["layout"]["annotations"]]) == 2  # two claims, each its own statement
    names = [t.get("name") for t in spec["data"]]
    assert "raw (mean)" in names and "chance level (mean)" in names  # raw and corrected side by side
    assert "raw fit: slope -0.93" in names
    assert "alternative: slope 0 (no decay)" in names and "paper: slope -1" in names
    assert any("Its runs are not bundled" in c.value for c in at.caption)
    at.selectbox(key="claims_page.claim").select("joint").run()
    assert not at.exception and not at.error and not _charts(at) and at.dataframe  # stops before the forest
