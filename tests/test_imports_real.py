"""Imports of files written by the real writers: torch.utils.tensorboard, tensorboardX, tensorboard's own
EventFileWriter (TF2-style tensor scalars), and the shapes W&B documents for its exports (run history saved with
pandas; the chart panel's "Export CSV"). Every test counts the values written and the values read back.

TensorBoard's EventAccumulator is the independent reader for the single-file case; folders are checked against
the merge rule (files in start order, a (tag, step) logged again later keeps the later value).
"""
from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dynamics.__main__ import main
from dynamics.runs.imports import RunImportError, import_file
from dynamics.runs.store import read_meta, read_metrics

tb = pytest.importorskip("torch.utils.tensorboard")
tbx = pytest.importorskip("tensorboardX")

L, STEPS = 4, (0, 10, 20, 30)


def _h(ell: int, step: int) -> float:
    return 1.0 + ell / 8 + step / 64  # exactly representable in float32: round trips are bit-exact


def _torch_writer(folder: Path, steps=STEPS, loss_shift: float = 0.0) -> int:
    """What a user's loop writes with torch.utils.tensorboard; returns the number of scalars written."""
    w = tb.SummaryWriter(str(folder))
    n = 0
    for s in steps:
        for ell in range(L + 1):
            w.add_scalar(f"layer_{ell}/h_sq", _h(ell, s), s)
            w.add_scalar(f"g_sq/{ell}", _h(ell, s) / 2, s)
            n += 2
        w.add_scalar("loss", 2.0 - s / 32 + loss_shift, s)
        n += 1
    w.add_histogram("weights", np.arange(10.0), steps[-1])
    w.close()
    return n


def _values(run_dir: Path) -> pd.DataFrame:
    return read_metrics(run_dir).sort_values(["metric", "layer", "step"]).reset_index(drop=True)


def test_torch_summary_writer_file_matches_event_accumulator(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    n_in = _torch_writer(tmp_path / "exp1")
    (event,) = (tmp_path / "exp1").iterdir()
    res = import_file(event, tmp_path / "out")
    assert res.run_dir.name == "exp1"  # the folder's name, not the event file's
    ea = EventAccumulator(str(event), size_guidance={"scalars": 0})
    ea.Reload()
    ref = {(t, e.step): e.value for t in ea.Tags()["scalars"] for e in ea.Scalars(t)}
    df = _values(res.run_dir)
    got = {(f"layer_{r.layer}/h_sq" if r.metric == "h_sq" else f"g_sq/{r.layer}" if r.metric == "g_sq"
            else r.metric, r.step): r.value for r in df.itertuples()}
    assert len(got) == len(ref) == n_in == 44 and got == ref  # bit-exact, every value
    assert res.summary["per_layer_metrics"] == ["g_sq", "h_sq"] and res.summary["layers"] == L + 1
    assert any("histogram" in s["why"] and "weights" in s["what"] for s in res.skipped)


def test_folder_of_a_resumed_run_merges_in_order_later_value_wins(tmp_path):
    run = tmp_path / "runs" / "resumed"
    n1 = _torch_writer(run, steps=(0, 10, 20))
    time.sleep(0.01)
    n2 = _torch_writer(run, steps=(20, 30), loss_shift=100.0)  # restarted from the step-20 checkpoint
    (run / "notes.txt").write_text("not an event file")
    assert len([p for p in run.iterdir() if "tfevents" in p.name]) == 2
    res = import_file(run, tmp_path / "out")
    assert res.run_dir.name == "resumed" and res.meta["source"]["format"] == "tfevents"
    df = _values(res.run_dir)
    assert len(df) == n1 + n2 - 11 == 44  # 11 (tag, step) pairs at step 20 were written twice
    loss = df[df.metric == "loss"].set_index("step").value
    assert loss.to_dict() == {0: 2.0, 10: 2.0 - 10 / 32, 20: 2.0 - 20 / 32 + 100, 30: 2.0 - 30 / 32 + 100}
    whys = {s["what"]: s["why"] for s in res.skipped}
    assert "resumed run" in whys["11 earlier value(s) of a (tag, step)"]
    assert any("notes.txt" in w for w in whys)
    assert len(res.meta["merged_files"]) == 2


def test_tensorboardx_int64_steps_skips_and_a_cut_last_record(tmp_path):
    folder = tmp_path / "tokens"
    w = tbx.SummaryWriter(str(folder))
    steps = [0, 2 ** 31 - 1, 2 ** 31, 3 * 2 ** 33]  # tokens seen as the step
    for s in steps:
        w.add_scalar("layer_1/h_sq", 1.5, s)
        w.add_scalar("loss", 0.25, s)
    w.add_text("note", "hello", 0)
    w.add_image("img", np.zeros((3, 4, 4)), 0)
    w.close()
    (event,) = folder.iterdir()
    res = import_file(event, tmp_path / "out")
    df = read_metrics(res.run_dir)
    assert str(df.step.dtype) == "int64" and sorted(df[df.metric == "loss"].step) == steps
    assert len(df) == 8
    whys = " | ".join(f"{s['what']}: {s['why']}" for s in res.skipped)
    assert "image" in whys and "note" in whys
    # a file still being written: the last record is cut; TensorBoard reads up to the cut, so do we
    blob = event.read_bytes()
    cut = tmp_path / "cut" / event.name
    cut.parent.mkdir()
    cut.write_bytes(blob[:-5])
    res = import_file(cut, tmp_path / "out")
    assert any("cut off" in s["why"] for s in res.skipped)
    assert len(read_metrics(res.run_dir)) <= 8


def test_tensorboard_event_file_writer_tensor_scalars_and_a_renamed_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util
    w = EventFileWriter(str(tmp_path / "tf2"))
    for s in (0, 5):
        vals = []
        for ell in range(3):
            v = summary_pb2.Summary.Value(tag=f"h_sq/layer_{ell}", tensor=tensor_util.make_tensor_proto(
                np.float32(_h(ell, s))))
            v.metadata.plugin_data.plugin_name = "scalars"
            vals.append(v)
        w.add_event(event_pb2.Event(wall_time=time.time(), step=s, summary=summary_pb2.Summary(value=vals)))
    w.close()
    (event,) = (tmp_path / "tf2").iterdir()
    ea = EventAccumulator(str(event), size_guidance={"tensors": 0})
    ea.Reload()
    n_ref = sum(len(ea.Tensors(t)) for t in ea.Tags()["tensors"])
    renamed = tmp_path / "log.bin"  # a renamed event file is recognised by its bytes
    renamed.write_bytes(event.read_bytes())
    res = import_file(renamed, tmp_path / "out", name="tf2")
    df = _values(res.run_dir)
    assert len(df) == n_ref == 6
    np.testing.assert_array_equal(df.value, [_h(ell, s) for ell in range(3) for s in (0, 5)])


def _zip_folder(folder: Path, z: Path) -> Path:
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, f"{folder.name}/{f.relative_to(folder).as_posix()}")
    return z


