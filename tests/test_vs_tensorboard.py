"""benchmarks/vs_tensorboard.py runs end to end at --small size and prints its ratio lines (no time is asserted:
CI machines differ; the figures are in the README)."""
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
    assert set(found) == {"import_time", "import_cpu_time", "import_peak_memory", "grid_one_metric",
                          "record_overhead"}, out.stdout
    assert all(math.isfinite(float(v)) and float(v) > 0 for v in found.values())
    assert "400 scalars" in out.stdout  # 4 layers × 2 metrics × 50 steps were written and read by both tools
