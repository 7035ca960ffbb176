"""The run format: atomic files, pruned reads, clear errors for damaged runs."""
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dynamics.runs import store


def _writer(path, **meta):
    return store.RunWriter(path, {"run_id": path.name, "kind": "finite", "config": {"depth": 3}, **meta})


def test_roundtrip_and_pruned_reads(tmp_path):
    w = _writer(tmp_path / "r")
    for step in (0, 10):
        w.add_metrics(step, np.arange(4), "h_sq", np.arange(4) + step)
        w.add_metrics(step, np.arange(4), "g_sq", -np.arange(4.0))
    w.add_metrics(np.arange(11), store.NETWORK_LAYER, "loss", np.linspace(1, 0, 11))
    w.finish("complete")
    df = store.read_metrics(tmp_path / "r", metrics=["h_sq"], layers=[1, 2], steps=[10])
    assert df.metric.tolist() == ["h_sq", "h_sq"] and df.value.tolist() == [11.0, 12.0]
    assert not isinstance(df.metric.dtype, pd.CategoricalDtype)
    table = pq.read_table(tmp_path / "r" / store.METRICS)
    assert table.schema.field("step").type == "int32" and table.schema.field("layer").type == "int16"
    assert str(table.schema.field("metric").type).startswith("dictionary")
    only = store.read_metrics(tmp_path / "r", columns=["step", "value"], metrics=["loss"])
    assert list(only.columns) == ["step", "value"] and len(only) == 11
    meta = store.read_meta(tmp_path / "r")
    assert meta["status"] == "complete" and meta["schema_version"] == store.SCHEMA_VERSION
    assert store.read_kernels(tmp_path / "r").empty  # written even when empty
    assert not [p for p in (tmp_path / "r").iterdir() if ".tmp" in p.name]


def test_running_run_is_readable_after_flush(tmp_path):
    w = _writer(tmp_path / "r")
    w.add_metrics(0, 0, "h_sq", 1.0)
    w.flush()  # e.g. the process is killed after this
    assert store.read_meta(tmp_path / "r")["status"] == "running"
    assert len(store.read_metrics(tmp_path / "r")) == 1


@pytest.mark.parametrize("content,needle", [
    ("not json", "not valid JSON"),
    ('{"schema_version": 1}', "lacks field"),
    ('{"schema_version": 99, "run_id": "r", "kind": "finite", "status": "complete", "config": {}}', "upgrade"),
    ('{"schema_version": 1, "run_id": "r", "kind": "alien", "status": "complete", "config": {}}', "kind"),
])
def test_damaged_meta_is_a_clear_error(tmp_path, content, needle):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / store.RUN_JSON).write_text(content)
    with pytest.raises(store.RunFormatError, match=needle):
        store.read_meta(tmp_path / "r")
    runs = store.list_runs(tmp_path)
    assert len(runs) == 1 and needle.split()[0] in runs[0]["error"]


def test_damaged_parquet_is_a_clear_error(tmp_path):
    _writer(tmp_path / "r").finish("complete")
    (tmp_path / "r" / store.METRICS).write_bytes(b"PAR1 garbage")
    with pytest.raises(store.RunFormatError, match="not a readable Parquet"):
        store.read_metrics(tmp_path / "r")
    with pytest.raises(store.RunFormatError, match="no run.json"):
        store.read_meta(tmp_path)


def test_writable_and_run_id_checks(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(store.RunFormatError, match="cannot write"):
        store.check_writable(tmp_path / "file" / "sub")
    with pytest.raises(store.RunFormatError, match="run name"):
        store.check_run_id("../escape")
    assert json.loads(json.dumps(store.check_run_id("a_b-1.2")))


def test_stderr_column_for_limit_runs(tmp_path):
    w = store.RunWriter(tmp_path / "r", {"run_id": "r", "kind": "limit", "config": {}}, stderr=True)
    w.add_metrics(0, np.arange(3), "h_sq", [1.0, 2.0, 3.0], stderr=[0.1, 0.2, 0.3])
    with pytest.raises(KeyError):
        w.add_metrics(1, 0, "h_sq", 1.0)  # a limit run's rows must carry their error
    w.finish("complete")
    df = store.read_metrics(tmp_path / "r")
    assert df.stderr.tolist() == [0.1, 0.2, 0.3]
