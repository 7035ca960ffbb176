"""dynamics.runs.imports and dynamics.runs.tfevents: every format becomes a readable run; every bad file is one line.

Event files are written here independently of the reader: the Event/Summary/TensorProto messages are encoded
by the `protobuf` package from descriptors declared in this file, and the CRCs by a bit-at-a-time CRC32C
(the reader's is table-driven). Hypothesis fuzzes the importers with random bytes, random CSV text and
truncations of valid files: the outcome is a valid run or a one-line RunImportError, and never a leftover.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dynamics.__main__ import main
from dynamics.runs.imports import Limits, RunImportError, import_file, split_name
from dynamics.runs.store import list_runs, read_kernels, read_meta, read_metrics, read_neurons
from dynamics.runs.tfevents import crc32c, masked_crc32c, read_scalars

from conftest import write_limit_run, write_synthetic_runs


# --- an independent event-file writer -------------------------------------------------------------------
def _crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _mask(c: int) -> int:
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _messages():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="t_events.proto", package="t")

    def msg(name, *fields):
        m = fdp.message_type.add(name=name)
        for fname, num, ftype, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = tname
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg("Tensor", ("dtype", 1, F.TYPE_INT32, opt, None), ("tensor_content", 4, F.TYPE_BYTES, opt, None),
        ("float_val", 5, F.TYPE_FLOAT, rep, None), ("double_val", 6, F.TYPE_DOUBLE, rep, None))
    msg("Histo", ("min", 1, F.TYPE_DOUBLE, opt, None))
    msg("Value", ("tag", 1, F.TYPE_STRING, opt, None), ("simple_value", 2, F.TYPE_FLOAT, opt, None),
        ("histo", 5, F.TYPE_MESSAGE, opt, ".t.Histo"), ("tensor", 8, F.TYPE_MESSAGE, opt, ".t.Tensor"))
    msg("Summary", ("value", 1, F.TYPE_MESSAGE, rep, ".t.Value"))
    msg("Event", ("wall_time", 1, F.TYPE_DOUBLE, opt, None), ("step", 2, F.TYPE_INT64, opt, None),
        ("file_version", 3, F.TYPE_STRING, opt, None), ("summary", 5, F.TYPE_MESSAGE, opt, ".t.Summary"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Event"))


Event = _messages()


def _record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", _mask(_crc32c_bitwise(header))) + data
            + struct.pack("<I", _mask(_crc32c_bitwise(data))))


def _event(step: int, **values) -> bytes:
    """values: tag -> float (simple_value), ("content", x) / ("float_val", x) / ("double", x) tensors,
    or "histo"."""
    ev = Event(wall_time=1.7e9 + step, step=step)
    for tag, v in values.items():
        val = ev.summary.value.add(tag=tag.replace("__", "/"))
        if v == "histo":
            val.histo.min = 0.0
        elif isinstance(v, tuple) and v[0] == "content":
            val.tensor.dtype, val.tensor.tensor_content = 1, struct.pack("<f", v[1])
        elif isinstance(v, tuple) and v[0] == "float_val":
            val.tensor.dtype = 1
            val.tensor.float_val.append(v[1])
        elif isinstance(v, tuple) and v[0] == "double":
            val.tensor.dtype = 2
            val.tensor.double_val.append(v[1])
        else:
            val.simple_value = v
    return _record(ev.SerializeToString())


def _events_file(path: Path) -> Path:
    """layer_ℓ/h_sq (simple_value), g_sq/ℓ (tensors of three encodings), loss, a histogram, a resumed step."""
    blob = _record(Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString())
    for step in (0, 10, 20):
        vals = {f"layer_{ell}__h_sq": 1.0 + ell + step / 100 for ell in range(3)}
        vals.update({"g_sq__0": ("content", 0.5 + step), "g_sq__1": ("float_val", 0.25 + step),
                     "g_sq__2": ("double", 0.125 + step), "loss": 2.0 - step / 20, "weights": "histo"})
        blob += _event(step, **vals)
    blob += _event(20, loss=0.75)  # logged again after a restart: the later value is kept
    path.write_bytes(blob)
    return path


# --- sample files of every format -----------------------------------------------------------------------
def _long_csv(path: Path, stderr: bool = False) -> Path:
    rows = [(s, ell, m, 1.0 + s + ell / 10) for s in (0, 5) for ell in range(4) for m in ("h_sq", "g_sq")]
    rows += [(s, -1, "loss", 1.0 / (1 + s)) for s in range(6)]
    df = pd.DataFrame(rows, columns=["step", "layer", "metric", "value"])
    if stderr:
        df["stderr"] = 0.01
    df.to_csv(path, index=False)
    return path


def _zipped_run(tmp_path: Path, limit: bool = False) -> Path:
    root = tmp_path / "src"
    name = write_limit_run(root) if limit else write_synthetic_runs(root)[0]
    z = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted((root / name).iterdir()):
            zf.write(f, f"{name}/{f.name}")
    return z


def _wandb(tmp_path: Path, kind: str) -> Path:
    df = pd.DataFrame({"_step": [0, 1, 2, 3], "_runtime": [0.1, 0.2, 0.3, 0.4],
                       "h_sq/0": [1.0, None, 1.2, None], "layer_1/h_sq": [1.1, None, 1.3, None],
                       "h_sq/2": [1.2, None, 1.4, None], "loss": [2.0, 1.5, 1.0, 0.5],
                       "media": ["img.png", None, "img2.png", None]})
    path = tmp_path / f"history.{kind}"
    df.to_csv(path, index=False) if kind == "csv" else df.to_parquet(path)
    return path


def _only_runs(out: Path) -> list[str]:
    """Run directories under out; fails on leftovers (hidden temporary folders, partial runs)."""
    if not out.exists():
        return []
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".")], names
    for n in names:
        assert read_meta(out / n)["status"] in ("complete", "diverged", "failed")
    return names


# --- the formats ----------------------------------------------------------------------------------------
def test_crc32c_known_vectors_and_mask():
    assert crc32c(b"123456789") == 0xE3069283 == _crc32c_bitwise(b"123456789")
    assert crc32c(b"") == 0
    blob = bytes(range(256)) * 3
    assert crc32c(blob) == _crc32c_bitwise(blob) and masked_crc32c(blob) == _mask(_crc32c_bitwise(blob))


def test_crc32c_chunked_numpy_path_matches_bitwise():
    rng = np.random.default_rng(0)
    for n in (0, 5, 111, 70_001):  # 70 001 bytes: past the 64 KiB threshold of the chunked path
        blob = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c(blob) == crc32c(blob, chunk=7) == _crc32c_bitwise(blob)


def test_naming_rule():
    assert split_name("layer_7/h_sq") == (7, "h_sq") == split_name("h_sq/7") == split_name("layer7/h_sq")
    assert split_name("h_sq/layer_7") == (7, "h_sq")
    assert split_name("train/h_sq/3") == (-1, "train/h_sq/3")
    assert split_name("loss") == (-1, "loss") and split_name("train/acc") == (-1, "train/acc")


def test_long_csv(tmp_path):
    src = _long_csv(tmp_path / "log.csv", stderr=True)
    (tmp_path / "log.csv.json").write_text(json.dumps({"width": 64, "depth": 4, "act": "relu"}))
    res = import_file(src, tmp_path / "out")
    meta = read_meta(res.run_dir)
    assert (meta["kind"], meta["status"], meta["run_id"]) == ("imported", "complete", "log")
    assert meta["config"] == {"width": 64, "depth": 4, "act": "relu"} and meta["config_source"] == "log.csv.json"
    assert meta["source"]["format"] == "csv" and meta["source"]["file"] == "log.csv"
    df = read_metrics(res.run_dir)
    assert len(df) == 22 and "stderr" in df.columns
    assert str(df.step.dtype) == "int32" and str(df.layer.dtype) == "int16"
    assert res.summary["per_layer_metrics"] == ["g_sq", "h_sq"] and res.summary["network_scalars"] == ["loss"]
    assert res.summary["layer_range"] == [-1, 3] and res.summary["steps"] == 6
    assert read_kernels(res.run_dir).empty and read_neurons(res.run_dir).empty  # all three files exist


def test_depth_inferred_and_checked(tmp_path):
    src = _long_csv(tmp_path / "log.csv")
    res = import_file(src, tmp_path / "out", name="inferred")
    assert res.meta["config"] == {"depth": 3} and res.meta["config_source"] == "inferred"
    assert any(s["what"] == "config" for s in res.skipped)
    with pytest.raises(RunImportError, match="depth 2 must be"):
        import_file(src, tmp_path / "out", config={"depth": 2})
    _only_runs(tmp_path / "out")


def test_zipped_run_of_ours(tmp_path):
    res = import_file(_zipped_run(tmp_path), tmp_path / "out")
    src = tmp_path / "src" / "w64-d4"
    meta = read_meta(res.run_dir)
    assert meta["kind"] == "imported" and meta["source"]["original"]["kind"] == "finite"
    assert meta["config"] == read_meta(src)["config"]
    pd.testing.assert_frame_equal(read_metrics(res.run_dir).sort_values(["step", "layer", "metric"])
                                  .reset_index(drop=True),
                                  read_metrics(src).sort_values(["step", "layer", "metric"]).reset_index(drop=True))
    assert len(read_neurons(res.run_dir)) == len(read_neurons(src))


def test_zipped_limit_run_keeps_stderr(tmp_path):
    res = import_file(_zipped_run(tmp_path, limit=True), tmp_path / "out")
    assert "stderr" in read_metrics(res.run_dir).columns


def test_metrics_parquet_alone_and_with_run_json(tmp_path):
    src = tmp_path / "src"
    write_synthetic_runs(src)
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "metrics.parquet").write_bytes((src / "w64-d4" / "metrics.parquet").read_bytes())
    res = import_file(alone / "metrics.parquet", tmp_path / "out", name="alone")
    assert res.meta["config"] == {"depth": 4}
    res = import_file(src / "w64-d4" / "metrics.parquet", tmp_path / "out", name="with-json")
    assert res.meta["config"]["width"] == 64 and res.meta["config_source"] == "run.json"
    assert res.meta["source"]["format"] == "parquet"


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_wandb_history(tmp_path, kind):
    res = import_file(_wandb(tmp_path, kind), tmp_path / "out")
    df = read_metrics(res.run_dir)
    assert res.meta["source"]["format"] == "wandb"
    h = df[df.metric == "h_sq"].sort_values(["step", "layer"])
    assert list(zip(h.step, h.layer)) == [(0, 0), (0, 1), (0, 2), (2, 0), (2, 1), (2, 2)]
    np.testing.assert_allclose(h.value, [1.0, 1.1, 1.2, 1.2, 1.3, 1.4])
    assert list(df[df.metric == "loss"].layer.unique()) == [-1]
    skipped = {s["what"]: s["why"] for s in res.skipped}
    assert "W&B bookkeeping" in skipped["column _runtime"] and "not numeric" in skipped["column media"]


def test_tensorboard_events(tmp_path):
    src = _events_file(tmp_path / "events.out.tfevents.1700000000.host")
    res = import_file(src, tmp_path / "out")
    df = read_metrics(res.run_dir)
    h = df[df.metric == "h_sq"].sort_values(["step", "layer"])
    np.testing.assert_allclose(h.value, [1 + ell + s / 100 for s in (0, 10, 20) for ell in range(3)], rtol=1e-6)
    g = df[(df.metric == "g_sq") & (df.step == 10)].sort_values("layer")
    np.testing.assert_allclose(g.value, [10.5, 10.25, 10.125])
    loss = df[df.metric == "loss"].sort_values("step")
    np.testing.assert_allclose(loss.value, [2.0, 1.5, 0.75])  # the later value at step 20
    whys = " | ".join(f"{s['what']}: {s['why']}" for s in res.skipped)
    assert "histogram" in whys and "weights" in whys and "resumed" in whys
    assert res.meta["config"] == {"depth": 2}


def test_event_reader_checks_both_crcs(tmp_path):
    blob = _events_file(tmp_path / "e.tfevents").read_bytes()
    assert len(read_scalars(blob).scalars) == 3 * 7 + 1  # h_sq ×3, g_sq ×3, loss; + the resumed loss
    bad_len = bytearray(blob)
    bad_len[8] ^= 1
    with pytest.raises(ValueError, match="length CRC"):
        read_scalars(bytes(bad_len))
    bad_data = bytearray(blob)
    bad_data[-6] ^= 1
    with pytest.raises(ValueError, match="data CRC"):
        read_scalars(bytes(bad_data))


# --- rejections: one line, exit 2, nothing left behind ---------------------------------------------------
BAD_CSV = {
    "missing": ("step,layer,value\n0,0,1\n", "wrong columns: missing metric"),
    "text": ("step,layer,metric,value\n0,0,h_sq,abc\n", "non-numeric values in column 'value'"),
    "nan_step": ("step,layer,metric,value\nnan,0,h_sq,1\n", "NaN steps"),
    "dup": ("step,layer,metric,value\n0,0,h_sq,1\n0,0,h_sq,2\n", "duplicate keys: step 0, layer 0, metric 'h_sq'"),
    "float_step": ("step,layer,metric,value\n0.5,0,h_sq,1\n", "step 0.5 at line 2 is not an integer"),
    "layer": ("step,layer,metric,value\n0,-2,h_sq,1\n", "layer -2"),
    "empty": ("", "empty CSV"),
    "header_only": ("step,layer,metric,value\n", "no rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_is_one_line_and_leaves_nothing(tmp_path, capsys, case):
    text, expected = BAD_CSV[case]
    src = tmp_path / "bad.csv"
    src.write_text(text)
    assert main(["import", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m dynamics: error: ") and expected in err and err.count("\n") == 1
    assert _only_runs(tmp_path / "out") == []


def test_cli_imports_and_prints_a_summary(tmp_path, capsys):
    src = _long_csv(tmp_path / "log.csv")
    assert main(["import", str(src), "--out", str(tmp_path / "out"), "--name", "mine"]) == 0
    out = capsys.readouterr().out
    assert "imported:" in out and "h_sq" in out and "skipped config" in out
    assert main(["import", str(src), "--out", str(tmp_path / "out"), "--name", "mine"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_other_rejections(tmp_path):
    out = tmp_path / "out"
    cases = {"x.parquet": (b"not parquet at all", "not a Parquet file"),
             "y.parquet": (b"PAR1" + b"\0" * 20, "truncated Parquet file"),
             "z.zip": (b"hello", "not a zip file"),
             "c.json": (b"{}", "a JSON file alone is not a run"),
             "d.bin": (b"\x00\x01", "unsupported format"),
             "e.csv": (b"\xff\xfe", "not UTF-8"),
             "events.out.tfevents.1": (b"\x01" * 30, "length CRC")}
    for name, (blob, expected) in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(RunImportError, match=expected):
            import_file(tmp_path / name, out)
    good = _long_csv(tmp_path / "log.csv")
    with pytest.raises(RunImportError, match="too large"):
        import_file(good, out, limits=Limits(max_bytes=100))
    with pytest.raises(RunImportError, match="CSV too large"):
        import_file(good, out, limits=Limits(max_rows=5))
    with pytest.raises(RunImportError, match="layers limit"):
        import_file(good, out, limits=Limits(max_layers=2))
    blob = _events_file(tmp_path / "ev.tfevents").read_bytes()
    (tmp_path / "cut.tfevents").write_bytes(blob[:-7])
    with pytest.raises(RunImportError, match="truncated file"):
        import_file(tmp_path / "cut.tfevents", out)
    assert _only_runs(out) == []


def _zip_with(tmp_path: Path, entries: list[tuple[str, bytes, int]]) -> Path:
    z = tmp_path / "crafted.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return z


@pytest.mark.parametrize("entries, expected", [
    ([("../run.json", b"{}", 0o100644)], "unsafe path"),
    ([("/abs/run.json", b"{}", 0o100644)], "unsafe path"),
    ([("run.json", b"metrics.parquet", 0o120777)], "link"),
    ([("run.json", b"{}", 0o100644), ("evil.py", b"x", 0o100644)], "unexpected zip entry 'evil.py'"),
    ([("a/b/run.json", b"{}", 0o100644)], "unexpected zip entry"),
    ([("run.json", b"{}", 0o100644)], "no metrics.parquet"),
    ([(f"f{k}", b"", 0o100644) for k in range(20)], "20 entries"),
])
def test_unsafe_zips_are_rejected(tmp_path, entries, expected):
    with pytest.raises(RunImportError, match=expected):
        import_file(_zip_with(tmp_path, entries), tmp_path / "out")
    assert _only_runs(tmp_path / "out") == []


def test_zip_total_size_limit(tmp_path):
    z = _zipped_run(tmp_path)
    with pytest.raises(RunImportError, match="uncompressed"):
        import_file(z, tmp_path / "out", limits=Limits(max_unzipped_bytes=1000))


# --- fuzzing ---------------------------------------------------------------------------------------------
# 150 fixed examples per test in the suite; DYNAMICS_FUZZ_EXAMPLES=2000 explores further with fresh seeds
_EXTRA = int(os.environ.get("DYNAMICS_FUZZ_EXAMPLES", 0))
FUZZ = settings(max_examples=_EXTRA or 150, deadline=None, suppress_health_check=list(HealthCheck),
                derandomize=not _EXTRA)


def _outcome(tmp: Path, name: str, blob: bytes, k: list[int]) -> None:
    """Import the bytes: a readable run or a one-line RunImportError; nothing else, no leftovers."""
    k[0] += 1
    src = tmp / f"in{k[0]}"
    src.mkdir()
    (src / name).write_bytes(blob)
    out = tmp / f"out{k[0]}"
    try:
        res = import_file(src / name, out, limits=Limits(max_rows=100_000, max_unzipped_bytes=10 * 2 ** 20))
    except RunImportError as e:
        assert "\n" not in str(e) and str(e)
        assert _only_runs(out) == []
        return
    assert _only_runs(out) == [res.run_dir.name]
    read_metrics(res.run_dir)
    read_kernels(res.run_dir)
    read_neurons(res.run_dir)
    assert read_meta(res.run_dir)["kind"] == "imported"


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("samples")
    return {"run.zip": _zipped_run(tmp).read_bytes(),
            "metrics.parquet": (tmp / "src" / "w64-d4" / "metrics.parquet").read_bytes(),
            "history.parquet": _wandb(tmp, "parquet").read_bytes(),
            "events.out.tfevents.1": _events_file(tmp / "ev").read_bytes(),
            "log.csv": _long_csv(tmp / "log.csv").read_bytes()}


@FUZZ
@given(blob=st.binary(max_size=2000),
       name=st.sampled_from(["f.csv", "f.parquet", "f.zip", "events.out.tfevents.9", "f.dat"]))
def test_fuzz_random_bytes(tmp_path_factory, blob, name):
    tmp = tmp_path_factory.mktemp("fz")
    _outcome(tmp, name, blob, [0])


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("0123456789,.-\n\"eE naNstplyrmicvhq_/ ")), max_size=300),
       header=st.sampled_from(["step,layer,metric,value\n", "step,layer,metric,value,stderr\n", "_step,loss,h_sq/1\n",
                               ""]))
def test_fuzz_random_csv(tmp_path_factory, text, header):
    tmp = tmp_path_factory.mktemp("fz")
    _outcome(tmp, "f.csv", (header + text).encode(), [0])


@FUZZ
@given(data=st.data(), name=st.sampled_from(["run.zip", "metrics.parquet", "history.parquet",
                                             "events.out.tfevents.1", "log.csv"]))
def test_fuzz_truncations_and_flips(tmp_path_factory, samples, data, name):
    blob = bytearray(samples[name])
    cut = data.draw(st.integers(0, len(blob)))
    if data.draw(st.booleans()) and cut < len(blob):
        blob[cut] ^= data.draw(st.integers(1, 255))  # a flipped byte instead of a cut
    else:
        blob = blob[:cut]
    tmp = tmp_path_factory.mktemp("fz")
    _outcome(tmp, name, bytes(blob), [0])
