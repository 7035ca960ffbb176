"""Tests for dynamics.data: determinism by data_seed, |x|²/d = 1 on every task, the CIFAR-10 binary reader
on tiny batch files written here in the real format, user .npz/.parquet files, and one-line DataErrors."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from dynamics.config import RunConfig
from dynamics.data import CIFAR_RECORD, DataError, Dataset, load_task, normalise_inputs


def _cfg(**kw) -> RunConfig:
    base = dict(train_size=64, test_size=32, probes=4, batch=8, input_dim=16)
    return RunConfig(**{**base, **kw})


def _assert_unit_rows(ds: Dataset) -> None:
    assert ds.x.dtype == torch.float64 and ds.y.dtype == torch.float64 and ds.x.device.type == "cpu"
    torch.testing.assert_close((ds.x ** 2).sum(1) / ds.dim, torch.ones(len(ds), dtype=torch.float64),
                               rtol=0, atol=1e-12)


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


# --- normalise_inputs and Dataset ------------------------------------------------------------------

def test_normalise_inputs_scales_rows_and_rejects_zero_rows():
    x = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    out = normalise_inputs(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.0, -1.0]], dtype=torch.float64) * math.sqrt(2))
    with pytest.raises(DataError, match="row 1 is all zeros"):
        normalise_inputs(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_dataset_properties():
    ds = Dataset(torch.zeros(5, 3, dtype=torch.float64), torch.zeros(5, 2, dtype=torch.float64))
    assert (len(ds), ds.dim, ds.n_outputs, ds.labels) == (5, 3, 2, None)
    with pytest.raises(DataError):
        Dataset(torch.zeros(5, 3), torch.zeros(4, 2))


# --- synthetic tasks -------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["teacher", "mixture"])
def test_synthetic_determinism_by_data_seed_not_seed(task):
    a_tr, a_te = load_task(_cfg(task=task, data_seed=3, seed=0))
    b_tr, b_te = load_task(_cfg(task=task, data_seed=3, seed=99))
    c_tr, _ = load_task(_cfg(task=task, data_seed=4, seed=0))
    for u, v in ((a_tr, b_tr), (a_te, b_te)):
        assert torch.equal(u.x, v.x) and torch.equal(u.y, v.y)
    assert not torch.equal(a_tr.x, c_tr.x)
    # train and test are different draws; train does not depend on test_size
    assert not torch.equal(a_tr.x[:32], a_te.x)
    d_tr, d_te = load_task(_cfg(task=task, data_seed=3, test_size=0))
    assert d_te is None and torch.equal(d_tr.x, a_tr.x)


def test_teacher_shapes_unit_rows_and_unit_variance():
    train, test = load_task(_cfg(task="teacher", input_dim=20))
    assert (len(train), train.dim, train.n_outputs, train.labels) == (64, 20, 1, None)
    assert len(test) == 32
    _assert_unit_rows(train)
    _assert_unit_rows(test)
    assert abs(train.y.var(correction=0).item() - 1) < 1e-12 and abs(train.y.mean().item()) < 1e-12
    assert 0.3 < test.y.var().item() < 3  # same teacher on the test draw
    # y is a function of x: the same x gives the same y (teacher fixed by data_seed)
    big, _ = load_task(_cfg(task="teacher", input_dim=20, train_size=128, test_size=0))
    assert torch.equal(big.x[:64], train.x)


def test_teacher_with_one_training_example_has_a_nonzero_target():
    """Issue 13: centring one example with its own mean made y ≡ 0. With train_size = 1 the targets are
    standardised with the teacher's statistics over a fixed reference sample."""
    one, test1 = load_task(_cfg(task="teacher", input_dim=20, train_size=1, test_size=200, probes=1,
                                        batch="full"))
    assert one.y.abs().item() > 1e-3
    # the test draw is standardised by the same population statistics: mean ≈ 0, variance ≈ 1
    assert 0.6 < test1.y.var().item() < 1.6 and abs(test1.y.mean().item()) < 0.3


