"""dashboard.boot: every page that draws a chart starts the browser loading Streamlit's Plotly code first, before
its own imports run: a hidden, empty Plotly chart is the page's first element (after its hiding style)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.boot import BOOT_KEY

ROOT = Path(__file__).resolve().parents[1]
CHART_PAGES = ["pages/0_Claims.py", "pages/1_Runs.py", "pages/2_Trajectories.py", "pages/3_Limit.py",
               "pages/4_Coupling.py", "pages/5_Scaling.py"]


@pytest.mark.parametrize("page", CHART_PAGES)
def test_each_chart_page_starts_with_the_early_import_before_its_other_imports(page):
    lines = (ROOT / page).read_text().splitlines()
    code = [i for i, ln in enumerate(lines) if ln.startswith(("import ", "from ", "start("))]
    first = [lines[i] for i in code[:3]]
    assert first[:2] == ["import streamlit as st", "from dashboard.boot import start"], first
    assert first[2].startswith("start("), first  # before any module that is slow to import on a fresh server


def test_the_page_sends_the_hidden_empty_chart_first(monkeypatch):
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(ROOT / "data"))
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/2_Trajectories.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    style, chart = at.main.children[0], at.main.children[1]
    assert style.type == "markdown" and f".st-key-{BOOT_KEY}" in style.value and "display: none" in style.value
    assert chart.type == "plotly_chart" and chart.key == BOOT_KEY
    spec = json.loads(chart.proto.spec)
    assert all(t.get("visible") is False and not len(t.get("x", [])) for t in spec["data"])  # nothing to draw
    assert [c.key for c in at.get("plotly_chart")].count(BOOT_KEY) == 1  # the page's own charts follow
    assert len(at.get("plotly_chart")) >= 2
