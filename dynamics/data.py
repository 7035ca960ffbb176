"""Tasks and datasets: the (train, test) pairs that `train(cfg)` and the limit engine consume.

`load_task(cfg)` reads `cfg.task` and returns float64 CPU `Dataset`s whose input rows are scaled so that
|x|²/d = 1 (docs/theory.md §1). Built-in tasks: `teacher` (regression on a fixed random tanh network), `mixture`
(Gaussian-mixture classification), `digits` (the 1,797 8×8 handwritten digits that scikit-learn ships inside
its package: real images that need no download; 10 classes whatever --classes says, as for cifar10),
`cifar10` (the binary batches in `cfg.data_dir`, read with numpy, never pickle) and `file:PATH` (a user's .npz
or .parquet). Synthetic tasks draw every random number from a generator seeded by `cfg.data_seed`, so the task is identical across init seeds. Every expected problem
(missing or malformed files, a loss that does not fit the task) raises `DataError` with a one-line message.
"""
from __future__ import annotations

import math
import os
import re
import zipfile
from dataclasses import dataclass

import numpy as np
import torch

from .config import DataError, RunConfig  # noqa: F401  (DataError: raised here)

TEACHER_HIDDEN = 64        # k: hidden units of the teacher network
MIXTURE_SEPARATION = 2.0   # |class mean| in units of the per-coordinate noise std
CIFAR_RECORD = 1 + 3 * 32 * 32   # label byte, then 1024 R, 1024 G, 1024 B bytes (row-major 32×32)
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch.bin"
_CIFAR_HELP = ("get the CIFAR-10 binary version (cifar-10-binary.tar.gz from "
               "https://www.cs.toronto.edu/~kriz/cifar.html), extract it and pass --data-dir "
               "pointing at the cifar-10-batches-bin folder")


@dataclass(frozen=True)
class Dataset:
    """N examples: inputs x (N, d) with |x|²/d = 1, targets y (N, C), class labels (N,) or None."""
    x: torch.Tensor
    y: torch.Tensor
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.dim() != 2 or self.y.dim() != 2 or self.y.shape[0] != n:
            raise DataError(f"Dataset needs x (N, d) and y (N, C); got {tuple(self.x.shape)} and "
                            f"{tuple(self.y.shape)}")
        if self.labels is not None and tuple(self.labels.shape) != (n,):
            raise DataError(f"Dataset labels must have shape ({n},); got {tuple(self.labels.shape)}")

    @property
    def n_outputs(self) -> int:
        """C: the number of network outputs (1 for scalar regression, classes for classification)."""
        return self.y.shape[1]

    @property
    def dim(self) -> int:
        """d: the input dimension."""
        return self.x.shape[1]

    def __len__(self) -> int:
        return self.x.shape[0]