def test_digits_task_reads_the_bundled_images():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits  # the reference reader of the same bundled file
    train, test = load_task(_cfg(task="digits", train_size=1000, test_size=797, loss="xent"))
    _assert_unit_rows(train)
    _assert_unit_rows(test)
    assert (train.dim, train.n_outputs, len(train), len(test)) == (64, 10, 1000, 797)
    ref = load_digits()
    counts = np.bincount(np.concatenate([train.labels.numpy(), test.labels.numpy()]), minlength=10)
    assert counts.tolist() == np.bincount(ref.target).tolist()
    # each image is the reference image up to the per-pixel affine map and the row scaling: match one
    pix = ref.data.astype(float)
    std = pix.std(0)
    z = (pix - pix.mean(0)) / np.where(std > 0, std, 1)
    z = z / np.linalg.norm(z, axis=1, keepdims=True) * 8
    x0 = train.x[0].numpy()
    j = int(np.argmin(((z - x0) ** 2).sum(1)))
    assert np.allclose(z[j], x0, atol=1e-12) and ref.target[j] == int(train.labels[0])
    # the split is a fixed shuffle by data_seed, and too many examples is a one-line error
    again, _ = load_task(_cfg(task="digits", train_size=1000, test_size=0))
    other, _ = load_task(_cfg(task="digits", train_size=1000, test_size=0, data_seed=1))
    assert torch.equal(again.x, train.x) and not torch.equal(other.x, train.x)
    with pytest.raises(DataError) as err:
        load_task(_cfg(task="digits", train_size=1500, test_size=500))
    assert "1797" in _one_line(err)
    # a nearest-class-mean rule is far above chance (0.1) on held-out digits: the labels carry signal
    means = torch.stack([train.x[train.labels == c].mean(0) for c in range(10)])
    assert ((test.x @ means.T).argmax(1) == test.labels).double().mean().item() > 0.8


def test_mixture_labels_balanced_one_hot_and_separable():
    train, test = load_task(_cfg(task="mixture", classes=3, train_size=300, test_size=150, input_dim=16))
    _assert_unit_rows(train)
    _assert_unit_rows(test)
    assert train.labels.dtype == torch.int64 and train.n_outputs == 3
    assert int(train.labels.min()) >= 0 and int(train.labels.max()) <= 2
    assert torch.bincount(train.labels, minlength=3).tolist() == [100, 100, 100]
    assert torch.equal(train.y.argmax(1), train.labels) and torch.equal(train.y.sum(1), torch.ones(300).double())
    # the classes carry signal: a nearest-class-mean rule beats chance (1/3) clearly on the test draw
    means = torch.stack([train.x[train.labels == c].mean(0) for c in range(3)])  # (3, d)
    accuracy = ((test.x @ means.T).argmax(1) == test.labels).double().mean().item()
    assert accuracy > 0.6


def test_xent_on_regression_task_is_an_error():
    with pytest.raises(DataError) as err:
        load_task(_cfg(task="teacher", loss="xent"))
    assert "use --loss mse" in _one_line(err)
    train, _ = load_task(_cfg(task="mixture", loss="xent"))
    assert train.labels is not None


# --- CIFAR-10 binary -------------------------------------------------------------------------------

def _write_batch(path, labels, pixels) -> None:
    """Records in the real binary layout: label byte, then 1024 R, 1024 G, 1024 B bytes."""
    rec = np.concatenate([np.asarray(labels, np.uint8)[:, None], pixels.astype(np.uint8)], axis=1)
    rec.tofile(path)


def _cifar_dir(tmp_path, per_file=3):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=6 * per_file)
    pixels = rng.integers(0, 256, size=(6 * per_file, 3072))
    pixels[1, :1024] = 77  # record 1: constant R plane
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for k, name in enumerate(names):
        s = slice(k * per_file, (k + 1) * per_file)
        _write_batch(tmp_path / name, labels[s], pixels[s])
    return labels, pixels


def _cifar_cfg(tmp_path, **kw) -> RunConfig:
    return RunConfig(**{**dict(task="cifar10", data_dir=str(tmp_path), train_size=12, test_size=3,
                               probes=2, batch=4), **kw})


