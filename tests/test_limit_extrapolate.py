"""`--method extrapolate`: the width limit fitted from a ladder of finite runs (dynamics/limit/extrapolate.py).

Oracles: synthetic ladders with a known limit (exact recovery without noise; the stderr's coverage with noise,
beside the per-width bootstrap it replaced), and the particle solver where both apply (independent routes to
the same limit must agree within their two errors)."""
import math
import os

import numpy as np
import pandas as pd
import pytest

from dynamics.__main__ import main
from dynamics.limit.extrapolate import design, dof, fit_arrays, fit_width_limit, weights
from dynamics.runs import store
from limit_exact import t_quantile


# --- the fit ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("widths", [(64, 256), (64, 128, 256), (64, 128, 256, 512, 1024)])
def test_noiseless_ladders_give_the_limit_exactly(widths):
    n = np.array(widths, dtype=float)
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 50, 1))
    curve = a + b / n + (c / n ** 2 if len(widths) >= 4 else 0.0)  # the model the fit assumes
    Y = np.repeat(curve[..., None], 3, axis=2)     # every seed the same: no seed noise
    est, se = fit_arrays(Y, widths)
    assert np.allclose(est, a[:, 0], rtol=0, atol=1e-10) and np.all(se < 1e-12)
    assert weights(widths).sum() == pytest.approx(1.0)  # a constant ladder has that constant as its limit
    assert design(widths).shape == (len(widths), 2 if len(widths) <= 3 else 3)


def _per_width_bootstrap_se(Y, widths, B=200, seed=0):
    """The estimator this module replaced: seeds resampled within each width, std of the refitted intercepts."""
    R, W, S = Y.shape
    c = weights(widths)
    idx = np.random.default_rng(seed).integers(0, S, size=(B, W, S))
    boots = np.stack([(np.take_along_axis(Y, np.broadcast_to(i, (R, W, S)), axis=2).mean(axis=2)) @ c
                      for i in idx])
    return boots.std(axis=0, ddof=1)


@pytest.mark.parametrize("widths, seeds", [((256, 512, 1024), 3), ((256, 512, 1024, 2048), 3),
                                           ((128, 256), 4)])
def test_the_stderr_covers_the_known_limit(widths, seeds):
    """Seed noise σ/√n around a + b/n + c/n²: the t interval on W(S−1) dof covers the true a at its nominal
    95% (±1.5% at 20,000 rows); the per-width bootstrap it replaced falls well short with few seeds."""
    rng = np.random.default_rng(1)
    R, n = 20_000, np.array(widths, dtype=float)
    truth = rng.normal(size=R)
    curve = truth[:, None] + 3.0 / n + (200.0 / n ** 2 if len(widths) >= 4 else 0.0)
    Y = curve[..., None] + 2.0 / np.sqrt(n)[None, :, None] * rng.normal(size=(R, len(widths), seeds))
    est, se = fit_arrays(Y, widths)
    q = t_quantile(0.975, dof(widths, seeds))
    cover = float(np.mean(np.abs(est - truth) <= q * se))
    assert abs(cover - 0.95) < 0.015, cover
    boot = _per_width_bootstrap_se(Y[:4000], widths)
    cover_boot = float(np.mean(np.abs(est[:4000] - truth[:4000]) <= q * boot))
    assert cover_boot < 0.93, cover_boot  # why it was replaced: S − 1 dof per width under-cover


def test_fit_width_limit_reads_a_tidy_frame():
    rng = np.random.default_rng(2)
    rows = []
    for w in (64, 128, 256):
        for s in (7, 8, 9):                 # seed labels are free; only their count per width matters
            for step in range(3):
                for layer in range(2):
                    rows.append((w, s + w, step, layer, "h_sq", 1.0 + step - layer + 1 / w + rng.normal() / w))
    f = pd.DataFrame(rows, columns=["width", "seed", "step", "layer", "metric", "value"])
    f.loc[(f.width == 128) & (f.step == 2) & (f.layer == 1), "value"] = np.nan
    res = fit_width_limit(f)
    assert res.attrs["dropped"] == 1 and len(res) == 5
    one = res[(res.step == 1) & (res.layer == 0)].iloc[0]
    Y = f[(f.step == 1) & (f.layer == 0)].sort_values(["width", "seed"]).value.to_numpy().reshape(1, 3, 3)
    a, se = fit_arrays(Y, (64, 128, 256))
    assert one.value == pytest.approx(a[0]) and one.stderr == pytest.approx(se[0])
    assert one.value == pytest.approx(2.0, abs=0.05)
    with pytest.raises(ValueError, match="same number of seeds"):
        fit_width_limit(f[~((f.width == 64) & (f.seed == 71))])


# --- the CLI ------------------------------------------------------------------------------------------------
SMALL = ["--depth", "3", "--act", "tanh", "--lr", "0.5", "--batch", "full", "--train-size", "6", "--test-size", "0",
         "--input-dim", "12", "--probes", "6", "--record-every", "2", "--record-coupling", "off", "--quiet"]


def _train(tmp_path, name, *extra, width=32, steps=6):
    assert main(["train", *SMALL, "--width", str(width), "--steps", str(steps), "--out", str(tmp_path),
                 "--name", name, *extra]) == 0
    return str(tmp_path / name)


