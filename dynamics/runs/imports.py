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
            log folder of them or a zip of one (merged: dynamics.runs.tbfolder). Recognised by content too;
  mlflow    MLflow's file store: an `mlruns/` folder, one experiment or one run folder in it, or a zip of any
            of these (dynamics.runs.mlflow); MLflow's SQLite store, `mlflow.db` (dynamics.runs.mlflow_sql);
            each run becomes a run;
  wandb-offline  W&B offline runs: a `wandb/` folder, an `offline-run-*` folder or its `run-*.wandb` file, read
            by the wandb package (dynamics.runs.wandb_offline);
  trackio   Trackio's local database, `<project>.db` (dynamics.runs.trackio); each run becomes a run.
A tracker folder or database may hold several runs: `import_file` returns the first, the others in
`Imported.others` and those that could not be read, one line each, in `Imported.failed`. Run names come from
the tracker (`<experiment>-<run name>`), or NAME / NAME-<run> with --name. The user guide: docs/importing.md.
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

The readers (one per format, each bounded by Limits) and the naming rule live in dynamics.runs.formats, the
tables' chunked readers in dynamics.runs.tables; all hand over compact columns that dynamics.runs.scalars
checks and sorts, so memory stays bounded (benchmarks/import_scale.py). This module sniffs, assembles and writes
the runs, and holds the CLI.

Safety: limits (class Limits) are checked before parsing; zip entries are read into memory by name (no
extraction, no links, no absolute or `..` paths, only the four run files); nothing is unpickled or evaluated.
The run is written into a hidden temporary sibling folder and renamed at the end, so a rejected file leaves
nothing behind. Every rejection is a RunImportError whose message is one line naming the problem.
"""
from __future__ import annotations

import re
import sys
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from . import store
from .store import KERNELS, METRICS, NEURONS, RUN_JSON
from .import_bounds import MB, Limits
from .import_checks import RunImportError, check_config, check_table
from .import_checks import fail as _fail
from . import mlflow, mlflow_sql, tbfolder, trackio, wandb_offline
from .formats import _Parsed, _detect, _json, _table, _tfevents, _zip, split_name
from .scalars import to_table

__all__ = ["RunImportError", "Limits", "Imported", "import_file", "split_name", "register", "FORMATS"]

FORMATS = ("run-zip", "parquet", "csv", "wandb", "tfevents", "mlflow", "wandb-offline", "trackio")
_TRACKERS = (mlflow, mlflow_sql, wandb_offline, trackio)  # in this order: both SQL stores are SQLite


@dataclass
class Imported:
    run_dir: Path
    meta: dict[str, Any] = field(repr=False)
    others: list["Imported"] = field(default_factory=list, repr=False)  # more runs of one tracker source
    failed: list[dict[str, str]] = field(default_factory=list, repr=False)  # its runs not imported: what, why

    @property
    def summary(self) -> dict[str, Any]:
        return self.meta["summary"]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return self.meta["skipped"]

    @property
    def runs(self) -> list["Imported"]:
        return [self, *self.others]


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

    config: a dict, or the path of a JSON file (a config object or a whole run.json); default: a sidecar
    (a tracker's runs: their params). source_name: the file name to record and detect by (the upload page's
    original name). A directory is a tracker folder (MLflow, W&B) or a TensorBoard log folder
    (dynamics.runs.tbfolder). step_column: the column of a wide table (W&B history, e.g.
    `trainer/global_step`) or long table that holds the step; default `_step`, `Step` or `step`
    (dynamics.runs.wandb). Raises RunImportError (one line) and leaves nothing under OUT when the file is
    rejected; of a tracker's several runs, those that import are kept (Imported.others) and the others listed
    (Imported.failed), and it raises only when none imports.
    """
    path = Path(path)
    label = source_name or path.name
    for tracker in _TRACKERS:
        if (found := tracker.runs(path, label, limits)) is not None:
            if step_column is not None:
                raise _fail(f"--step-column applies to CSV and Parquet tables; {label} is {tracker.FORMAT} (it "
                            f"carries its own steps)")
            return _many(found, tracker.FORMAT, path, config, limits, out, name, label)
    if path.is_dir():  # a TensorBoard log folder: all its event files, merged (dynamics.runs.tbfolder)
        if step_column is not None:
            raise _fail(f"--step-column applies to CSV and Parquet tables; {label} is a TensorBoard log folder "
                        f"(its events carry their own steps)")
        blobs, skipped = tbfolder.folder_events(path, limits.max_bytes)
        p = _Parsed("tfevents", skipped=list(skipped))
        _tfevents(blobs, p, limits)
        return _finish(p, path, config, limits, out, name or _folder_name(path.resolve()), f"{path.name}/",
                       tbfolder.digest([b for _, b in blobs]), sidecar=config is not None)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise _fail(f"cannot read {path}: {e.strerror or e}") from None
    if size > limits.max_bytes:
        raise _fail(f"{label} is too large: {size / MB:.1f} MB (limit {limits.max_bytes / MB:.0f} MB)")
    fmt = _detect(label, _head(path), path)
    if step_column is not None and fmt not in ("csv", "parquet"):
        raise _fail(f"--step-column applies to CSV and Parquet tables; {label} is {fmt} (it carries its own "
                    f"steps)")
    digest = tbfolder.digest([path])
    if fmt == "tb-zip":
        blobs, skipped = tbfolder.zip_events(path, limits.max_bytes, limits.max_unzipped_bytes)
        p = _Parsed("tfevents", skipped=list(skipped))
        _tfevents(blobs, p, limits)
        return _finish(p, path, config, limits, out, name or _default_name(label), label, digest)
    p = _Parsed(fmt)
    if fmt == "tfevents":  # an event file is read in chunks, never whole (dynamics.runs.tfevents_fast)
        _tfevents([(label, path)], p, limits)
        name = name or (_folder_name(path.resolve().parent) if source_name is None and
                        tbfolder.is_event_name(label) else None)
    elif fmt == "run-zip":
        _zip(path, p, limits)
    else:  # a table, read in chunks of rows (dynamics.runs.tables)
        _table(path, fmt, p, limits, label, step_column)
    return _finish(p, path, config, limits, out, name, label, digest)


