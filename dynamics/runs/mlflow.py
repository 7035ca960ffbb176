"""MLflow's file store -> runs: the default `mlruns/` folder, one experiment or one run folder of it, or a zip
of any of these. No mlflow package is needed; nothing is executed, YAML is read as flat `key: value` lines.

The layout (mlflow.store.tracking.file_store): `mlruns/<experiment id>/meta.yaml` (the experiment's `name`)
and, per run, `<experiment id>/<run id>/meta.yaml` (`run_name`, `status`, `start_time`, `lifecycle_stage`),
`metrics/<key>` (one line per logged value: `<timestamp ms> <value> <step>`; files written before MLflow 1.0
have no step: step 0), `params/<key>` and `tags/<key>` (the value as the file's text). A key may hold `/`: it is
then a path below metrics/ (`metrics/layer_3/h_sq` is the key `layer_3/h_sq`), and the naming rule of
dynamics.runs.formats.split_name applies to it. Params become the config (dynamics.runs.trackers.config_from),
tags are kept in run.json; the run's name is `<experiment name>-<run name>`. A value logged again at a step
keeps the later line. Deleted runs (lifecycle_stage: deleted, or under `.trash/`) and `artifacts/` are skipped
unread. Metric files are parsed by Arrow's CSV reader (C, one pass); their total size is bounded by
Limits.max_bytes as one file's is, their values by max_rows.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from . import tbfolder
from .formats import _Parsed, split_name
from .import_bounds import MB, Limits
from .import_checks import fail, steps
from .scalars import Builder, keyed
from .trackers import Found, config_from, status, tags_from

__all__ = ["FORMAT", "runs", "MAX_FILES"]
FORMAT = "mlflow"
MAX_FILES = 200_000
_SKIP_DIRS = {"artifacts", ".trash", "models", ".git"}
_TEXT_CAP = 64 * 1024  # a param, tag or meta.yaml file


class _Tree:
    """The files of a folder or a zip, by relative POSIX path: sizes, and their bytes on demand."""

    def __init__(self, files: dict[str, int], read) -> None:
        self.files, self.read = files, read

    @classmethod
    def folder(cls, root: Path) -> "_Tree":
        files: dict[str, int] = {}
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for f in filenames:
                full = Path(dirpath) / f
                try:
                    st = full.lstat()
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    files[full.relative_to(root).as_posix()] = st.st_size
                if len(files) > MAX_FILES:
                    raise fail(f"{root.name} holds more than {MAX_FILES} files; import one experiment folder")
        return cls(files, lambda rel: (root / rel).read_bytes())

    @classmethod
    def zipped(cls, src) -> "_Tree":
        zf = tbfolder.open_zip(src)
        infos = zf.infolist()
        if len(infos) > MAX_FILES:
            raise fail(f"zip has {len(infos)} entries (limit {MAX_FILES}); zip one experiment folder")
        files, info_of = {}, {}
        for info in infos:
            if (why := tbfolder.unsafe(info)):
                raise fail(why)
            parts = [q for q in info.filename.split("/") if q]
            if info.is_dir() or not parts or parts[0] == "__MACOSX" or set(parts[:-1]) & _SKIP_DIRS:
                continue
            rel = "/".join(parts)
            files[rel], info_of[rel] = info.file_size, info
        return cls(files, lambda rel: _entry(zf, info_of[rel]))


def _entry(zf, info) -> bytes:
    with zf.open(info) as fh:
        blob = fh.read(info.file_size + 1)
    if len(blob) != info.file_size:
        raise fail(f"zip entry {info.filename} does not match its declared size; the zip is damaged")
    return blob


def _is_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    except OSError:
        return False


def _run_dirs(tree: _Tree) -> list[str]:
    """Folders holding a meta.yaml and metrics/ or params/: the runs (relative, "" for the tree itself)."""
    metas, has = set(), set()
    for f in tree.files:
        parts = f.split("/")
        if parts[-1] == "meta.yaml":
            metas.add("/".join(parts[:-1]))
        for i, q in enumerate(parts[:-1]):
            if q in ("metrics", "params"):
                has.add("/".join(parts[:i]))
    return sorted(metas & has)


def runs(path: Path, label: str, limits: Limits) -> list[Found] | None:
    """The runs of an MLflow file store at `path` (folder or zip), or None when it is not one."""
    if path.is_dir():
        if not (path / "meta.yaml").is_file() and not any((d / "meta.yaml").is_file() for d in _subdirs(path)) \
                and not any((e / "meta.yaml").is_file() for d in _subdirs(path)[:100] for e in _subdirs(d)):
            return None
        tree = _Tree.folder(path)
    elif path.is_file() and _is_zip(path):
        try:
            names = tbfolder.open_zip(path).namelist()
        except Exception:  # noqa: BLE001 (not a readable zip: the zip reader says why)
            return None
        if not any(PurePosixPath(n).name == "meta.yaml" for n in names) or \
                not any("/metrics/" in f"/{n}" for n in names):
            return None
        tree = _Tree.zipped(path)
    else:
        return None
    dirs = _run_dirs(tree)
    if not dirs:
        raise fail(f"{label} looks like an MLflow store (meta.yaml files) but holds no run folder with metrics/ "
                   f"or params/")
    found = []
    for d in dirs:
        meta = _yaml(tree, f"{d}/meta.yaml" if d else "meta.yaml")
        if meta.get("lifecycle_stage") == "deleted":
            continue
        parent = str(PurePosixPath(d).parent) if d else None
        exp = _yaml(tree, f"{parent}/meta.yaml" if parent not in (None, ".") else "meta.yaml") \
            if parent is not None and d else _outside(path)
        exp_name = exp.get("name") or meta.get("experiment_id") or "mlflow"
        run_name = meta.get("run_name") or _text(tree, f"{d}/tags/mlflow.runName" if d else "tags/mlflow.runName") \
            or meta.get("run_id") or PurePosixPath(d).name or "run"
        found.append(Found(f"{exp_name}/{run_name}", f"{exp_name}-{run_name}",
                           lambda d=d, meta=meta, exp_name=exp_name, run_name=run_name:
                           _read(tree, d, meta, exp_name, run_name, limits)))
    return found


def _outside(path: Path) -> dict[str, str]:
    """A run folder given alone: its experiment's meta.yaml, one folder up, when it is there."""
    up = path.parent / "meta.yaml" if path.is_dir() else None
    if up is None or not up.is_file() or up.stat().st_size > _TEXT_CAP:
        return {}
    return _yaml(_Tree({"meta.yaml": up.stat().st_size}, lambda rel: up.read_bytes()), "meta.yaml")