def normalise_inputs(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to |x|²/d = 1: x_μ ← x_μ √d / |x_μ| (float64); an all-zero row is a DataError."""
    x = torch.as_tensor(x).to(torch.float64)
    if x.dim() != 2:
        raise DataError(f"inputs must be a 2-D (N, d) array; got shape {tuple(x.shape)}")
    norms = x.norm(dim=1, keepdim=True)  # (N, 1)
    zero = (norms[:, 0] == 0).nonzero()
    if len(zero):
        raise DataError(f"input row {int(zero[0])} is all zeros and cannot be scaled to |x|^2/d = 1; "
                        f"drop or fix that row")
    return x * (math.sqrt(x.shape[1]) / norms)


def load_task(cfg: RunConfig) -> tuple[Dataset, Dataset | None]:
    """(train, test) for cfg.task; test is None when cfg.test_size == 0 (for file: tasks, test is None
    unless the file holds at least train_size + test_size rows)."""
    if cfg.task == "teacher":
        _check_loss(cfg, classification=False)
        train, test = _teacher(cfg)
    elif cfg.task == "mixture":
        train, test = _mixture(cfg)
    elif cfg.task == "digits":
        train, test = _digits(cfg)
    elif cfg.task == "cifar10":
        train, test = _cifar10(cfg)
    elif cfg.task.startswith("file:"):
        train, test = _from_file(cfg, cfg.task[len("file:"):])
    else:
        raise DataError(f"task={cfg.task!r} is not supported; choose teacher, mixture, digits, cifar10 or "
                        "file:PATH")
    _check_loss(cfg, classification=train.labels is not None)
    return train, (test if cfg.test_size > 0 else None)


def _check_loss(cfg: RunConfig, classification: bool) -> None:
    if cfg.loss == "xent" and not classification:
        raise DataError("loss xent needs a classification task (mixture, cifar10, or a file with integer "
                        "labels); use --loss mse")


def _classification(x: torch.Tensor, labels: torch.Tensor, classes: int) -> Dataset:
    """Dataset with x as given (already normalised), one-hot y (N, classes) and int64 labels."""
    labels = labels.to(torch.int64)
    y = torch.nn.functional.one_hot(labels, classes).to(torch.float64)  # (N, classes)
    return Dataset(x, y, labels)


def _split(n_train: int, n_test: int, *tensors: torch.Tensor) -> tuple[list, list]:
    return [t[:n_train] for t in tensors], [t[n_train:n_train + n_test] for t in tensors]


# --- synthetic tasks ---------------------------------------------------------------------------------

TEACHER_REFERENCE = 4096  # inputs of the fixed reference sample that standardises a one-example train set


def _teacher(cfg: RunConfig) -> tuple[Dataset, Dataset]:
    """y = aᵀ tanh(B x / √d) / √k with a, B ~ N(0, 1), standardised with the train mean and std (C = 1).

    One training example has no spread, and centring it with its own mean would make its target 0 whatever
    the teacher: with train_size = 1 the targets are standardised with the teacher's output statistics over a
    fixed reference sample of TEACHER_REFERENCE inputs instead (drawn from a second generator, so the
    train and test draws are the same as for any other train_size)."""
    d, k, n = cfg.input_dim, TEACHER_HIDDEN, cfg.train_size
    gen = torch.Generator().manual_seed(cfg.data_seed)
    b = torch.randn(k, d, generator=gen, dtype=torch.float64)  # (k, d)
    a = torch.randn(k, 1, generator=gen, dtype=torch.float64)  # (k, 1)
    # train is drawn before test, so train does not depend on test_size
    x = torch.cat([torch.randn(n, d, generator=gen, dtype=torch.float64),
                   torch.randn(cfg.test_size, d, generator=gen, dtype=torch.float64)])
    x = normalise_inputs(x)                                    # (N_train + N_test, d)
    y = torch.tanh(x @ b.T / math.sqrt(d)) @ a / math.sqrt(k)  # (N_train + N_test, 1)
    ref = y[:n]
    if n < 2:
        g_ref = torch.Generator().manual_seed(cfg.data_seed + 1_000_003)
        x_ref = normalise_inputs(torch.randn(TEACHER_REFERENCE, d, generator=g_ref, dtype=torch.float64))
        ref = torch.tanh(x_ref @ b.T / math.sqrt(d)) @ a / math.sqrt(k)  # (TEACHER_REFERENCE, 1)
    mean, std = ref.mean(), ref.std(correction=0)
    y = (y - mean) / (std if std > 0 else 1.0)
    (x_tr, y_tr), (x_te, y_te) = _split(n, cfg.test_size, x, y)
    return Dataset(x_tr, y_tr), Dataset(x_te, y_te)


def _mixture(cfg: RunConfig) -> tuple[Dataset, Dataset]:
    """x = μ_c + ξ, ξ ~ N(0, I_d), |μ_c| = MIXTURE_SEPARATION, labels balanced and shuffled."""
    d, c = cfg.input_dim, cfg.classes
    gen = torch.Generator().manual_seed(cfg.data_seed)
    means = torch.randn(c, d, generator=gen, dtype=torch.float64)  # (C, d)
    means = MIXTURE_SEPARATION * means / means.norm(dim=1, keepdim=True)

    def draw(n: int) -> Dataset:
        labels = (torch.arange(n) % c)[torch.randperm(n, generator=gen)]  # (n,) exactly balanced
        x = means[labels] + torch.randn(n, d, generator=gen, dtype=torch.float64)  # (n, d)
        return _classification(normalise_inputs(x), labels, c)

    return draw(cfg.train_size), draw(cfg.test_size)


# --- digits (scikit-learn's bundled 8×8 images) --------------------------------------------------------

DIGITS_ROWS, DIGITS_DIM = 1797, 64


def _digits_file() -> str:
    """Path of digits.csv.gz inside the installed scikit-learn (found without importing it)."""
    import importlib.util
    spec = importlib.util.find_spec("sklearn")
    path = "" if spec is None or not spec.submodule_search_locations else os.path.join(
        list(spec.submodule_search_locations)[0], "datasets", "data", "digits.csv.gz")
    if not os.path.isfile(path):
        raise DataError("task=digits reads the 8x8 digits that ship inside scikit-learn, which is not installed "
                        "here; pip install scikit-learn (no download of the data is needed)")
    return path


def _digits(cfg: RunConfig) -> tuple[Dataset, Dataset]:
    """The 1,797 8×8 digits (pixels 0..16, d = 64, 10 classes) in a fixed order shuffled by cfg.data_seed:
    train = the first train_size, test = the next test_size. Each pixel is centred and scaled with its mean
    and std over all 1,797 images (inputs only, the same for every split; a constant pixel is only centred),
    then rows are normalised to |x|²/d = 1."""
    if cfg.train_size + cfg.test_size > DIGITS_ROWS:
        raise DataError(f"the digits set has {DIGITS_ROWS} images but train_size + test_size = "
                        f"{cfg.train_size} + {cfg.test_size}; lower --train-size or --test-size")
    table = np.loadtxt(_digits_file(), delimiter=",", dtype=np.float64)  # (1797, 65): pixels, label
    if table.shape != (DIGITS_ROWS, DIGITS_DIM + 1):
        raise DataError(f"{_digits_file()} has shape {table.shape}, not ({DIGITS_ROWS}, {DIGITS_DIM + 1}); "
                        "reinstall scikit-learn")
    pixels = torch.from_numpy(table[:, :-1])
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    std = pixels.std(dim=0, correction=0)
    pixels = (pixels - pixels.mean(dim=0)) / torch.where(std > 0, std, torch.ones_like(std))
    order = torch.randperm(DIGITS_ROWS, generator=torch.Generator().manual_seed(cfg.data_seed))
    (x_tr, l_tr), (x_te, l_te) = _split(cfg.train_size, cfg.test_size, pixels[order], labels[order])
    return (_classification(normalise_inputs(x_tr), l_tr, 10),
            _classification(normalise_inputs(x_te), l_te, 10) if len(x_te) else None)


# --- CIFAR-10 (binary version) -----------------------------------------------------------------------

def _cifar_read(path: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """First `count` records of one binary batch -> labels (m,) uint8, pixels (m, 3072) uint8."""
    size = os.path.getsize(path)
    if size == 0 or size % CIFAR_RECORD:
        raise DataError(f"{path} is truncated or not a CIFAR-10 binary batch (size {size} bytes is not a "
                        f"multiple of {CIFAR_RECORD}); re-extract cifar-10-binary.tar.gz")
    m = min(count, size // CIFAR_RECORD)
    rec = np.fromfile(path, dtype=np.uint8, count=m * CIFAR_RECORD).reshape(m, CIFAR_RECORD)
    if m and rec[:, 0].max() > 9:
        raise DataError(f"{path} has label byte {int(rec[:, 0].max())} > 9; it is not a CIFAR-10 binary "
                        f"batch (CIFAR-100 binaries use a different layout)")
    return rec[:, 0], rec[:, 1:]


def _cifar10(cfg: RunConfig) -> tuple[Dataset, Dataset | None]:
    """First train_size / test_size records; per-channel standardisation with train statistics, flattened
    channel-major to d = 3072 (R, G, B planes), rows normalised; 10 classes."""
    root = os.path.expanduser(cfg.data_dir)
    if not os.path.isdir(root):
        raise DataError(f"CIFAR-10 folder {root!r} does not exist; {_CIFAR_HELP}")
    if not os.path.exists(os.path.join(root, CIFAR_TRAIN_FILES[0])) and \
            os.path.isdir(os.path.join(root, "cifar-10-batches-bin")):
        root = os.path.join(root, "cifar-10-batches-bin")  # the folder that holds the extracted archive
    missing = [f for f in CIFAR_TRAIN_FILES if not os.path.isfile(os.path.join(root, f))]
    parts, have = [], 0
    for name in CIFAR_TRAIN_FILES:  # in order, so "the first train_size records" means the same everywhere
        if have >= cfg.train_size:
            break
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            hint = (" (found data_batch_1 without .bin: that is the Python/pickle version, which is not read)"
                    if os.path.exists(os.path.join(root, "data_batch_1")) else "")
            raise DataError(f"train_size={cfg.train_size} needs {name} in {root!r}, which is missing "
                            f"(missing: {', '.join(missing)}){hint}; {_CIFAR_HELP}, or lower --train-size "
                            f"to {have}")
        parts.append(_cifar_read(path, cfg.train_size - have))
        have += len(parts[-1][0])
    if have < cfg.train_size:
        raise DataError(f"train_size={cfg.train_size} but the CIFAR-10 training batches in {root!r} hold only "
                        f"{have} records; lower --train-size")
    labels = torch.from_numpy(np.concatenate([p[0] for p in parts]).astype(np.int64))
    pixels = torch.from_numpy(np.concatenate([p[1] for p in parts])).to(torch.float64)
    pixels = pixels.reshape(-1, 3, 1024)  # (N, channel, 32·32)
    mean = pixels.mean(dim=(0, 2), keepdim=True)  # (1, 3, 1)
    std = pixels.std(dim=(0, 2), keepdim=True, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel (tiny sets) stays centred
    # in place: the full training set is 1.2 GB in float64
    train = _classification(normalise_inputs(pixels.sub_(mean).div_(std).reshape(-1, 3072)), labels, 10)
    if cfg.test_size == 0:
        return train, None
    path = os.path.join(root, CIFAR_TEST_FILE)
    if not os.path.isfile(path):
        raise DataError(f"test_size={cfg.test_size} needs {CIFAR_TEST_FILE} in {root!r}, which is missing; "
                        f"{_CIFAR_HELP}, or pass --test-size 0")
    t_labels, t_pixels = _cifar_read(path, cfg.test_size)
    if len(t_labels) < cfg.test_size:
        raise DataError(f"test_size={cfg.test_size} but {path} holds only {len(t_labels)} records; "
                        f"lower --test-size")
    t_pixels = torch.from_numpy(t_pixels).to(torch.float64).reshape(-1, 3, 1024)  # (N_test, 3, 1024)
    test = _classification(normalise_inputs(t_pixels.sub_(mean).div_(std).reshape(-1, 3072)),
                           torch.from_numpy(t_labels.astype(np.int64)), 10)
    return train, test


# --- user files ------------------------------------------------------------------------------------

def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a .npz archive; save the arrays with np.savez(path, x=x, y=y)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"x", "y"} <= keys:
                raise DataError(f"{path} must hold arrays named 'x' (N, d) and 'y' (N,) or (N, C); found "
                                f"{', '.join(sorted(keys)) or 'no arrays'}")
            return z["x"], z["y"]
    except DataError:
        raise
    except Exception as e:  # bad zip, object arrays (pickle refused), ...
        raise DataError(f"could not read {path} as .npz without pickle ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0]}); save plain numeric arrays "
                        f"with np.savez") from None


def _arrow_numeric(col, name: str, path: str) -> np.ndarray:
    """A pyarrow column (scalar or equal-length lists) -> numpy (N,) or (N, k)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    if col.null_count:
        raise DataError(f"{path}: column {name!r} has {col.null_count} missing values; fill or drop them")
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            raise DataError(f"{path}: list column {name!r} has rows of different lengths; every row must "
                            f"have the same length")
        values = _arrow_numeric(col.flatten(), name, path)
        return values.reshape(len(col), int(lengths[0]) if len(lengths) else 0)
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise DataError(f"{path}: column {name!r} has non-numeric type {t}; convert it to numbers or drop it")
    return col.to_numpy(zero_copy_only=False)


def _read_parquet(path: str) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(path)
    except Exception as e:
        raise DataError(f"could not read {path} as Parquet ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0]}); check the file") from None
    names = table.column_names
    if "x" in names and "y" in names and not _is_scalar(table.schema.field("x").type):
        return (_arrow_numeric(table.column("x"), "x", path), _arrow_numeric(table.column("y"), "y", path))
    ys = sorted((n for n in names if re.fullmatch(r"y\d+", n)), key=lambda n: int(n[1:]))
    if "y" in names and ys:
        raise DataError(f"{path} has both a 'y' column and {', '.join(ys)}; keep one target layout")
    if ys and ys != [f"y{i}" for i in range(len(ys))]:
        raise DataError(f"{path}: target columns must be y0..y{len(ys) - 1} without gaps; found {', '.join(ys)}")
    targets = ["y"] if "y" in names else ys
    features = [n for n in names if n not in targets]
    lists = [n for n in names if not _is_scalar(table.schema.field(n).type)]
    if lists:
        raise DataError(f"{path}: list column(s) {', '.join(lists)} found; use list columns named exactly "
                        f"'x' and 'y', or scalar feature columns only")
    if not targets or not features:
        raise DataError(f"{path} needs list columns 'x' and 'y', or numeric feature columns plus a target "
                        f"column 'y' (or y0, y1, ...); found columns {', '.join(names)}")
    x = np.stack([_arrow_numeric(table.column(n), n, path) for n in features], axis=1)
    y = [_arrow_numeric(table.column(n), n, path) for n in targets]
    return x, (y[0] if targets == ["y"] else np.stack(y, axis=1).astype(np.float64))


def _is_scalar(t) -> bool:
    import pyarrow as pa
    return not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _from_file(cfg: RunConfig, path: str) -> tuple[Dataset, Dataset | None]:
    """x (N, d), y (N,) integer labels -> classification; any other y -> float regression targets."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise DataError(f"data file {path!r} does not exist or is not a file; check the path in "
                        f"--task file:PATH")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npz", ".parquet"):
        raise DataError(f"data file {path!r} has unsupported extension {ext or '(none)'!r}; use .npz "
                        f"(arrays x, y) or .parquet")
    x, y = _read_npz(path) if ext == ".npz" else _read_parquet(path)
    for name, a in (("x", x), ("y", y)):
        if a.dtype.kind not in "biuf":
            raise DataError(f"{path}: {name} has non-numeric dtype {a.dtype}; store numbers")
    if x.ndim != 2 or y.ndim not in (1, 2):
        raise DataError(f"{path}: x must be (N, d) and y (N,) or (N, C); got {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{path}: x has {len(x)} rows but y has {len(y)}; they must match")
    if not np.isfinite(x).all() or not np.isfinite(y).all():
        raise DataError(f"{path}: {'x' if not np.isfinite(x).all() else 'y'} contains NaN or inf; "
                        f"clean the data first")
    if len(x) < cfg.train_size:
        raise DataError(f"{path} has {len(x)} rows but train_size={cfg.train_size}; lower --train-size")
    n = cfg.train_size
    m = cfg.test_size if cfg.test_size > 0 and len(x) >= n + cfg.test_size else 0  # rows for test
    try:
        x_t = normalise_inputs(torch.from_numpy(np.array(x[:n + m], dtype=np.float64)))  # (n + m, d)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    if y.ndim == 1 and y.dtype.kind in "biu":
        if y.min() < 0:
            raise DataError(f"{path}: integer labels must be >= 0; found {int(y.min())}")
        classes = int(y.max()) + 1
        if classes < 2:
            raise DataError(f"{path}: integer labels y hold a single class; classification needs at least 2")
        y_t = torch.from_numpy(np.array(y[:n + m], dtype=np.int64))
        (x_tr, l_tr), (x_te, l_te) = _split(n, m, x_t, y_t)
        train, test = _classification(x_tr, l_tr, classes), _classification(x_te, l_te, classes)
    else:
        y_t = torch.from_numpy(np.array(y[:n + m], dtype=np.float64)).reshape(len(x_t), -1)
        (x_tr, y_tr), (x_te, y_te) = _split(n, m, x_t, y_t)
        train, test = Dataset(x_tr, y_tr), Dataset(x_te, y_te)
    return train, (test if m > 0 else None)
