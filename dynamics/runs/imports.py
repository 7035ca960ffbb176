"""User logs -> the run format: `import_file(FILE, OUT)` and `python -m dynamics import FILE --out DIR`.

Formats (detected from the bytes first, the file name second):
  run-zip   a zipped run directory of ours: run.json, metrics.parquet [, kernels.parquet, neurons.parquet],
            at the top of the zip or inside one folder;
  parquet   our metrics.parquet (step, layer, metric, value[, stderr]), alone or with a run.json beside it;
  csv       a long CSV with columns step, layer, metric, value [, stderr];
  wandb     a W&B history export (CSV or Parquet): one row per `_step`, one column per logged key, or a W&B
            chart "Export CSV" (`Step`, `<run> - <key>`); other step columns by `step_column`
            (dynamics.runs.wandb);
  tfevents  a TensorBoard event file (dynamics.runs.tfevents_fast reads it in chunks; no TensorFlow needed), a
            log folder of them or a zip of one (merged: dynamics.runs.tbfolder). Recognised by content too.
A config comes from --config JSON, else a sidecar FILE.json (e.g. log.csv.json) or FILE-without-suffix.json,
else run.json beside our Parquet; it may be a bare config object or a whole run.json. Without one, the config
is {"depth": largest layer index} (the pages need config.depth).

Naming rule (TensorBoard tags and W&B columns): `layer_<ℓ>/<metric>` (also `layer<ℓ>/…`, `layer-<ℓ>/…`) and
`<metric>/<ℓ>` (also `<metric>/layer_<ℓ>`) are the per-layer metric <metric> at layer ℓ; the whole name must
match, so `train/h_sq/3` does not. Every other name is a network scalar at layer −1 under its own name
(`loss`, `train/acc`). Use the names of dynamics.metrics (h_sq, g_sq, …) to get the pages' captions.
W&B columns starting with `_` (`_runtime`, `_timestamp`) and wholly non-numeric columns are skipped; empty
cells mean "not logged at that step". In event files, a (tag, step) logged twice keeps the later value (a
resumed run); everything that is not a scalar is skipped. Every skip is listed in run.json `skipped`.

The readers (one per format, bytes -> frames, each bounded by Limits) and the naming rule live in
dynamics.runs.formats; this module sniffs, assembles, checks and writes the run, and holds the CLI.

Safety: limits (class Limits) are checked before parsing; zip entries are read into memory by name (no
extraction, no links, no absolute or `..` paths, only the four run files); nothing is unpickled or evaluated.
The run is written into a hidden temporary sibling folder and renamed at the end, so a rejected file leaves
nothing behind. Every rejection is a RunImportError whose message is one line naming the problem.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import store
from .store import KERNELS, LAYER, METRIC, METRICS, NEURONS, RUN_JSON, STEP
from .import_bounds import MB, Limits
from .import_checks import RunImportError, check_config, check_grid, check_table
from .import_checks import fail as _fail, line as _line, row as _row
from . import tbfolder, wandb
from .formats import _Parsed, _csv, _detect, _json, _long, _parquet, _tfevents, _wide, _zip, split_name

__all__ = ["RunImportError", "Limits", "Imported", "import_file", "split_name", "register", "FORMATS"]

FORMATS = ("run-zip", "parquet", "csv", "wandb", "tfevents")


@dataclass
class Imported:
    run_dir: Path
    meta: dict[str, Any] = field(repr=False)

    @property
    def summary(self) -> dict[str, Any]:
        return self.meta["summary"]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return self.meta["skipped"]


def _sidecar(path: Path, config: Any, fmt: str, limits: Limits) -> tuple[dict | None, str | None]:
    if isinstance(config, dict):
        return config, "given"
    candidates = [Path(config)] if config else [Path(f"{path}.json"), path.with_suffix(".json")]
    if not config and fmt == "parquet":
        candidates.append(path.with_name(RUN_JSON))
    for c in candidates:
        if c.is_file() and c != path:
            if c.stat().st_size > limits.max_bytes // 100:
                raise _fail(f"config file {c.name} too large ({c.stat().st_size} bytes)")
            return _json(c.read_bytes(), c.name), c.name
        if config:
            raise _fail(f"config file {c} not found")
    return None, None


def import_file(path: str | Path, out: str | Path, *, name: str | None = None, config: Any = None,
                limits: Limits = Limits(), source_name: str | None = None,
                step_column: str | None = None) -> Imported:
    """Read FILE (format detected), validate it, and write OUT/NAME as a complete run of kind `imported`.

    config: a dict, or the path of a JSON file (a config object or a whole run.json); default: a sidecar.
    source_name: the file name to record and detect by (the upload page's original name). A directory is a
    TensorBoard log folder (dynamics.runs.tbfolder). step_column: the column of a wide table (W&B history,
    e.g. `trainer/global_step`) or long table that holds the step; default `_step`, `Step` or `step`
    (dynamics.runs.wandb). Raises RunImportError (one line) and leaves nothing under OUT when the file is
    rejected.
    """
    path = Path(path)
    label = source_name or path.name
    if path.is_dir():  # a TensorBoard log folder: all its event files, merged (dynamics.runs.tbfolder)
        if step_column is not None:
            raise _fail(f"--step-column applies to CSV and Parquet tables; {label} is a TensorBoard log folder "
                        f"(its events carry their own steps)")
        blobs, skipped = tbfolder.folder_events(path, limits.max_bytes)
        return _events_run(blobs, skipped, path, config, limits, out, name or _folder_name(path.resolve()))
    try:
        size = path.stat().st_size
    except OSError as e:
        raise _fail(f"cannot read {path}: {e.strerror or e}") from None
    if size > limits.max_bytes:
        raise _fail(f"{label} is too large: {size / MB:.1f} MB (limit {limits.max_bytes / MB:.0f} MB)")
    if _head_is_events(path, label):  # an event file is read in chunks, never whole (dynamics.runs.tfevents_fast)
        if step_column is not None:
            raise _fail(f"--step-column applies to CSV and Parquet tables; {label} is tfevents (it carries its "
                        f"own steps)")
        p = _Parsed("tfevents", {})
        _tfevents([(label, path)], p, limits)
        name = name or (_folder_name(path.resolve().parent) if source_name is None and
                        tbfolder.is_event_name(label) else None)
        return _finish(p, path, config, limits, out, name, label, tbfolder.digest([path]))
    data = path.read_bytes()
    fmt = _detect(label, data)
    if step_column is not None and fmt not in ("csv", "parquet"):
        raise _fail(f"--step-column applies to CSV and Parquet tables; {label} is {fmt} (it carries its own "
                    f"steps)")
    if fmt == "tb-zip":
        blobs, skipped = tbfolder.zip_events(data, limits.max_bytes, limits.max_unzipped_bytes)
        return _events_run(blobs, skipped, path, config, limits, out, name or _default_name(label), label)
    p = _Parsed(fmt, {})
    if fmt == "run-zip":
        _zip(data, p, limits)
    else:  # (event files took the chunked path above)
        df = _parquet(data, limits, label) if fmt == "parquet" else _csv(data, limits)
        where = _row if fmt == "parquet" else _line
        df, step = wandb.shape(df, p, step_column)
        if step is not None:
            _wide(df, p, limits, where, step)
        else:
            _long(df, p, where)
    return _finish(p, path, config, limits, out, name, label, tbfolder.digest([data]))


def _finish(p: _Parsed, path: Path, config, limits: Limits, out, name, label, digest) -> Imported:
    """Config (given, sidecar or run.json), table checks, then the atomic write."""
    cfg, cfg_source = _sidecar(path, config, p.fmt, limits)
    if cfg is not None and isinstance(cfg.get("config"), dict):  # a whole run.json
        p.meta, cfg = {**cfg, **p.meta}, cfg["config"]
    tables = {f: check_table(df, f, limits.max_layers, where) for f, (df, where) in p.frames.items()}
    check_grid(tables[METRICS], limits.max_steps, limits.max_grid)
    if (cfg := cfg if cfg is not None else p.meta.get("config")) is not None:
        cfg = check_config(cfg, int(tables[METRICS].column(LAYER).to_numpy().max()), limits.max_layers)
    return _write(p, tables, cfg, cfg_source, out, name, label, digest)


def _events_run(blobs, skipped, path: Path, config, limits: Limits, out, name: str, label: str | None = None
                ) -> Imported:
    """A folder's (or zipped folder's) event files -> one run, as import_file does for one file."""
    p = _Parsed("tfevents", {}, skipped=list(skipped))
    _tfevents(blobs, p, limits)
    cfg, cfg_source = _sidecar(path, config, p.fmt, limits) if config is not None or not path.is_dir() else (None, None)
    if cfg is not None and isinstance(cfg.get("config"), dict):
        p.meta, cfg = {**cfg, **p.meta}, cfg["config"]
    tables = {f: check_table(df, f, limits.max_layers, where) for f, (df, where) in p.frames.items()}
    return _write(p, tables, cfg, cfg_source, out, name, label or f"{path.name}/", tbfolder.digest([b for _, b in blobs]))


def _head_is_events(path: Path, label: str) -> bool:
    """The format check of _detect on the first bytes only, true when it says tfevents."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    try:
        return _detect(label, head) == "tfevents"
    except RunImportError:
        return False


