"""The Scaling page's "A metric against depth" view: a per-layer metric's mean over blocks at each run's last step
against depth L, one line per value of a varying config field (α first), seeds averaged, with a fitted log-log
slope per line. Oracle: the markers are the seed means computed here from metrics.parquet directly, and on real
two-layer-block runs a_learn's slope at α = 1/2 lies well above α = 0's (power counting L^(2α−1): 0 against −1)."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.boot import BOOT_KEY
from dynamics.config import RunConfig
from dynamics.train import train

APP = Path(__file__).resolve().parents[1] / "app.py"
SCALING = "pages/5_Scaling.py"


@pytest.fixture(scope="module")
def block_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocks")
    for alpha in (0.0, 0.5):
        for L in (2, 4, 8):
            for seed in (0, 1):
                cfg = RunConfig(width=64, depth=L, block=2, inner_lr_exponent=alpha, steps=1, train_size=8,
                                batch="full", probes=8, record_every=1, test_size=0, input_dim=8,
                                record_coupling="off", lr=0.1, seed=seed)
                train(cfg, root / f"a{alpha}_L{L}_s{seed}", progress=False)
    return root


def _array(v) -> np.ndarray:
    """A trace's x or y as sent to the browser: a list, or plotly's base64 {'dtype', 'bdata'} form."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).astype(float)
    return np.asarray(v, float)


def _charts(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.key != BOOT_KEY]


def _expected(root: Path) -> pd.DataFrame:
    rows = []
    for run in root.iterdir():
        cfg = json.loads((run / "run.json").read_text())["config"]
        m = pd.read_parquet(run / "metrics.parquet")
        m = m[m["metric"].astype(str) == "a_learn"]
        last = m[m.step == m.step.max()]
        rows.append({"alpha": cfg["inner_lr_exponent"], "depth": cfg["depth"], "value": last.value.mean()})
    return pd.DataFrame(rows).groupby(["alpha", "depth"]).value.mean()


def test_a_learn_against_depth_one_line_per_alpha(block_runs, monkeypatch):
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(block_runs))
    at = AppTest.from_file(str(APP), default_timeout=90).run()
    at.switch_page(SCALING)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    spec = next(s for s in _charts(at) if s["layout"]["title"]["text"].startswith("a_learn against depth"))
    assert "2 seeds averaged" in spec["layout"]["title"]["text"]
    want = _expected(block_runs)
    markers = [t for t in spec["data"] if t["mode"] == "markers"]
    assert sorted(t["name"] for t in markers) == ["inner_lr_exponent = 0.0", "inner_lr_exponent = 0.5"]
    slopes = {}
    for t in markers:
        alpha = float(t["name"].split("= ")[1])
        got = dict(zip(_array(t["x"]), _array(t["y"])))
        assert got == pytest.approx({float(L): want[alpha, L] for L in (2, 4, 8)}, rel=1e-9)
        slopes[alpha] = np.polyfit(np.log([2, 4, 8]), np.log([want[alpha, L] for L in (2, 4, 8)]), 1)[0]
    fits = [t["name"] for t in spec["data"] if t["mode"] == "lines"]
    assert len(fits) == 2 and all("slope" in f or "[" in f for f in fits), fits
    for alpha, slope in slopes.items():  # the legend's fitted slope is the least-squares slope of the means
        assert any(f"inner_lr_exponent = {alpha}" in f and f"{slope:+.2f}"[1:] in f for f in fits), (fits, slope)
    assert slopes[0.5] - slopes[0.0] > 0.5, slopes
    assert any("L^(2α−1)" in c.value for c in at.caption)


def test_one_depth_falls_back_on_the_bundled_points(block_runs, tmp_path, monkeypatch):
    import shutil
    for run in block_runs.iterdir():
        if "_L4_" in run.name:
            shutil.copytree(run, tmp_path / run.name)
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=90).run()
    at.switch_page(SCALING)
    at.run()
    assert not at.exception
    assert any("fewer than 3 depths" in c.value and "sweep --grid" in c.value for c in at.caption)
    assert any("No runs at several depths" in i.value for i in at.info)  # and no bundled points here
