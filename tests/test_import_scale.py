"""Bounded imports (dynamics.runs.scalars, dynamics.runs.tables): the sort-and-check of compact columns equals a
pandas reference on every packing path; the issue's files (2 M rows × 21 zero columns; a million distinct metric
names) are refused in one line before they cost memory; an accepted import stays far below 1 GB resident,
measured in a child process. benchmarks/import_scale.py measures every format at scale.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings, strategies as st

from dynamics.runs.imports import Limits, RunImportError, import_file
from dynamics.runs.scalars import Builder, Scalars, to_table

REPO = Path(__file__).resolve().parents[1]


def _scalars(step, layer, metric, value, names) -> Scalars:
    return Scalars(np.array(step, np.int64), np.array(layer, np.int16), np.array(metric, np.int32),
                   np.array(value, np.float64), list(names))


def _reference(step, layer, metric, value, names, later_wins: bool) -> pd.DataFrame:
    df = pd.DataFrame({"step": step, "layer": layer, "metric": [names[m] for m in metric], "value": value})
    if later_wins:
        df = df.drop_duplicates(["step", "layer", "metric"], keep="last")
    return df.sort_values(["step", "layer", "metric"], kind="stable").reset_index(drop=True)


rows = st.lists(st.tuples(st.sampled_from([0, 1, 7, 2 ** 31 + 5, 2 ** 40, 2 ** 62 + 3]), st.integers(-1, 3),
                          st.integers(0, 2), st.floats(allow_nan=False, width=32)), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(rows, st.booleans())
def test_to_table_equals_a_pandas_reference(data, later_wins):
    step, layer, metric, value = (list(c) for c in zip(*data))
    names = ["g_sq", "h_sq", "loss"]
    ref = _reference(step, layer, metric, value, names, later_wins)
    note = ("(key, step)", "later kept") if later_wins else None
    notes = []
    try:
        table, summary = to_table(_scalars(step, layer, metric, value, names), Limits(), note,
                                  lambda w, y: notes.append(w))
    except RunImportError as e:
        assert not later_wins and ref.duplicated(["step", "layer", "metric"]).any(), e
        assert str(e).startswith("duplicate keys: ")
        return
    got = table.to_pandas()
    got["metric"] = got["metric"].astype(str)
    assert not ref.duplicated(["step", "layer", "metric"]).any() or later_wins
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)
    assert summary["rows"] == len(ref) and summary["steps"] == ref.step.nunique()
    assert (len(data) - len(ref) > 0) == bool(notes)


def test_every_packing_path(tmp_path):
    """key · n + row in place; an argsort when that overflows; step ranks when the key itself would."""
    names = ["a", "b"]
    for step in ([3, 1, 2, 1], [2 ** 60, 0, 2 ** 59, 0], [2 ** 62, 0, 2 ** 61, 0]):
        sc = _scalars(step, [0, 0, 0, 0], [0, 0, 0, 1], [1.0, 2.0, 3.0, 4.0], names)
        table, _ = to_table(sc, Limits())
        got = table.to_pandas()
        assert got.step.tolist() == sorted(step) and got.value.tolist() == [2.0, 4.0, 3.0, 1.0]


def test_builder_grows_and_keeps_order():
    b = Builder(2)
    for k in range(5):
        b.add(np.arange(3) + 10 * k, 1, k % 2, np.full(3, float(k)))
    sc = b.done(["x", "y"])
    assert sc.step.tolist() == [s + 10 * k for k in range(5) for s in range(3)] and sc.layer.tolist() == [1] * 15
    assert sc.metric.tolist() == [k % 2 for k in range(5) for _ in range(3)]


_CHILD = """import atexit, runpy, sys
atexit.register(lambda: print("VmHWM", next(l.split()[1] for l in open("/proc/self/status")
                                            if l.startswith("VmHWM")), file=sys.stderr))
sys.argv = ["dynamics", *sys.argv[1:]]
runpy.run_module("dynamics", run_name="__main__", alter_sys=True)
"""


def _peak_mb(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run `python -m dynamics ARGS` in a child; (its peak resident MB, its stderr's last line). The peak is
    the child's own VmHWM: ru_maxrss would count this test process's memory from before the exec too."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", _CHILD, *args], cwd=cwd, env=env, capture_output=True, text=True)
    hwm = [int(line.split()[1]) for line in p.stderr.splitlines() if line.startswith("VmHWM ")]
    rest = [line for line in p.stderr.splitlines() if line.strip() and not line.startswith("VmHWM ")]
    return hwm[-1] // 1024, rest[-1] if rest else ""


def test_issue_wide_parquet_is_refused_from_its_footer(tmp_path):
    n = 2_000_000  # the issue's file: `_step` and 20 zero columns, 2 M rows: 40 M values (limit 20 M)
    pq.write_table(pa.table({"_step": np.arange(n), **{f"c{k}": np.zeros(n) for k in range(20)}}),
                   tmp_path / "wide.parquet")
    peak, err = _peak_mb(["import", str(tmp_path / "wide.parquet"), "--out", str(tmp_path / "out")], tmp_path)
    assert err == "python -m dynamics: error: too many values: 40000000 (limit 20000000 rows)"
    assert peak < 400, f"{peak} MB for a refusal"  # was 3.4 GB: the melt came before the bound


def test_a_million_metric_names_in_one_step_are_refused(tmp_path):
    n = 1_000_000
    pq.write_table(pa.table({"step": np.zeros(n, np.int32), "layer": np.zeros(n, np.int16),
                             "metric": [f"m{k}" for k in range(n)], "value": np.ones(n)}), tmp_path / "names.parquet")
    with pytest.raises(RunImportError, match=r"^more than 2000 distinct metric names \(limit 2000\)"):
        import_file(tmp_path / "names.parquet", tmp_path / "out", limits=Limits.hosted())


@pytest.mark.slow
def test_a_large_import_stays_bounded(tmp_path):
    n, layers = 4_000_000, 100  # 4 M values: compact columns are 22 bytes a value
    step = np.repeat(np.arange(n // layers), layers)
    metric = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["h_sq"]))
    pq.write_table(pa.table({"step": step, "layer": np.tile(np.arange(layers, dtype=np.int16), n // layers),
                             "metric": metric, "value": np.random.default_rng(0).random(n)}), tmp_path / "m.parquet")
    peak, err = _peak_mb(["import", str(tmp_path / "m.parquet"), "--out", str(tmp_path / "out")], tmp_path)
    assert err == "" and (tmp_path / "out" / "m" / "metrics.parquet").is_file()
    assert peak < 600, f"{peak} MB for {n} values"
