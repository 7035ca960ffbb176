"""Where runs come from, cached loaders over dynamics.store, and the sidebar run picker shared by all pages.

Runs are found in the bundled examples (env var DYNAMICS_DATA_DIR, default the repo's `data/`; tests
point it at temporary runs), the user's folder, typed into the sidebar (default: env var DYNAMICS_RUNS),
and any per-session roots another page registered in `st.session_state["uploaded_roots"]` (the Upload
page; `session_roots()`). A page calls `load_runs(PAGE)` first (it draws the folder box, reports damaged runs and
stops with a how-to when there are none), then `pick_runs(PAGE, runs)`, then one loader
(`metric_catalog`, `metric_frame`) per view. Loaders are `st.cache_data` functions keyed on path and file
mtime, so a run that is still training is re-read when it flushes; they hold no widgets. Expected problems
come back as messages for the page to show (libraries raise, pages catch).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import evidence, hosting, loaders, selection
from dashboard.nav import nav
from dashboard.settings import DATA_ENV, REPO, UPLOADED_ROOTS, USER_ENV, local_upload_dir
from dashboard.state import set_url
from dynamics.figures import RUN, TAU
from dynamics.metrics import METRICS
from dynamics.runs.store import LAYER, METRIC, RUN_JSON, STEP, RunFormatError, list_runs, liveness, read_metrics

TABLE_FIELDS = ("width", "depth", "act", "param", "backward", "steps", "lr")
TRAIN_HINT = "python -m dynamics train --width 256 --depth 16 --steps 100 --out runs/"
_USER_DIR = "dashboard.user_dir"  # plain session key (not a widget's), so the folder survives page switches
_PENDING_DIR = "dashboard.pending_user_dir"  # set by code (e.g. the train form); applied before the box exists


@dataclass(frozen=True)
class Run:
    label: str                      # unique over both folders; the picker, the URL and the figures use it
    source: str                     # "bundled" | "claims" | "user" | "uploads" | "upload", "upload2", …
    path: str
    meta: dict[str, Any] = field(compare=False, hash=False)

    @property
    def config(self) -> dict[str, Any]:
        return self.meta.get("config", {})

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", "finite"))


# --- folders -------------------------------------------------------------------------------------
def data_dir() -> Path:
    """The bundled runs: $DYNAMICS_DATA_DIR, else the repo's data/ (read per call, so tests can set it).
    A URL (file://, s3://, ...) is copied once into a local read-only cache (dashboard.hosting.mirror)."""
    value = os.environ.get(DATA_ENV) or str(REPO / "data")
    return hosting.mirror(value) if "://" in value else Path(value)


def user_dir_input(page: str) -> str:
    """Sidebar box for the user's runs folder; URL ?dir=, else the session, else $DYNAMICS_RUNS."""
    key = f"{page}.user_dir"
    if hosting.hosted():  # a shared instance: no box, ?dir= ignored; only the operator's $DYNAMICS_RUNS
        set_url(dir=None)
        return os.environ.get(USER_ENV, "").strip()
    if _PENDING_DIR in st.session_state:  # a folder chosen by code: becomes the box's value on every page
        st.session_state[_USER_DIR] = st.session_state[key] = st.session_state.pop(_PENDING_DIR)
    if key not in st.session_state:
        from_url = st.query_params.get("dir")
        st.session_state[key] = from_url if from_url is not None else st.session_state.get(
            _USER_DIR, os.environ.get(USER_ENV, ""))
    folder = st.sidebar.text_input("Your runs folder", key=key, placeholder="e.g. runs/",
                                   help="A folder holding run directories, e.g. the --out of "
                                        "`python -m dynamics train`. Relative to where streamlit was started.")
    st.session_state[_USER_DIR] = folder.strip()
    set_url(dir=folder.strip() if folder.strip() != os.environ.get(USER_ENV, "") else None)
    return folder.strip()


def use_user_dir(folder: str) -> None:
    """Make `folder` the sidebar's runs folder from the next rerun on (the box cannot change mid-run)."""
    st.session_state[_PENDING_DIR] = folder


def session_roots() -> list[Path]:
    """Extra run roots registered for this session (st.session_state["uploaded_roots"]; the Upload page)."""
    return [Path(p) for p in st.session_state.get(UPLOADED_ROOTS, []) or []]


# --- cached loaders (no widgets in here) --------------------------------------------------------
def _signature(root: Path) -> tuple:
    """mtimes of every run.json under root: adding, removing or rewriting a run invalidates the scan."""
    try:
        return tuple(sorted((p.name, (p / RUN_JSON).stat().st_mtime_ns) for p in root.iterdir()
                            if (p / RUN_JSON).exists()))
    except OSError:
        return ()


@st.cache_data(max_entries=32, show_spinner=False)
def _scan(root: str, signature: tuple) -> list[dict[str, Any]]:
    return list_runs(Path(root))


def _mtime(path: str) -> int:
    return loaders.mtime(path)


def _catalog(path: str, mtime: int) -> dict[str, tuple[bool, tuple[int, ...]]]:
    return loaders.catalog(path, mtime)  # one DuckDB group-by, not a pandas read of every row


@st.cache_data(max_entries=128, show_spinner=False)
def _metric_rows(path: str, metric: str, mtime: int, steps: tuple[int, ...] | None = None) -> pd.DataFrame:
    return read_metrics(path, metrics=[metric], steps=steps)


def find_runs(roots: dict[str, Path]) -> tuple[list[Run], list[dict[str, Any]]]:
    """Readable runs under each root (labels made unique) and the damaged ones (dicts with `error`)."""
    runs, broken, seen_paths, labels = [], [], set(), set()
    for source, root in roots.items():
        root = Path(root).expanduser()
        for meta in _scan(str(root.resolve()), _signature(root)):
            if meta["path"] in seen_paths:  # the same folder typed twice
                continue
            seen_paths.add(meta["path"])
            if "error" in meta:
                broken.append(meta)
                continue
            label = str(meta["run_id"])
            if label in labels:
                label = f"{source}:{label}"
            labels.add(label)
            runs.append(Run(label=label, source=source, path=meta["path"], meta=meta))
    return runs, broken


def folders(page: str) -> dict[str, Path]:
    """The sidebar folder box, then the folders to search: {"bundled": data_dir(), "claims": the runs beside
    its claims.json, "user": the box,
    "upload", "upload2", …: session_roots()}."""
    nav()
    hosting.banner()
    if hosting.hosted():
        from dashboard.uploads import keep_fresh  # here: the importers it pulls in are only for shared instances
        keep_fresh()  # every page sweeps expired session folders on a shared instance, not only Upload
    folder = user_dir_input(page)
    try:
        roots = {"bundled": data_dir()}
        claimed = evidence.runs_folder(evidence.find_claims(roots["bundled"]))
        if claimed is not None:  # the runs the claims table links to (data/reproduce/runs)
            roots["claims"] = claimed
    except (OSError, ValueError) as e:
        st.error(f"Cannot read the bundled runs `{os.environ.get(DATA_ENV)}`: {e}")
        roots = {}
    if folder:
        if Path(folder).expanduser().is_dir():
            roots["user"] = Path(folder)
        else:
            st.sidebar.warning(f"`{folder}` is not a folder on the server; type a folder that holds runs.")
    if not hosting.hosted() and local_upload_dir().is_dir():  # a local dashboard's uploads outlive the session
        roots["uploads"] = local_upload_dir()
    for k, root in enumerate(session_roots()):
        roots[f"upload{k + 1 if k else ''}"] = root
    return roots


def load_runs(page: str) -> list[Run]:
    """Sidebar folder box + every run found; reports damaged runs; stops the page with a how-to if none."""
    roots = folders(page)
    runs, broken = find_runs(roots)
    for meta in broken:
        where = Path(meta["path"]).name if hosting.hosted() else meta["path"]  # no server paths for visitors
        st.error(f"Skipped the damaged run `{where}`: {meta['error']}. "
                 "Fix its run.json or move the directory out of the runs folder.")
    if not runs:
        st.info(f"No runs found in {' or '.join(f'`{p}`' for p in roots.values())}" +
                f". Train one with `{TRAIN_HINT}`, then type `runs/` into the sidebar box *Your runs folder* "
                f"(or start the dashboard with `{USER_ENV}=runs/`).")
        st.stop()
    selection.remember(runs)
    return runs


pick_runs = selection.pick_runs  # the sidebar picker: one selection per session (dashboard.selection)


# --- views of the metadata (pure) --------------------------------------------------------------
def run_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: id, kind, status and the config fields that tell runs apart at a glance. The status of
    a `running` run whose writer stopped (its heartbeat: dynamics.runs.store.liveness) is shown as `stale`."""
    return pd.DataFrame([{"run_id": r.label, "kind": r.meta.get("kind"), "status": liveness(r.meta),
                          **{f: r.config.get(f) for f in TABLE_FIELDS}, "source": r.source} for r in runs])


def config_diff(runs: list[Run]) -> pd.DataFrame:
    """Rows: runs; columns: only the config fields whose values differ between them (missing counts)."""
    names = sorted({k for r in runs for k in r.config})
    differ = [k for k in names if len({json.dumps(r.config.get(k), sort_keys=True) for r in runs}) > 1]
    rows = {r.label: {k: json.dumps(r.config[k]) if isinstance(r.config.get(k), (list, dict))
                      else r.config.get(k) for k in differ} for r in runs}
    return pd.DataFrame.from_dict(rows, orient="index", columns=differ).rename_axis("run")


NETWORK_TAG = " (network)"   # a catalog key: the network-scalar reading of a name other runs log per layer
_TRACKERS = {"tfevents": "TensorBoard", "wandb": "W&B", "csv": "CSV", "parquet": "Parquet", "mlflow": "MLflow",
             "trackio": "Trackio", "wandb-offline": "W&B"}


def ours(run: Run) -> bool:
    """Whether `run`'s metrics were computed by our code (trained, solved, dynamics.record, our zipped run),
    so the names of dynamics.metrics mean what their captions say."""
    source = run.meta.get("source") if isinstance(run.meta.get("source"), dict) else {}
    return run.kind != "imported" or source.get("format") in ("record", "run-zip")


def caption(metric: str, runs: list[Run] | None = None) -> str:
    """The caption of a metric: dynamics.metrics.METRICS' meaning ('' for names it does not know) when our code
    computed it in every one of `runs` that holds it (all runs when None); for a name logged by a user's tracker,
    where it came from (tracker and file) instead, since the user's tag need not mean what ours does."""
    name = metric.removesuffix(NETWORK_TAG)
    theirs = [r for r in runs or [] if not ours(r) and name in _held(r)]
    if not theirs:
        return METRICS.get(name, ("", ""))[0]
    where = sorted({f"{_logged_as(r, name)} in {_TRACKERS.get(str(r.meta.get('source', {}).get('format')), 'imported')}"
                    f" log {r.meta.get('source', {}).get('file') or r.label}" for r in theirs})
    return f"logged as {'; '.join(where[:3])}{' …' if len(where) > 3 else ''} (not computed by dynamics)"


def _logged_as(run: Run, name: str) -> str:
    """The key `name` was logged under in an imported run (`layer<ℓ>/grad_norm`; run.json summary.logged_as, written
    by the importer), else the name itself."""
    summary = run.meta.get("summary") if isinstance(run.meta.get("summary"), dict) else {}
    logged = summary.get("logged_as") if isinstance(summary.get("logged_as"), dict) else {}
    return str(logged.get(name, name))[:80]


def _held(run: Run) -> dict[str, tuple[bool, tuple[int, ...]]]:
    try:
        return _catalog(run.path, _mtime(run.path))
    except RunFormatError:
        return {}


# --- metric loaders -----------------------------------------------------------------------------
def metric_catalog(runs: list[Run]) -> tuple[dict[str, tuple[bool, list[int]]], list[str]]:
    """Metrics present in any of `runs` (registry order first): metric -> (network scalar?, recorded steps).

    Second value: messages for runs whose metrics cannot be read.
    """
    found: dict[str, dict[bool, set[int]]] = {}  # name -> {network?: steps}: a name can be both, in two runs
    errors = []
    for r in runs:
        try:
            cat = _catalog(r.path, _mtime(r.path))
        except RunFormatError as e:
            errors.append(f"`{r.label}`: {e}")
            continue
        for m, (net, steps) in cat.items():
            found.setdefault(m, {}).setdefault(net, set()).update(steps)
    order = [m for m in METRICS if m in found] + sorted(m for m in found if m not in METRICS)
    out = {}
    for m in order:
        for net in sorted(found[m]):  # per layer first; the network reading apart when both occur
            out[m + NETWORK_TAG if net and len(found[m]) > 1 else m] = (net, sorted(found[m][net]))
    return out, errors



def opening_step(runs: list[Run], metric: str, steps: list[int]) -> int:
    """The step a view of `metric` opens at: the last step every run that holds the metric recorded (so the
    first view never says "not recorded at step"), else the last of `steps`."""
    common = None
    for r in runs:
        try:
            held = _catalog(r.path, _mtime(r.path)).get(metric)
        except RunFormatError:
            continue
        if held is not None:
            common = set(held[1]) if common is None else common & set(held[1])
    shared = sorted(common & set(steps)) if common else []
    return shared[-1] if shared else steps[-1]


def layered_catalog(runs: list[Run]) -> tuple[dict[str, tuple[bool, list[int]]], list[str]]:
    """metric_catalog of `runs` with its problems shown, and the per-layer metrics among them; a page with
    none says how to record some and stops."""
    catalog, errors = metric_catalog(runs)
    show_problems(errors)
    layered = [m for m, (net, _) in catalog.items() if not net]
    if not layered:
        st.info("The chosen runs hold no per-layer metrics (only network scalars such as the loss, on the Runs "
                "page). Record some with `python -m dynamics train ... --out runs/`.")
        st.stop()
    return catalog, layered

def metric_frame(runs: list[Run], metric: str, steps: tuple[int, ...] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Tidy rows of one metric over runs (only `steps` when given, pruned on read): run, step, layer,
    tau = layer/depth, value[, stderr]. `metric` is a catalog key: the rows of one reading only (per layer, or
    the network scalar for `name (network)` and for a name every run holds as a network scalar)."""
    network = metric.endswith(NETWORK_TAG) or None  # None: as each run holds it
    if network is None:
        kinds = {held[0] for r in runs if (held := _held(r).get(metric)) is not None}
        network = None if len(kinds) != 1 else kinds.pop()
        network = False if network is None else network  # held both ways: the per-layer reading
    metric = metric.removesuffix(NETWORK_TAG)
    parts, errors = [], []
    for r in runs:
        try:
            df = _metric_rows(r.path, metric, _mtime(r.path), steps)
        except RunFormatError as e:
            errors.append(f"`{r.label}`: {e}")
            continue
        df = df[(df[LAYER] < 0) == network]  # a network scalar never lands in a depth profile, nor a layer in a curve
        if df.empty:
            continue
        depth = r.config.get("depth") or max(int(df[LAYER].max()), 1)  # imported runs may lack a depth
        parts.append(df.drop(columns=[METRIC]).assign(**{RUN: r.label, TAU: df[LAYER] / depth}))
    if not parts:
        return pd.DataFrame(columns=[RUN, STEP, LAYER, TAU, "value"]), errors
    out = pd.concat(parts, ignore_index=True)
    return out[[RUN, *[c for c in out.columns if c != RUN]]], errors


def show_problems(errors: list[str]) -> None:
    """Runs that could not be read are skipped, and the page says which and why."""
    for msg in errors:
        st.warning(f"Skipped {msg}")