def test_cifar10_reads_binary_layout(tmp_path):
    labels, pixels = _cifar_dir(tmp_path)
    train, test = load_task(_cifar_cfg(tmp_path))
    assert train.labels.tolist() == labels[:12].tolist() and test.labels.tolist() == labels[15:18].tolist()
    assert (train.dim, train.n_outputs) == (3072, 10)
    assert torch.equal(train.y.argmax(1), train.labels)
    _assert_unit_rows(train)
    _assert_unit_rows(test)
    # reference: per-channel standardisation with train statistics, R|G|B planes, rows normalised
    planes = pixels.astype(np.float64).reshape(-1, 3, 1024)
    mean = planes[:12].mean(axis=(0, 2), keepdims=True)
    std = planes[:12].std(axis=(0, 2), keepdims=True)
    ref = ((planes - mean) / std).reshape(-1, 3072)
    ref *= np.sqrt(3072) / np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(train.x.numpy(), ref[:12], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(test.x.numpy(), ref[15:18], rtol=1e-12, atol=1e-12)
    r = train.x[1, :1024]
    assert torch.allclose(r, r[0].expand(1024)) and not torch.allclose(train.x[1, 1024:2048], r[:1024])


def test_cifar10_partial_batches_and_test_size_zero(tmp_path):
    labels, _ = _cifar_dir(tmp_path)
    for name in ("data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"):
        (tmp_path / name).unlink()
    train, test = load_task(_cifar_cfg(tmp_path, train_size=5, test_size=0))
    assert test is None and train.labels.tolist() == labels[:5].tolist()
    with pytest.raises(DataError) as err:
        load_task(_cifar_cfg(tmp_path, train_size=9, test_size=0))
    msg = _one_line(err)
    assert "data_batch_3.bin" in msg and "data_batch_5.bin" in msg and "--train-size" in msg
    with pytest.raises(DataError, match="test_batch.bin"):
        load_task(_cifar_cfg(tmp_path, train_size=5, test_size=2))


def test_cifar10_missing_dir_truncated_bad_label_too_few(tmp_path):
    with pytest.raises(DataError) as err:
        load_task(_cifar_cfg(tmp_path / "nope"))
    msg = _one_line(err)
    assert "does not exist" in msg and "cifar-10-binary.tar.gz" in msg and "--data-dir" in msg
    _cifar_dir(tmp_path)
    with pytest.raises(DataError, match="hold only 15 records"):
        load_task(_cifar_cfg(tmp_path, train_size=16, batch=4))
    with pytest.raises(DataError, match="holds only 3 records"):
        load_task(_cifar_cfg(tmp_path, test_size=4))
    with open(tmp_path / "data_batch_1.bin", "ab") as f:
        f.write(b"\x00" * 100)
    with pytest.raises(DataError) as err:
        load_task(_cifar_cfg(tmp_path))
    assert "data_batch_1.bin" in _one_line(err) and "truncated or not a CIFAR-10 binary batch" in str(err.value)
    _write_batch(tmp_path / "data_batch_1.bin", [1, 12, 3], np.zeros((3, 3072)))
    with pytest.raises(DataError, match="label byte 12 > 9"):
        load_task(_cifar_cfg(tmp_path))


def test_cifar10_only_pickle_version_present_gets_a_hint(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"not read")
    with pytest.raises(DataError) as err:
        load_task(_cifar_cfg(tmp_path))
    assert "pickle" in _one_line(err) and "data_batch_1.bin" in str(err.value)
    assert CIFAR_RECORD == 3073


# --- user files ------------------------------------------------------------------------------------

def _xy(n=10, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n, 2)), rng.integers(0, 3, size=n)


def _file_cfg(path, **kw) -> RunConfig:
    return RunConfig(**{**dict(task=f"file:{path}", train_size=6, test_size=4, probes=2, batch=2), **kw})