def _subdirs(p: Path) -> list[Path]:
    try:
        return [c for c in p.iterdir() if c.is_dir() and not c.is_symlink() and c.name not in _SKIP_DIRS][:10_000]
    except OSError:
        return []


def _yaml(tree: _Tree, rel: str) -> dict[str, str]:
    """A flat meta.yaml as {key: text}: `key: value` lines at the top level (nested and list lines ignored)."""
    out: dict[str, str] = {}
    for line in _text(tree, rel).splitlines():
        if not line or line[0] in " \t-#" or ":" not in line:
            continue
        k, v = line.split(":", 1)
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        out[k.strip()] = v
    return out


def _text(tree: _Tree, rel: str) -> str:
    if rel not in tree.files or tree.files[rel] > _TEXT_CAP:
        return ""
    return tree.read(rel).decode("utf-8", "replace").strip()


def _read(tree: _Tree, d: str, meta: dict, exp_name: str, run_name: str, limits: Limits) -> _Parsed:
    """One run folder -> _Parsed (Scalars, config from params/, tags, status)."""
    p = _Parsed(FORMAT)
    prefix = f"{d}/" if d else ""
    metric_files = sorted(f for f in tree.files if f.startswith(prefix + "metrics/"))
    if (total := sum(tree.files[f] for f in metric_files)) > limits.max_bytes:
        raise fail(f"the metric files are too large together: {total / MB:.1f} MB (limit "
                   f"{limits.max_bytes / MB:.0f} MB)")
    keys = [f[len(prefix + "metrics/"):] for f in metric_files]
    if not keys:
        raise fail("no metrics/ files (the run logged no metrics)")
    layer_of, metric_of, metrics = keyed(keys, split_name)
    out, rows = Builder(min(total // 20 + 1, limits.max_rows)), 0  # a line is ≥ 20 bytes: `<13-digit ms> v s`
    for k, (f, key) in enumerate(zip(metric_files, keys)):
        step, value = _metric(tree.read(f), key)
        rows += len(step)
        if rows > limits.max_rows:
            raise fail(f"too many values: more than {limits.max_rows} (limit {limits.max_rows} rows)")
        where = lambda i, key=key: f"line {i + 1} of metrics/{key}"  # noqa: E731
        step = steps(step, where)
        out.add(step, layer_of[k], metric_of[k], value)
    p.scalars = out.done(metrics)
    p.later_wins = ("(key, step)", "logged again at that step: the later line is kept")
    params = {f[len(prefix + "params/"):]: _text(tree, f) for f in sorted(tree.files)
              if f.startswith(prefix + "params/")}
    tags = {f[len(prefix + "tags/"):]: _text(tree, f) for f in sorted(tree.files) if f.startswith(prefix + "tags/")}
    p.meta = {"config": config_from(params, p), "tags": tags_from(tags),
              "tracker": {"name": "mlflow", "experiment": exp_name, "run_name": run_name,
                          "run_id": meta.get("run_id") or PurePosixPath(d).name},
              "status": status(_STATUS.get(meta.get("status", ""), meta.get("status")))}
    return p


_STATUS = {"1": "RUNNING", "2": "SCHEDULED", "3": "FINISHED", "4": "FAILED", "5": "KILLED"}


def _metric(blob: bytes, key: str) -> tuple[np.ndarray, np.ndarray]:
    """A metric file's lines `timestamp value step` (or `timestamp value`) -> (steps int64, values float64)."""
    if not blob.strip():
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    first = blob.split(b"\n", 1)[0].split()
    names = ["timestamp", "value", "step"][:max(2, min(len(first), 3))]
    types = {"timestamp": pa.float64(), "value": pa.float64(), "step": pa.int64()}
    try:
        t = pacsv.read_csv(pa.BufferReader(blob), read_options=pacsv.ReadOptions(column_names=names),
                           parse_options=pacsv.ParseOptions(delimiter=" "),
                           convert_options=pacsv.ConvertOptions(column_types={n: types[n] for n in names},
                                                                null_values=[], strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowException) as e:
        raise fail(f"metrics/{key} is not MLflow's `timestamp value step` lines ("
                   f"{str(e).splitlines()[0][:160]})") from None
    value = t.column("value").to_numpy()
    step = t.column("step").to_numpy() if "step" in names else np.zeros(len(value), np.int64)
    return step.astype(np.int64, copy=False), value.astype(np.float64, copy=False)