def _many(found, fmt: str, path: Path, config, limits: Limits, out, name, label) -> Imported:
    """A tracker's runs, read and written one at a time; a run that cannot be read is one line in `failed`."""
    if len(found) > limits.max_runs:
        raise _fail(f"{label} holds {len(found)} runs (limit {limits.max_runs}); import one experiment or "
                    f"project at a time")
    if not found:
        raise _fail(f"{label} holds no {fmt} runs")
    done: list[Imported] = []
    failed: list[dict[str, str]] = []
    seen: set[str] = set()
    digest = tbfolder.digest([path]) if path.is_file() else (0, "")
    for f in found:
        try:
            p = f.read()
            p.meta.setdefault("tracker", {}).setdefault("label", f.label)
            run_name = _run_name(p.name or f.name, name, len(found), seen)
            given = config is not None
            done.append(_finish(p, path, config if given else p.meta.pop("config", None), limits, out, run_name,
                                f"{label}: {p.meta['tracker']['label']}" if len(found) > 1 else label, digest,
                                sidecar=given, cfg_source=None if given else f"{fmt} params"))
        except RunImportError as e:
            failed.append({"what": f.label, "why": str(e)})
    if not done:
        first = failed[0]
        more = f" (and {len(failed) - 1} more run(s))" if len(failed) > 1 else ""
        raise _fail(f"{first['what']}: {first['why']}{more}" if len(found) > 1 else first["why"])
    return Imported(done[0].run_dir, done[0].meta, done[1:], failed)


def _run_name(base: str, given: str | None, runs: int, seen: set[str]) -> str:
    """A run's name, distinct within one import: the tracker's (`<experiment>-<run>`), or NAME (one run) /
    NAME-<run>."""
    if given and runs == 1:
        base = given
    else:  # a given name that the tracker's names already start with (the upload page's `<project>`) once
        base = _default_name(f"{given}-{base}" if given and not base.startswith(f"{given}-") else base)
    cand, k = base, 1
    while cand in seen:
        k += 1
        cand = f"{base}-{k}"
    seen.add(cand)
    return cand


