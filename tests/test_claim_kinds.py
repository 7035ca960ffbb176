"""The kinds of the paper's statements (dynamics.paper.kinds): constructed intervals that must come out agrees,
disagrees or inconclusive for every kind; non-identified joint fits (dynamics.paper.identify) reported as such;
contrasts as paired differences; the coupling's readings; and `reproduce --rejudge` on a constructed bundle."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from dynamics.paper import identify as I, kinds as K, stats as S
from dynamics.paper.experiments import add_readings
from dynamics.paper.statements import STATEMENTS
from dynamics.paper.verdicts import claim, recompute


def _ci(value, lo, hi, seeds=8):
    return S.Interval(value, lo, hi, seeds)


_NO_DECAY = S.Alternative(0.0, "no decay", side="ge")
CASES = [  # kind, value, interval, alternative, expected
    ("rate", -1.0, _ci(-1.0, -1.2, -0.8), S.Alternative(0.0, "flat"), "agrees"),
    ("rate", -1.0, _ci(-0.5, -0.7, -0.3), S.Alternative(0.0, "flat"), "disagrees"),
    ("rate", -1.0, _ci(-0.5, -1.2, 0.2), S.Alternative(0.0, "flat"), "inconclusive"),
    # a bound: faster than the bound agrees, slower disagrees, astride the alternative is undecided
    ("bound", -1.0, _ci(-1.6, -2.8, -1.2), S.Alternative(0.0, "no depth term"), "agrees"),
    ("bound", -1.0, _ci(-1.0, -1.2, -0.8), S.Alternative(0.0, "no depth term"), "agrees"),
    ("bound", -1.0, _ci(-0.5, -0.7, -0.3), S.Alternative(0.0, "no depth term"), "disagrees"),
    ("bound", -1.0, _ci(-0.5, -1.3, 0.3), S.Alternative(0.0, "no depth term"), "inconclusive"),
    # persists: the named decay must be excluded; an interval inside decay disagrees
    ("persists", None, _ci(0.29, 0.06, 0.60), S.Alternative(-1.0, "finite-width effect"), "agrees"),
    ("persists", None, _ci(-0.1, -0.4, 0.2), S.Alternative(-1.0, "finite-width effect"), "agrees"),
    ("persists", None, _ci(-0.6, -0.9, -0.3), S.Alternative(-1.0, "finite-width effect"), "disagrees"),
    ("persists", None, _ci(-0.5, -1.2, 0.1), S.Alternative(-1.0, "finite-width effect"), "inconclusive"),
    ("persists", None, _ci(0.1, -0.1, 0.3), S.Alternative(0.0, "any decay", side="le"), "inconclusive"),
    # vanishes: the mirror
    ("vanishes", None, _ci(-0.8, -1.0, -0.6), _NO_DECAY, "agrees"),
    ("vanishes", None, _ci(0.2, 0.1, 0.3), _NO_DECAY, "disagrees"),
    ("vanishes", None, _ci(0.1, -0.3, 0.5), _NO_DECAY, "inconclusive"),
    # contrast: a difference with the stated sign, against no difference
    ("contrast", 1.0, _ci(0.7, 0.5, 0.9), S.Alternative(0.0, "no difference"), "agrees"),
    ("contrast", 1.0, _ci(-4.3, -4.7, -3.9), S.Alternative(0.0, "no difference"), "disagrees"),
    ("contrast", 1.0, _ci(0.1, -0.1, 0.3), S.Alternative(0.0, "no difference"), "inconclusive"),
    ("contrast", -1.0, _ci(-0.7, -0.9, -0.5), S.Alternative(0.0, "no difference"), "agrees"),
]


@pytest.mark.parametrize("kind, value, ci, alt, expected", CASES)
def test_every_kind_agrees_disagrees_or_is_inconclusive_as_its_rule_says(kind, value, ci, alt, expected):
    got, why = K.judge(kind, ci, value, alt)
    assert got == expected, why
    assert why.startswith(f"{kind}: ") and "\n" not in why


def test_every_kind_appears_in_every_outcome_and_no_interval_is_inconclusive():
    seen = {(k, e) for k, _, _, _, e in CASES}
    assert seen == {(k, e) for k in K.KINDS for e in ("agrees", "disagrees", "inconclusive")}
    for kind in K.KINDS:
        got, why = K.judge(kind, _ci(0.1, math.nan, math.nan), -1.0, S.Alternative(0.0, "x"))
        assert got == "inconclusive" and "no confidence interval" in why


def test_not_identified_and_an_interval_ending_on_its_estimate_are_inconclusive():
    bad = S.Interval(-1.6, -3.0, -1.0, 3, identified=False, diagnosis="the depth term is fitted as 0 ...")
    assert K.judge("bound", bad, -1.0, S.Alternative(0.0, "x")) == (
        "inconclusive", "not identified: the depth term is fitted as 0 ...")
    got, why = K.judge("bound", _ci(-1.575, -5.41, -1.575), -1.0, S.Alternative(0.0, "q = 0"))
    assert got == "inconclusive" and why.startswith("not identified") and "ends at its estimate" in why
    exact = _ci(-1.0, -1.0, -1.0)  # exact points: a zero-width interval is a measurement, not a pile-up
    assert K.judge("rate", exact, -1.0, S.Alternative(-0.5, "x"))[0] == "agrees"


def test_every_bundled_claim_id_has_a_statement_of_a_known_kind():
    for cid, st in STATEMENTS.items():
        assert st.kind in K.KINDS and st.wording, cid
        assert (st.value is not None) == (st.kind in ("rate", "bound", "contrast")), cid
        assert bool(st.against) == (st.kind == "contrast"), cid


# --- identification of the joint fit err ≈ a·n^−p + b·L^−q ---------------------------------------------------
def _grid_table(widths, depths, seeds, err, noise, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    n, L = (v.ravel().astype(float) for v in np.meshgrid(widths, depths, indexing="ij"))
    table = err(n, L)[None, :] * rng.lognormal(0, noise, (seeds, n.size))
    return n, L, table


def test_a_well_designed_joint_fit_is_identified_with_the_estimate_strictly_inside():
    n, L, t = _grid_table([64, 256, 1024, 4096, 16384], [2, 4, 8, 16], 8,
                          lambda n, L: 2.0 * n ** -1.0 + 0.3 * L ** -1.0, 0.03)
    ci = I.joint_interval(n, L, t, "depth")
    assert ci.identified, ci.diagnosis
    assert ci.low < ci.value < ci.high and ci.low <= -1.0 <= ci.high
    assert K.judge("bound", ci, -1.0, S.Alternative(0.0, "q = 0"))[0] == "agrees"


def test_a_width_floor_that_swamps_the_depth_term_is_not_identified_and_says_which_design_would():
    """The cpu design of Fig. 1 in miniature: the floor a·n^−p is far above b·L^−q at every width, 3 seeds."""
    n, L, t = _grid_table([64, 128, 256, 512], [2, 4, 8, 16], 3,
                          lambda n, L: 0.5 * n ** -0.5 + 0.004 * L ** -1.0, 0.15, rng_seed=2)
    ci = I.joint_interval(n, L, t, "depth")
    assert not ci.identified
    assert "design that would identify it" in ci.diagnosis and "seeds than 3" in ci.diagnosis
    verdict, why = K.judge("bound", ci, -1.0, S.Alternative(0.0, "q = 0"))
    assert verdict == "inconclusive" and why.startswith("not identified")


def test_a_term_absent_from_the_data_is_not_identified():
    n, L, t = _grid_table([64, 128, 256, 512], [2, 4, 8, 16], 4, lambda n, L: 1.0 * n ** -0.5 + 0 * L, 0.02)
    ci = I.joint_interval(n, L, t, "depth")
    assert not ci.identified and ("fitted as 0" in ci.diagnosis or "end of the search grid" in ci.diagnosis)


def test_profile_bounds_interpolate_inside_and_flag_the_grid_end():
    grid = np.linspace(0, 3, 13)
    prof = (grid - 1.0) ** 2
    lo, hi, open_ = I.profile_bounds(grid, prof, 0.25)
    assert not open_ and lo < 1.0 < hi and lo == pytest.approx(0.5, abs=0.05) and hi == pytest.approx(1.5, abs=0.05)
    assert I.profile_bounds(grid, prof, 100.0)[2]


# --- contrasts, readings -------------------------------------------------------------------------------------
def _gaps(slope_a, slope_b, seeds=6, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    rows = []
    for s in range(seeds):
        shared = rng.normal(0, 0.2)  # a seed's effect common to both settings: pairing removes it
        for L in (2, 4, 8, 16):
            for name, r in (("a", slope_a), ("b", slope_b)):
                rows.append({"setting": name, "seed": s, "depth": L,
                             "gap": 0.1 * L ** r * math.exp(shared + rng.normal(0, 0.02))})
    return pd.DataFrame(rows)


def test_a_contrast_is_the_paired_difference_of_the_two_settings_slopes(monkeypatch):
    from dynamics.paper import statements as ST, verdicts as V
    monkeypatch.setitem(ST.STATEMENTS, "t-contrast", ST.Statement("contrast", "test", 1.0,
                                                                  against={"setting": "b"}))
    monkeypatch.setattr(V, "STATEMENTS", ST.STATEMENTS)
    pts = _gaps(0.3, -0.5)
    c = claim("t-contrast", "§7", "a above b", pts, "p.parquet", "depth", "gap", paper=0.0,
              alt=S.Alternative(0.0, "x"), where={"setting": "a"}, page="pages/5_Scaling.py", runs=[])
    assert c["kind"] == "contrast" and c["method"] == "contrast" and c["measured"] == pytest.approx(0.8, abs=0.03)
    assert c["own"]["measured"] == pytest.approx(0.3, abs=0.03) and c["reference"]["measured"] == pytest.approx(
        -0.5, abs=0.03)
    assert c["verdict"] == "agrees" and c["ci"][0] > 0
    got = recompute(c, pts)
    assert (got.value, got.low, got.high) == (c["measured"], *c["ci"])
    same = claim("t-contrast", "§7", "a above b", _gaps(0.1, 0.1), "p.parquet", "depth", "gap", paper=0.0,
                 alt=S.Alternative(0.0, "x"), where={"setting": "a"}, page="pages/5_Scaling.py", runs=[])
    assert same["verdict"] == "inconclusive" and same["ci"][0] < 0 < same["ci"][1]


def test_readings_put_the_coupling_in_the_stream_and_sum_it_incoherently():
    pts = pd.DataFrame({"depth": [4, 16], "beta": [1.0, 2.0]})
    for q in ("step1_coupling_fwd", "train_coupling_fwd"):
        for suf, v in (("", 3.0), ("_chance", 1.0), ("_excess", 2.0)):
            pts[q + suf] = v
    got = add_readings(pts)
    assert list(got.step1_coupling_fwd_stream_excess) == [2.0 / 4, 4 * 2.0 / 16]       # (β²/L)·coupling_fwd
    assert list(got.coupling_acc_inc) == [3.0, 12.0]                                     # β²·mean over blocks
    assert list(got.coupling_acc_inc_chance) == [1.0, 4.0]


# --- rejudge ---------------------------------------------------------------------------------------------------
def test_rejudge_applies_the_kinds_to_stored_evidence_and_is_idempotent(tmp_path):
    """A bundle whose 'survives' claim was judged as a rate 0: rejudged as `persists` from its points alone."""
    from dynamics.paper.rejudge import rejudge
    rng = np.random.default_rng(0)
    rows = [{"width": w, "seed": s, "step1_coupling_fwd_excess": 0.01 * w ** 0.3 * math.exp(rng.normal(0, 0.05)),
             "step1_coupling_fwd": 0.02 * w ** 0.3} for s in range(6) for w in (128, 256, 512, 1024)]
    pd.DataFrame(rows).to_parquet(tmp_path / "points-x.parquet")
    old = claim("coupling-step1-width", "§5", "survives", pd.DataFrame(rows), "points-x.parquet", "width",
                "step1_coupling_fwd_excess", paper=0.0, alt=S.Alternative(-1.0, "1/n"), page="pages/4_Coupling.py",
                runs=[], raw_y="step1_coupling_fwd")
    old.update(kind=None, rule="rate", verdict="disagrees", paper_range=[0.0, 0.0])  # as the old encoding had it
    old["test"] = {"y": "other", "measured": 1.0, "ci": [0.5, 1.5]}
    (tmp_path / "claims.json").write_text(json.dumps({"profile": "cpu", "claims": [old]}))
    doc = rejudge(tmp_path, log=lambda m: None)
    c = doc["claims"][0]
    assert c["kind"] == "persists" and c["verdict"] == "agrees" and c["paper_range"] == [0.0, None]
    assert c["test"] == old["test"] and c["paper_wording"] == STATEMENTS["coupling-step1-width"].wording
    again = rejudge(tmp_path, log=lambda m: None)
    assert [dict(x, rejudged=None) for x in again["claims"]] == [dict(x, rejudged=None) for x in doc["claims"]]


# --- the forest plot (dynamics.figures.claims) ------------------------------------------------------------------
def _entries():
    base = dict(alternative={"value": 0.0, "words": "x", "side": "point"}, identified=True)
    return [
        dict(base, id="a", paper_group="G1", kind="rate", verdict="agrees", measured=-1.0, ci=[-1.2, -0.8],
             paper_range=[-1.0, -1.0], paper_value=-1.0),
        dict(base, id="b", paper_group="G2", kind="bound", verdict="disagrees", measured=-0.8, ci=[-0.9, -0.7],
             paper_range=[None, -2.0], paper_value=-2.0, where={"coupling": "full"},
             reading={"name": "stream", "words": "w"}),
        dict(base, id="c", paper_group="G1", kind="persists", verdict="inconclusive", measured=0.3, ci=[None, None],
             paper_range=[0.0, None]),
        dict(base, id="d", paper_group="G2", kind="bound", verdict="inconclusive", measured=-1.6, ci=[-2.8, -0.8],
             paper_range=[None, -1.0], paper_value=-1.0, identified=False),
    ]


def test_claims_frame_reads_every_form_of_an_entry():
    from dynamics.figures.claims import COLUMNS, claims_frame
    df = claims_frame(_entries() + [{"id": "old", "statement": "s", "rule": "vanishes", "measured": None,
                                     "ci": [None, None], "verdict": "inconclusive"}])
    assert list(df.columns) == list(COLUMNS) and len(df) == 5
    b = df.set_index("id").loc["b"]
    assert (b.paper_low, b.paper_high, b.setting) == (-math.inf, -2.0, "coupling full; stream reading")
    old = df.set_index("id").loc["old"]
    assert old.group == "s" and math.isnan(old.measured) and old.kind == "vanishes"


def test_the_forest_puts_each_claim_on_its_own_axis_grouped_by_statement_and_coloured_by_verdict():
    from dynamics.figures.claims import VERDICT_COLOURS, claims_forest_figure, claims_frame
    fig = claims_forest_figure(claims_frame(_entries()))
    spec = fig.to_plotly_json()
    lay = spec["layout"]
    heads = [a["text"] for a in lay["annotations"]]
    assert heads == ["<b>G1</b>", "<b>G2</b>"]                       # groups in first-appearance order
    rows = sorted((k for k in lay if k.startswith("yaxis") and lay[k].get("ticktext")), key=lambda k: int(k[5:] or 1))
    labels = [lay[k]["ticktext"][0] for k in rows]
    assert labels == ["a · rate", "c · persists", "b · bound · coupling full; stream reading", "d · bound"]
    ranges = {lay[k]["ticktext"][0].split(" ")[0]: lay[k.replace("y", "x")]["range"] for k in lay
              if k.startswith("yaxis") and lay[k].get("ticktext")}
    assert ranges["a"][0] < -1.2 and ranges["a"][1] > -0.8 and ranges["b"][0] < -2.0  # own axis: holds all it draws
    markers = {t["hovertemplate"].split(":")[0]: t for t in spec["data"] if t.get("mode") == "markers"}
    assert markers["a"]["marker"]["color"] == VERDICT_COLOURS["agrees"]
    assert markers["b"]["marker"]["color"] == VERDICT_COLOURS["disagrees"]
    assert markers["c"]["marker"]["symbol"] == "x" and markers["d"]["marker"]["symbol"] == "circle-open"
    legend = [t["name"] for t in spec["data"] if t.get("showlegend")]
    assert sorted(legend) == sorted(["paper's value or range", "alternative", "agrees", "disagrees",
                                     "inconclusive (no interval)", "inconclusive (not identified)"])
    band = next(t for t in spec["data"] if t.get("fill") == "toself" and t["xaxis"] == markers["b"]["xaxis"])
    assert max(band["x"]) == -2.0 and min(band["x"]) == ranges["b"][0]  # a bound: a band from the edge to it


def test_rejudge_without_a_bundle_is_a_one_line_error(tmp_path, capsys):
    from dynamics.__main__ import main
    assert main(["reproduce", "--rejudge", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--rejudge" in err and "claims.json does not exist" in err


def test_a_statement_can_name_its_set_where_a_rates_words_do_not_fit():
    """blocks-loss-alpha-half is a bound on a log loss ratio, not a rate: its verdict names the set in its own words
    (statements.Statement.shown), and the verdict itself is the bound's."""
    from dynamics.paper import kinds as K, stats as S
    from dynamics.paper.statements import STATEMENTS
    st = STATEMENTS["blocks-loss-alpha-half"]
    alt = S.Alternative(0.0, "no difference")
    verdict, why = K.judge(st.kind, S.Interval(-0.6, -0.9, -0.3, 3), st.value, alt, shown=st.shown)
    assert verdict == "agrees" and st.shown in why and "x^0" not in why
    assert K.judge(st.kind, S.Interval(0.6, 0.3, 0.9, 3), st.value, alt, shown=st.shown)[0] == "disagrees"
    assert "x^0" in K.judge("bound", S.Interval(-0.6, -0.9, -0.3, 3), 0.0, alt)[1]  # the default words stay