def _folder_name(folder: Path) -> str:
    """The default run name of a log folder: its own name (`runs/exp1` -> exp1)."""
    return _default_name(folder.name) if folder.name else "imported"


def _summary(t: pa.Table) -> dict[str, Any]:
    """What was understood: counts and ranges of steps and layers, per-layer metrics and network scalars."""
    df = t.select([STEP, LAYER, METRIC]).to_pandas()
    df[METRIC] = df[METRIC].astype(str)
    steps, layers = np.sort(df[STEP].unique()), np.sort(df[LAYER].unique())
    net = df[LAYER] == store.NETWORK_LAYER
    return {"rows": t.num_rows, "steps": len(steps), "step_range": [int(steps[0]), int(steps[-1])],
            "layers": int((layers >= 0).sum()), "layer_range": [int(layers[0]), int(layers[-1])],
            "per_layer_metrics": sorted(df.loc[~net, METRIC].unique()),
            "network_scalars": sorted(df.loc[net, METRIC].unique())}


def _write(p: _Parsed, tables: dict[str, pa.Table], cfg: Any, cfg_source: str | None, out, name, label,
           digest: tuple[int, str]) -> Imported:
    summary = _summary(tables[METRICS])
    top = summary["layer_range"][1]
    if cfg is None:
        cfg, cfg_source = {"depth": max(top, 1)}, "inferred"
        p.skip("config", f"none given: depth = {max(top, 1)} inferred from the largest layer index")
    if not isinstance(cfg, dict):
        raise _fail("the config must be a JSON object")
    depth = cfg.get("depth", max(top, 1))
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1 or depth < top:
        raise _fail(f"config depth {depth!r} must be a positive integer at least the largest layer index {top}")
    cfg = {**cfg, "depth": depth}
    run_id = store.check_run_id(name or _default_name(label))
    root = store.check_writable(Path(out))
    final = root / run_id
    if final.exists():
        raise _fail(f"run {run_id} already exists in {root}; pass --name NEW")
    orig = {k: p.meta[k] for k in ("run_id", "kind", "status", "created") if k in p.meta}
    meta = {**{k: v for k, v in p.meta.items() if k not in ("path", "error")},
            "schema_version": store.SCHEMA_VERSION, "run_id": run_id, "kind": "imported",
            "status": orig.get("status") if orig.get("status") in ("complete", "diverged", "failed") else "complete",
            "config": cfg, "config_source": cfg_source,
            "source": {"file": label, "format": p.fmt, "bytes": digest[0], "sha256": digest[1],
                       **({"original": orig} if orig else {})},
            "skipped": p.skipped, "summary": summary,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    tmp = Path(tempfile.mkdtemp(prefix=f".import-{run_id[:40]}-", dir=root))
    try:
        for f, schema in ((METRICS, None), (KERNELS, store.KERNELS_SCHEMA), (NEURONS, store.NEURONS_SCHEMA)):
            store.write_parquet_atomic(tmp / f, tables[f] if f in tables else schema.empty_table())
        store.write_json_atomic(tmp / RUN_JSON, meta)
        tmp.rename(final)
    except OSError as e:
        raise _fail(f"cannot write the run to {final}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Imported(final, meta)


def _default_name(label: str) -> str:
    stem = re.sub(r"\.(zip|parquet|csv|txt)$", "", label, flags=re.I)
    stem = re.sub(r"[^A-Za-z0-9._=+-]+", "-", stem).lstrip("._=+-")[:200]
    return stem or "imported"


# --- the CLI ---------------------------------------------------------------------------------------------
def register(sub) -> None:
    """Add `import FILE --out DIR [--name N] [--config JSON] [--max-mb MB]` to the CLI's subparsers."""
    c = sub.add_parser("import", help="turn your own logs (zip, Parquet, CSV, W&B, TensorBoard) into a run",
                       description="Import a zipped run, our metrics.parquet, a long CSV (step, layer, metric, "
                                   "value), a W&B history export or a TensorBoard event file as a run of kind "
                                   "'imported' under OUT. Naming rule for tags/columns: see README.")
    c.add_argument("file", help="the file (or TensorBoard log folder) to import")
    c.add_argument("--out", required=True, help="folder that receives the run directory")
    c.add_argument("--name", help="run directory name (default: from the file name)")
    c.add_argument("--config", help="JSON file with the config (or a whole run.json); default: FILE.json")
    c.add_argument("--step-column", help="column holding the step in a CSV/Parquet table, e.g. "
                                         "trainer/global_step (default: _step, Step or step)")
    c.add_argument("--max-mb", type=float, default=Limits.max_bytes / MB, help="file size limit (default: 200)")
    c.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    res = import_file(args.file, args.out, name=args.name, config=args.config, step_column=args.step_column,
                      limits=Limits(max_bytes=int(args.max_mb * MB)))
    s = res.summary
    print(f"imported: {res.run_dir}  ({res.meta['source']['format']}; per-layer metrics "
          f"{', '.join(s['per_layer_metrics']) or 'none'} on {s['layers']} layers; network scalars "
          f"{', '.join(s['network_scalars']) or 'none'}; {s['steps']} steps {s['step_range'][0]}..{s['step_range'][1]})")
    for item in res.skipped:
        print(f"  skipped {item['what']}: {item['why']}")
    return 0
