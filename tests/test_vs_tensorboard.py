"""benchmarks/vs_tensorboard.py runs end to end at --small size and prints its ratio lines, the browser's too where
/usr/bin/chromium exists (no time is asserted: CI machines differ; the figures are in docs/performance.md)."""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_benchmark_small_prints_every_ratio():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vs_tensorboard.py"), "--small"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    found = dict(re.findall(r"^RATIO (\w+) ours/tensorboard min=(\S+) median=\S+$", out.stdout, re.M))
    browser = {"first_chart_cold", "first_chart_warm"} if Path("/usr/bin/chromium").exists() else set()
    assert set(found) == {"import_time", "import_cpu_time", "import_peak_memory", "grid_one_metric",
                          "record_overhead"} | browser, out.stdout
    assert all(math.isfinite(float(v)) and float(v) > 0 for v in found.values())
    assert "400 scalars" in out.stdout  # 4 layers × 2 metrics × 50 steps were written and read by both tools
    if browser:  # the widget change and every page that draws a chart, each timed once
        assert re.search(r"^RESULT widget_change_s=\d", out.stdout, re.M), out.stdout
        assert re.search(r"^RESULT first_chart_floor_s=\d", out.stdout, re.M), out.stdout  # bare Streamlit + Plotly
        pages = set(re.findall(r"^PAGE (\w+) first chart", out.stdout, re.M))
        assert pages == {"Claims", "Runs", "Trajectories", "Limit", "Coupling", "Scaling"}, out.stdout