def _finish(p: _Parsed, path: Path, config, limits: Limits, out, name, label, digest, sidecar: bool = True,
            cfg_source: str | None = None) -> Imported:
    """Config (given, sidecar or run.json), the metrics checked and sorted (dynamics.runs.scalars), kernels
    and neurons checked, then the atomic write."""
    if sidecar:
        cfg, cfg_source = _sidecar(path, config, p.fmt, limits)
    else:
        cfg = config
    if cfg is not None and isinstance(cfg.get("config"), dict):  # a whole run.json
        p.meta, cfg = {**cfg, **p.meta}, cfg["config"]
    table, summary = to_table(p.scalars, limits, p.later_wins, p.skip)
    p.scalars = None
    tables = {METRICS: table, **{f: check_table(df, f, limits.max_layers, where)
                                 for f, (df, where) in p.frames.items()}}
    if (cfg := cfg if cfg is not None else p.meta.get("config")) is not None:
        cfg = check_config(cfg, summary["layer_range"][1], limits.max_layers)
    return _write(p, tables, summary, cfg, cfg_source, out, name, label, digest)


def _head(path: Path, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as e:
        raise _fail(f"cannot read {path.name}: {e.strerror or e}") from None


def _folder_name(folder: Path) -> str:
    """The default run name of a log folder: its own name (`runs/exp1` -> exp1)."""
    return _default_name(folder.name) if folder.name else "imported"


def _write(p: _Parsed, tables: dict[str, pa.Table], summary: dict, cfg: Any, cfg_source: str | None, out, name,
           label, digest: tuple[int, str]) -> Imported:
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
    c = sub.add_parser("import", help="turn your own logs (zip, Parquet, CSV, W&B, TensorBoard, MLflow, Trackio) "
                                      "into runs",
                       description="Import a zipped run, our metrics.parquet, a long CSV (step, layer, metric, "
                                   "value), a W&B history export, a TensorBoard event file or log folder, an "
                                   "MLflow mlruns/ folder (or a zip of it), W&B offline runs (wandb/ or "
                                   "offline-run-*/) or a Trackio database (<project>.db) as runs of kind "
                                   "'imported' under OUT. Naming rule for keys: see docs/importing.md.")
    c.add_argument("file", help="the file or folder to import")
    c.add_argument("--out", required=True, help="folder that receives the run directories")
    c.add_argument("--name", help="run directory name (default: from the file name or the tracker's run "
                                  "names; with several runs, NAME-<run>)")
    c.add_argument("--config", help="JSON file with the config (or a whole run.json); default: FILE.json, or "
                                    "a tracker's params")
    c.add_argument("--step-column", help="column holding the step in a CSV/Parquet table, e.g. "
                                         "trainer/global_step (default: _step, Step or step)")
    c.add_argument("--max-mb", type=float, default=Limits.max_bytes / MB, help="file size limit (default: 200)")
    c.add_argument("--follow", type=float, metavar="SECONDS",
                   help="keep the run up to date while the source is still being written: re-import it whenever "
                        "its files change (checked every SECONDS; the dashboard redraws it live); Ctrl-C ends")
    c.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    if args.follow is not None and not args.follow > 0:
        raise RunImportError(f"--follow: a period in seconds above 0 (got {args.follow:g})")
    res = import_file(args.file, args.out, name=args.name, config=args.config, step_column=args.step_column,
                      limits=Limits(max_bytes=int(args.max_mb * MB)))
    for run in res.runs:
        s = run.summary
        print(f"imported: {run.run_dir}  ({run.meta['source']['format']}; per-layer metrics "
              f"{', '.join(s['per_layer_metrics'][:20]) or 'none'} on {s['layers']} layers; network scalars "
              f"{', '.join(s['network_scalars'][:20]) or 'none'}; {s['steps']} steps "
              f"{s['step_range'][0]}..{s['step_range'][1]})")
        for item in run.skipped:
            print(f"  skipped {item['what']}: {item['why']}")
    for item in res.failed:
        print(f"not imported: {item['what']}: {item['why']}")
    if args.follow is not None:
        if res.others or res.failed:
            print(f"dynamics: error: --follow watches one run; {args.file} holds several (follow one run's file or "
                  "folder)", file=sys.stderr)
            return 2
        from .follow import follow
        print(f"following {args.file} every {args.follow:g} s (Ctrl-C ends)", flush=True)
        follow(args.file, res.run_dir, lambda tmp: import_file(
            args.file, tmp, name=res.run_dir.name, config=args.config, step_column=args.step_column,
            limits=Limits(max_bytes=int(args.max_mb * MB))), args.follow,
            say=lambda m: print(m, flush=True))
        print(f"complete: {res.run_dir}")
    return 0
