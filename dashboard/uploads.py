"""The Upload page's helpers: per-session upload folders, their clean-up, and uploads -> imported runs.

Each browser session gets its own folder `session-XXXX` (tempfile.mkdtemp) under a base folder
($DYNAMICS_UPLOAD_DIR, else the system temp folder's `dynamics-uploads`). Imported runs are written there
by dynamics.runs.imports, and the folder is appended to `st.session_state["uploaded_roots"]`, which every page's
run finder reads (dashboard.runs.session_roots): the runs appear on every page of this session and of no
other, since no other session knows the folder. Folders untouched for longer than the TTL (default 6 h,
$DYNAMICS_UPLOAD_TTL_HOURS; 30 min in hosted mode) are deleted when the Upload page loads (in hosted mode:
when any page loads; dashboard.hosting). Uploaded bytes are staged in a hidden
folder inside the session folder (ignored by the run finder) and removed after the import.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import hosting
from dashboard.settings import TTL_ENV, UPLOAD_ENV, UPLOADED_ROOTS, ttl_seconds  # noqa: F401
from dynamics.runs.imports import RunImportError, import_file
from dynamics.runs.store import RunFormatError

PREFIX = "session-"
_ROOT, _DONE = "upload_page.root", "upload_page.done"  # session keys: this session's folder; outcomes by file id


def base_dir() -> Path:
    return Path(os.environ.get(UPLOAD_ENV) or Path(tempfile.gettempdir()) / "dynamics-uploads")


def sweep_old(base: Path | None = None, ttl: float | None = None, keep: Path | None = None) -> list[Path]:
    """Delete per-session folders whose last change is older than the TTL (not `keep`); returns them."""
    base, ttl = base or base_dir(), ttl_seconds() if ttl is None else ttl
    gone = []
    if not base.is_dir():
        return gone
    now = time.time()
    for d in base.iterdir():
        try:
            old = d.is_dir() and d.name.startswith(PREFIX) and now - d.stat().st_mtime > ttl
        except OSError:
            continue
        if old and (keep is None or d.resolve() != keep.resolve()):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def clean_up() -> None:
    """The Upload page's first call: the hosted-mode banner, then keep_fresh()."""
    hosting.banner()
    keep_fresh()


def keep_fresh() -> None:
    """Sweep old session folders, keeping (and touching) this session's own."""
    root = st.session_state.get(_ROOT)
    if root and Path(root).is_dir():
        os.utime(root)
    sweep_old(keep=Path(root) if root else None)


def session_root() -> Path:
    """This session's upload folder (made on first use, kept fresh by touching it on each visit)."""
    root = st.session_state.get(_ROOT)
    if root is None or not Path(root).is_dir():
        base = base_dir()
        hosting.refuse_write(base)  # a misconfigured upload folder inside the served runs
        base.mkdir(parents=True, exist_ok=True)
        root = tempfile.mkdtemp(prefix=PREFIX, dir=base)
        st.session_state[_ROOT] = root
    os.utime(root)
    return Path(root)


def register(root: Path) -> None:
    roots = [r for r in st.session_state.get(UPLOADED_ROOTS, []) or [] if Path(r).is_dir()]
    if str(root) not in map(str, roots):
        roots.append(str(root))
    st.session_state[UPLOADED_ROOTS] = roots


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", Path(name).name).lstrip(".-") or "upload"


def _unique(root: Path, name: str) -> str:
    stem = re.sub(r"\.(zip|parquet|csv|txt)$", "", _safe(name), flags=re.I)[:190] or "upload"
    candidate, k = stem, 1
    while (root / candidate).exists():
        k += 1
        candidate = f"{stem}-{k}"
    return candidate


def _sidecar_for(name: str, sidecars: dict[str, bytes], data_files: int) -> str | None:
    """FILE.json, FILE-without-suffix.json or run.json among the uploads; a lone JSON goes with a lone file."""
    stem = name.rsplit(".", 1)[0]
    for cand in (f"{name}.json", f"{stem}.json", "run.json"):
        if cand in sidecars:
            return cand
    return next(iter(sidecars)) if len(sidecars) == 1 and data_files == 1 else None


def import_uploads(files: list[tuple[str, bytes]], root: Path) -> list[dict[str, Any]]:
    """(name, bytes) uploads -> one outcome per data file: {"file", "ok", "run", "summary", "skipped", "error"}."""
    sidecars = {n: b for n, b in files if n.lower().endswith(".json")}
    data = [(n, b) for n, b in files if not n.lower().endswith(".json")]
    out = []
    if sidecars and not data:
        return [{"file": n, "ok": False, "error": "a JSON file alone is not a run; upload it together with "
                 "the CSV or Parquet file it describes"} for n in sidecars]
    for name, blob in data:
        stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
        try:
            src = stage / _safe(name)
            src.write_bytes(blob)
            side = _sidecar_for(name, sidecars, len(data))
            cfg = None
            if side:
                (stage / "sidecar.json").write_bytes(sidecars[side])
                cfg = stage / "sidecar.json"
            res = import_file(src, root, name=_unique(root, name), config=cfg, source_name=name)
            out.append({"file": name, "ok": True, "run": res.run_dir.name, "summary": res.summary,
                        "skipped": res.skipped, "sidecar": side, "format": res.meta["source"]["format"]})
        except (RunImportError, RunFormatError) as e:
            out.append({"file": name, "ok": False, "error": str(e)})
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return out


def process(uploaded: list) -> list[dict[str, Any]]:
    """Import the uploader's files not seen before in this session; every outcome so far, newest last.

    Streamlit reruns the page on every interaction with the same files still in the uploader, so files are
    remembered by their file id and imported once."""
    done: dict[str, list] = st.session_state.setdefault(_DONE, {})
    new = [f for f in uploaded if f.file_id not in done]
    if new:
        try:
            root = session_root()
        except hosting.ReadOnlyError as e:
            return [{"file": f.name, "ok": False, "error": str(e)} for f in new]
        key = "+".join(f.file_id for f in new)
        done[key] = import_uploads([(f.name, f.getvalue()) for f in new], root)
        for f in new:
            done.setdefault(f.file_id, [])
        if any(o["ok"] for o in done[key]):
            register(root)
    return [o for outcomes in done.values() for o in outcomes]


def preview_rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    """What was understood, as rows for a small table."""
    lo, hi = summary["layer_range"]
    s0, s1 = summary["step_range"]
    return [{"what": "layers", "understood": f"{summary['layers']} (indices {max(lo, 0)}..{hi})"
             if summary["layers"] else "none (network scalars only)"},
            {"what": "steps", "understood": f"{summary['steps']} ({s0}..{s1})"},
            {"what": "per-layer metrics", "understood": ", ".join(summary["per_layer_metrics"]) or "none"},
            {"what": "network scalars (layer −1)", "understood": ", ".join(summary["network_scalars"]) or "none"},
            {"what": "rows", "understood": str(summary["rows"])}]
