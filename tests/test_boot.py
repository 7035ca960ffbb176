"""dashboard.boot: every page that draws a chart starts the browser loading Streamlit's Plotly code first, before
its own imports run, and the file it names is the one the app itself loads for st.plotly_chart."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard.boot import plotly_script

ROOT = Path(__file__).resolve().parents[1]
CHART_PAGES = ["pages/0_Claims.py", "pages/1_Runs.py", "pages/2_Trajectories.py", "pages/3_Limit.py",
               "pages/4_Coupling.py", "pages/5_Scaling.py"]


def test_the_named_chunk_is_the_one_the_app_loads_for_plotly_charts():
    name = plotly_script()
    assert name is not None and re.fullmatch(r"PlotlyChart\.[\w-]+\.js", name)
    js = Path(st.__file__).parent / "static" / "static" / "js"
    assert (js / name).stat().st_size > 1_000_000  # plotly.js itself, not a stub
    assert any(name in f.read_text(errors="ignore") for f in js.glob("index.*.js"))  # the app's own lazy import


@pytest.mark.parametrize("page", CHART_PAGES)
def test_each_chart_page_starts_with_the_early_import_before_its_other_imports(page):
    lines = (ROOT / page).read_text().splitlines()
    code = [i for i, ln in enumerate(lines) if ln.startswith(("import ", "from ", "start("))]
    first = [lines[i] for i in code[:3]]
    assert first[:2] == ["import streamlit as st", "from dashboard.boot import start"], first
    assert first[2].startswith("start("), first  # before any module that is slow to import on a fresh server


def test_the_page_sends_the_import_as_its_first_element(monkeypatch):
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(ROOT / "data"))
    monkeypatch.delenv("DYNAMICS_RUNS", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/2_Trajectories.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    first = at.main.children[0]
    assert first.type == "html"
    assert f'import("./static/js/{plotly_script()}")' in first.proto.body