def test_cli_extrapolate_writes_a_limit_run_and_reuses_the_ladder(tmp_path, capsys):
    like = _train(tmp_path, "fin")
    args = ["limit", "--like", like, "--out", str(tmp_path), "--method", "extrapolate", "--widths", "32,64,128",
            "--seeds", "2", "--quiet", "--workers", "1"]
    assert main([*args, "--name", "x"]) == 0
    assert "5 ladder runs trained" in capsys.readouterr().out  # 3 widths × 2 seeds, less the run itself
    meta = store.read_meta(tmp_path / "x")
    lim = meta["limit"]
    assert meta["kind"] == "limit" and meta["status"] == "complete" and lim["method"] == "extrapolate"
    assert lim["widths"] == [32, 64, 128] and lim["seeds"] == 2 and lim["fit"] == "a + b/n" and lim["dof"] == 3
    assert meta["config"] == store.read_meta(tmp_path / "fin")["config"]
    for p in [lim["like_path"], lim["ladder_folder"], *(e["path"] for e in lim["ladder"])]:
        assert not os.path.isabs(p) and (tmp_path / "x" / p).resolve().exists(), p
    assert (tmp_path / "x" / lim["like_path"]).resolve() == (tmp_path / "fin").resolve()
    m, fin = store.read_metrics(tmp_path / "x"), store.read_metrics(tmp_path / "fin")
    assert "stderr" in m.columns and np.isfinite(m.value).all() and (m.stderr >= 0).all()
    assert set(m.metric) == set(fin.metric) - {"grad_norm"}
    assert len(store.read_kernels(tmp_path / "x")) == len(store.read_kernels(tmp_path / "fin"))
    assert main([*args, "--name", "y"]) == 0                          # a second call trains nothing
    assert "0 ladder runs trained" in capsys.readouterr().out
    pd.testing.assert_frame_equal(store.read_metrics(tmp_path / "y"), m)


@pytest.mark.parametrize("extra", [["--param", "sp"], ["--batch", "2", "--train-size", "8", "--loss", "xent",
                                                       "--task", "mixture"]])
def test_extrapolate_covers_what_the_particle_solver_refuses(tmp_path, extra):
    like = _train(tmp_path, "fin", *extra, steps=4)
    assert main(["limit", "--like", like, "--out", str(tmp_path), "--method", "extrapolate", "--widths", "32,64",
                 "--seeds", "2", "--quiet", "--workers", "1", "--name", "x"]) == 0
    m = store.read_metrics(tmp_path / "x")
    assert np.isfinite(m.value).all() and {"loss", "h_move"} <= set(m.metric)


@pytest.mark.parametrize("flags, needle", [
    (["--method", "extrapolate", "--widths", "32,x"], "comma list of integers"),
    (["--method", "extrapolate", "--widths", "32"], "at least 2 widths"),
    (["--method", "extrapolate", "--widths", "32,32"], "twice"),
    (["--method", "extrapolate", "--seeds", "1"], "at least 2"),
    (["--method", "extrapolate", "--particles", "512"], "--particles"),
    (["--widths", "64,128"], "belong(s) to --method extrapolate"),
])
def test_cli_extrapolate_refusals_are_one_line(tmp_path, capsys, flags, needle):
    like = _train(tmp_path, "fin", steps=2)
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(["limit", "--like", like, "--out", str(tmp_path / "o"), "--quiet", *flags]))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_extrapolation_agrees_with_the_particle_solver(tmp_path):
    """Two independent routes to the width limit of one setting: every (metric, layer, step) agrees within the
    two errors at a family-wise 1% (Bonferroni over the entries, t on the ladder's dof), and the z-scores'
    RMS is near 1: a bias of one stderr across the board would fail it."""
    like = _train(tmp_path, "fin", width=128, steps=8)
    assert main(["limit", "--like", like, "--out", str(tmp_path), "--method", "extrapolate",
                 "--widths", "128,256,512,1024", "--seeds", "6", "--quiet", "--name", "x"]) == 0
    assert main(["limit", "--like", like, "--out", str(tmp_path), "--particles", "16384", "--quiet",
                 "--name", "p"]) == 0
    x, p = store.read_metrics(tmp_path / "x"), store.read_metrics(tmp_path / "p")
    j = x.merge(p, on=["step", "layer", "metric"], suffixes=("_x", "_p"))
    assert len(j) > 100 and set(j.metric) >= {"loss", "h_move", "g_move", "fg_cov"}
    j = j[(j.stderr_x > 0) | (j.stderr_p > 0)]
    z = (j.value_x - j.value_p) / np.hypot(j.stderr_x, j.stderr_p)
    bound = t_quantile(1 - 0.01 / (2 * len(z)), dof((128, 256, 512, 1024), 6))
    assert np.abs(z).max() < bound, (np.abs(z).max(), bound)
    assert math.sqrt(float((z ** 2).mean())) < 1.6


def test_the_limit_page_says_which_method_made_the_limit(tmp_path):
    from dashboard.runs import Run
    from dashboard.sections import extrapolate_command, method_caption
    x = Run("x", "user", "", {"kind": "limit", "limit": {"method": "extrapolate", "widths": [256, 512], "seeds": 3,
                                                         "fit": "a + b/n"}})
    p = Run("p", "user", "", {"kind": "limit", "limit": {"method": "particles", "particles": 8192, "grid": 8}})
    old = Run("o", "user", "", {"kind": "limit", "limit": {"particles": 4096, "grid": 4}})  # before limit.method
    assert "extrapolated from finite runs at n = 256, 512 × 3 seeds" in method_caption(x)
    assert "particle solver (8,192 particles, grid K = 8)" in method_caption(p)
    assert "particle solver (4,096 particles" in method_caption(old) and "extrapolated" not in method_caption(old)
    fin = Run("f", "user", str(tmp_path / "f"), {"kind": "finite"})
    assert extrapolate_command(fin).endswith("--out runs/ --method extrapolate")