def test_zipped_tensorboard_folder_imports_on_the_upload_path(tmp_path):
    from dashboard.uploads import import_uploads
    run = tmp_path / "lightning_logs" / "version_0"
    n1 = _torch_writer(run, steps=(0, 10))
    (run / "hparams.yaml").write_text("lr: 0.1\n")
    z = _zip_folder(run, tmp_path / "version_0.zip")
    res = import_file(z, tmp_path / "out")
    assert len(read_metrics(res.run_dir)) == n1 == 22
    assert any("hparams.yaml" in s["what"] for s in res.skipped)
    (tmp_path / "session").mkdir()
    (outcome,) = import_uploads([("version_0.zip", z.read_bytes())], tmp_path / "session")
    assert outcome["ok"] and outcome["format"] == "tfevents", outcome
    assert len(read_metrics(tmp_path / "session" / outcome["run"])) == n1


def test_folder_rejections_name_what_was_found(tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    found = r"no TensorBoard event files in the folder nothing \(found 1 other file\(s\): a.txt\); expected"
    with pytest.raises(RunImportError, match=found):
        import_file(empty, tmp_path / "out")
    run = tmp_path / "big"
    _torch_writer(run)
    with pytest.raises(RunImportError, match="too large together"):
        from dynamics.runs.imports import Limits
        import_file(run, tmp_path / "out", limits=Limits(max_bytes=100))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# --- W&B -------------------------------------------------------------------------------------------------
def _lightning_history(path: Path) -> tuple[Path, int]:
    """run.history() of a Lightning run: `_step` counts log calls; the optimizer step is trainer/global_step;
    train rows and validation rows are separate log calls at the same global step."""
    rows = []
    for gs in (0, 50, 100):
        rows.append({"trainer/global_step": gs, "train/loss": 1.0 / (gs + 1), "layer_0/h_sq": 1 + gs / 100,
                     "layer_1/h_sq": 2 + gs / 100, "epoch": gs // 50})
        rows.append({"trainer/global_step": gs, "val/loss": 2.0 / (gs + 1), "epoch": gs // 50})
    df = pd.DataFrame(rows)
    df.insert(0, "_step", range(len(df)))
    df["_runtime"] = np.arange(len(df)) * 1.5
    df.to_csv(path)  # with pandas' index: the `Unnamed: 0` column
    return path, 3 * 4 + 3 + 6  # train/loss, h_sq ×2, epoch on train rows; val/loss; epoch on val rows (dup)


def test_wandb_lightning_history_with_step_column(tmp_path, capsys):
    src, _ = _lightning_history(tmp_path / "history.csv")
    assert main(["import", str(src), "--out", str(tmp_path / "out"), "--step-column", "trainer/global_step"]) == 0
    assert "imported" in capsys.readouterr().out
    meta = read_meta(tmp_path / "out" / "history")
    df = read_metrics(tmp_path / "out" / "history")
    assert sorted(df.step.unique()) == [0, 50, 100]
    h = df[df.metric == "h_sq"].sort_values(["step", "layer"])
    np.testing.assert_array_equal(h.value, [1.0, 2.0, 1.5, 2.5, 2.0, 3.0])
    assert set(df.metric) == {"h_sq", "train/loss", "val/loss", "epoch"} and len(df) == 6 + 3 + 3 + 3
    whys = {s["what"]: s["why"] for s in meta["skipped"]}
    assert "index column" in whys["column Unnamed: 0"] and "bookkeeping" in whys["column _step"]
    assert "later is kept" in whys["3 earlier value(s) of a (key, trainer/global_step)"]  # epoch, twice per step
    # without the flag, `_step` (log calls) is the step: 6 steps, and the index column is still dropped
    res = import_file(src, tmp_path / "out", name="by-log-call")
    assert res.summary["steps"] == 6 and "Unnamed: 0" not in set(read_metrics(res.run_dir).metric)
    with pytest.raises(RunImportError, match="step column 'global_step' not found"):
        import_file(src, tmp_path / "out", name="x", step_column="global_step")


def _chart_export(path: Path, runs=("glowing-sun-3",)) -> tuple[Path, int]:
    """The W&B panel menu's "Export CSV": Step, `<run> - <key>`, and the sampling bounds __MIN / __MAX."""
    steps = [0, 100, 200, 300]
    cols = {"Step": steps}
    n = 0
    for r in runs:
        for ell in (0, 3):
            key = f"{r} - layer_{ell}/h_sq"
            cols[key] = [_h(ell, s) for s in steps]
            cols[key + "__MIN"] = [_h(ell, s) - 0.125 for s in steps]
            cols[key + "__MAX"] = [_h(ell, s) + 0.125 for s in steps]
            n += len(steps)
        cols[f"{r} - loss"] = [1.0, 0.5, "", 0.25]  # not logged at step 200
        n += 3
    pd.DataFrame(cols).to_csv(path, index=False, quoting=1)  # W&B quotes every field
    return path, n


def test_wandb_chart_export_csv(tmp_path):
    src, n_in = _chart_export(tmp_path / "wandb_export_2026-11-29.csv")
    assert src.read_text().splitlines()[0].startswith('"Step","glowing-sun-3 - layer_0/h_sq"')
    res = import_file(src, tmp_path / "out")
    df = read_metrics(res.run_dir)
    assert len(df) == n_in == 11 and res.meta["source"]["format"] == "wandb"
    assert res.summary["per_layer_metrics"] == ["h_sq"] and res.summary["network_scalars"] == ["loss"]
    h3 = df[(df.metric == "h_sq") & (df.layer == 3)].sort_values("step")
    np.testing.assert_array_equal(h3.value, [_h(3, s) for s in (0, 100, 200, 300)])
    whys = " | ".join(f"{s['what']}: {s['why']}" for s in res.skipped)
    assert "__MIN" in whys and "sampling bounds" in whys
    xaxis = pd.read_csv(src).rename(columns={"Step": "trainer/global_step"})
    xaxis.to_csv(tmp_path / "xaxis.csv", index=False)  # the chart's x axis set to another key
    with pytest.raises(RunImportError, match="without a Step column .* pass --step-column .* 'trainer/global_step'"):
        import_file(tmp_path / "xaxis.csv", tmp_path / "out")
    res = import_file(tmp_path / "xaxis.csv", tmp_path / "out", step_column="trainer/global_step")
    assert len(read_metrics(res.run_dir)) == n_in
    two, _ = _chart_export(tmp_path / "two.csv", runs=("run-a", "run-b"))
    with pytest.raises(RunImportError, match=r"holds 2 runs \(run-a, run-b\)"):
        import_file(two, tmp_path / "out")


# --- damaged real files: a run or one line, never a leftover ---------------------------------------------
@pytest.fixture(scope="module")
def real_samples(tmp_path_factory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("real")
    _torch_writer(tmp / "exp", steps=(0, 10))
    (event,) = (tmp / "exp").iterdir()
    return {"events.out.tfevents.1.h": event.read_bytes(),
            "exp.zip": _zip_folder(tmp / "exp", tmp / "exp.zip").read_bytes(),
            "export.csv": _chart_export(tmp / "export.csv")[0].read_bytes(),
            "history.csv": _lightning_history(tmp / "history.csv")[0].read_bytes()}


def test_fuzz_cuts_and_flips_of_real_files(tmp_path_factory, real_samples):
    from hypothesis import HealthCheck, given, settings, strategies as st

    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(data=st.data(), name=st.sampled_from(sorted(real_samples)))
    def run(data, name):
        blob = bytearray(real_samples[name])
        cut = data.draw(st.integers(0, len(blob)))
        if data.draw(st.booleans()) and cut < len(blob):
            blob[cut] ^= data.draw(st.integers(1, 255))
        else:
            blob = blob[:cut]
        tmp = tmp_path_factory.mktemp("fz")
        (tmp / name).write_bytes(bytes(blob))
        out = tmp / "out"
        try:
            res = import_file(tmp / name, out, step_column="trainer/global_step" if name == "history.csv" else None)
        except RunImportError as e:
            assert "\n" not in str(e) and str(e)
            assert not out.exists() or list(out.iterdir()) == []
            return
        assert [p.name for p in out.iterdir()] == [res.run_dir.name]
        read_metrics(res.run_dir)
    run()


def test_cli_imports_a_log_folder_and_refuses_step_column_for_events(tmp_path, capsys):
    n = _torch_writer(tmp_path / "logs" / "exp7", steps=(0, 10))
    assert main(["import", str(tmp_path / "logs" / "exp7"), "--out", str(tmp_path / "out")]) == 0
    assert "imported:" in capsys.readouterr().out
    assert len(read_metrics(tmp_path / "out" / "exp7")) == n
    assert main(["import", str(tmp_path / "logs" / "exp7"), "--out", str(tmp_path / "out"), "--name", "again",
                 "--step-column", "x"]) == 2  # event files carry their own steps
    assert "log folder" in capsys.readouterr().err
    (event,) = (tmp_path / "logs" / "exp7").iterdir()
    assert main(["import", str(event), "--out", str(tmp_path / "out"), "--step-column", "x"]) == 2
    err = capsys.readouterr().err
    assert "--step-column applies to CSV and Parquet tables" in err and err.count("\n") == 1


# --- the compiled reader against the pure-Python reference, on files of the real writers ---------------------
def test_fast_reader_equals_the_reference_on_real_files(tmp_path):
    import io
    from dynamics.runs import tfevents_fast
    from dynamics.runs.tfevents import read_scalars
    if not tfevents_fast.FAST:
        pytest.skip("protobuf's compiled backend or google-crc32c is not installed")
    _torch_writer(tmp_path / "torch")
    w = tbx.SummaryWriter(str(tmp_path / "tbx"))
    for s in (0, 2 ** 31, 3 * 2 ** 33):
        w.add_scalar("layer_1/h_sq", -0.0 if s else float("nan"), s)
        w.add_scalar("loss", 0.0, s)
    w.add_text("note", "hello", 0)
    w.add_image("img", np.zeros((3, 4, 4)), 0)
    w.close()
    files = [next((tmp_path / d).iterdir()).read_bytes() for d in ("torch", "tbx")]
    for blob in files + [files[1][:-5], files[0][:-1]]:  # whole files and cut last records
        for chunk in (7, 64, 1 << 20):  # records longer than a read, split across reads, and whole
            fast = tfevents_fast.read_columns(io.BytesIO(blob), chunk=chunk)
            ref = tfevents_fast.read_columns(io.BytesIO(blob), chunk=chunk, fast=False)
            assert fast.tags == ref.tags and fast.records == ref.records and fast.truncated == ref.truncated
            np.testing.assert_array_equal(fast.code, ref.code)
            np.testing.assert_array_equal(fast.step, ref.step)
            np.testing.assert_array_equal(fast.value.view(np.int64), ref.value.view(np.int64))  # bit-exact, NaN too
            assert fast.skipped == ref.skipped
    old = read_scalars(files[1])  # the reference's own reader (whole bytes, one object per scalar)
    fast = tfevents_fast.read_columns(io.BytesIO(files[1]))
    assert [(s.tag, s.step) for s in old.scalars] == [(fast.tags[c], s) for c, s in zip(fast.code, fast.step)]
    np.testing.assert_array_equal([s.value for s in old.scalars], fast.value)  # NaN == NaN here
    assert fast.step.dtype == np.int64 and fast.step.max() == 3 * 2 ** 33
    for bad in (files[0][:40] + bytes([files[0][40] ^ 1]) + files[0][41:],):  # a flipped data byte
        with pytest.raises(ValueError, match="CRC mismatch"):
            tfevents_fast.read_columns(io.BytesIO(bad))