def test_npz_regression_and_classification_round_trip(tmp_path):
    x, y, labels = _xy()
    np.savez(tmp_path / "reg.npz", x=x, y=y)
    train, test = load_task(_file_cfg(tmp_path / "reg.npz"))
    ref = normalise_inputs(torch.from_numpy(x))
    assert torch.allclose(train.x, ref[:6]) and torch.allclose(test.x, ref[6:])
    assert torch.equal(train.y, torch.from_numpy(y[:6])) and train.labels is None and train.n_outputs == 2
    np.savez(tmp_path / "cls.npz", x=x.astype(np.float32), y=labels)
    train, test = load_task(_file_cfg(tmp_path / "cls.npz", test_size=5, loss="xent"))
    assert test is None  # 10 rows < 6 + 5: no split in the file
    assert train.labels.tolist() == labels[:6].tolist() and train.n_outputs == int(labels.max()) + 1
    assert train.x.dtype == torch.float64 and torch.equal(train.y.argmax(1), train.labels)
    _assert_unit_rows(train)


def test_parquet_list_and_scalar_layouts_round_trip(tmp_path):
    x, y, labels = _xy()
    pd.DataFrame({"x": list(x), "y": list(y)}).to_parquet(tmp_path / "lists.parquet")
    train, test = load_task(_file_cfg(tmp_path / "lists.parquet"))
    assert torch.allclose(train.x, normalise_inputs(torch.from_numpy(x[:6])))
    assert torch.equal(test.y, torch.from_numpy(y[6:]))
    df = pd.DataFrame({"a": x[:, 0], "y1": y[:, 1], "b": x[:, 1], "y0": y[:, 0]})
    df.to_parquet(tmp_path / "cols.parquet")
    train, _ = load_task(_file_cfg(tmp_path / "cols.parquet"))
    assert torch.allclose(train.x, normalise_inputs(torch.from_numpy(x[:6, :2])))
    assert torch.equal(train.y, torch.from_numpy(y[:6]))  # y0, y1 in index order
    pd.DataFrame({"f0": x[:, 0], "f1": x[:, 1], "y": labels}).to_parquet(tmp_path / "lab.parquet")
    train, test = load_task(_file_cfg(tmp_path / "lab.parquet", loss="xent"))
    assert train.labels.tolist() == labels[:6].tolist() and test.labels.tolist() == labels[6:].tolist()


@pytest.mark.parametrize("case, needle", [
    ("missing", "does not exist"),
    ("csv", "unsupported extension"),
    ("no_y", "must hold arrays named 'x'"),
    ("object", "without pickle"),
    ("nan", "NaN or inf"),
    ("mismatch", "x has 10 rows but y has 9"),
    ("few", "lower --train-size"),
    ("string_col", "non-numeric"),
    ("xent_reg", "use --loss mse"),
    ("not_parquet", "could not read"),
    ("not_npz", "not a .npz archive"),
])
def test_bad_files_raise_one_line_data_errors(tmp_path, case, needle):
    x, y, _ = _xy()
    path = tmp_path / "d.npz"
    kw = {}
    if case == "csv":
        path = tmp_path / "d.csv"
        path.write_text("x,y\n1,2\n")
    elif case == "no_y":
        np.savez(path, x=x)
    elif case == "object":
        np.savez(path, x=np.array([{"a": 1}] * 10, dtype=object), y=y)
    elif case == "nan":
        x[3, 1] = np.nan
        np.savez(path, x=x, y=y)
    elif case == "mismatch":
        np.savez(path, x=x, y=y[:9])
    elif case == "few":
        np.savez(path, x=x, y=y)
        kw = dict(train_size=11)
    elif case == "string_col":
        path = tmp_path / "d.parquet"
        pd.DataFrame({"a": x[:, 0], "name": ["s"] * 10, "y": y[:, 0]}).to_parquet(path)
    elif case == "xent_reg":
        np.savez(path, x=x, y=y)
        kw = dict(loss="xent")
    elif case == "not_npz":
        path.write_bytes(b"garbage")
    elif case == "not_parquet":
        path = tmp_path / "d.parquet"
        path.write_bytes(b"garbage")
    with pytest.raises(DataError) as err:
        load_task(_file_cfg(path, **kw))
    assert needle in _one_line(err)


def test_replace_keeps_task_identical():
    cfg = _cfg(task="mixture")
    a, _ = load_task(cfg)
    b, _ = load_task(dataclasses.replace(cfg, width=8, depth=2, lr=0.1))
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
