"""The Upload page's helpers: upload folders, their clean-up, and uploads -> imported runs.

A local dashboard (not hosted) is the user's own: uploads go to one folder on disk
(dashboard.settings.local_upload_dir: $DYNAMICS_UPLOAD_DIR/local, else ~/.dynamics/uploads), which every page
lists, after a reload and a server restart too; a same-named upload gets a new name (`name-2`), so nothing
there is overwritten, and nothing there is swept. The rest of this docstring is about hosted mode.

In hosted mode each browser session gets its own folder `session-XXXX` (tempfile.mkdtemp) under a base folder
($DYNAMICS_UPLOAD_DIR, else the system temp folder's `dynamics-uploads`). Imported runs are written there
by dynamics.runs.imports, and the folder is appended to `st.session_state["uploaded_roots"]`, which every page's
run finder reads (dashboard.runs.session_roots): the runs appear on every page of this session and of no
other, since no other session knows the folder. Folders untouched for longer than the TTL (default 6 h,
$DYNAMICS_UPLOAD_TTL_HOURS; 30 min in hosted mode) are deleted when the Upload page loads (in hosted mode:
when any page loads; dashboard.hosting). Uploaded bytes are staged in a hidden
folder inside the session folder (ignored by the run finder) and removed after the import; the uploader's
copy in the server's memory is released as soon as the bytes are on disk.

Bounds (dashboard.settings.quotas, lower in hosted mode): files and MB per drop, MB per session folder and
over all session folders; each file is imported by dynamics.runs.sandbox, one at a time, in a child process
with a memory and time limit (Limits.hosted() in hosted mode), so a hostile file ends in one line. Staging
folders left by a server that was killed mid-import (made before this process started) are removed by the
next sweep, and any older than twice the import time limit. Names shown on the page are escaped (`md`),
never read as Markdown.
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
from dashboard.settings import (OWN_RUNS, TTL_ENV, UPLOAD_ENV, UPLOADED_ROOTS, local_upload_dir, quotas,  # noqa: F401
                                ttl_seconds)
from dynamics.runs.import_bounds import Limits
from dynamics.runs.imports import RunImportError
from dynamics.runs.sandbox import Bounds, import_bounded
from dynamics.runs.store import RunFormatError

PREFIX = "session-"
_ROOT, _DONE = "upload_page.root", "upload_page.done"  # session keys: this session's folder; outcomes by file id


def base_dir() -> Path:
    return Path(os.environ.get(UPLOAD_ENV) or Path(tempfile.gettempdir()) / "dynamics-uploads")


_STAGED = (".staging-", ".import-")  # hidden work folders inside a session folder
_STARTED = time.time()                   # when this server process loaded the module: older staging is stale


def sweep_old(base: Path | None = None, ttl: float | None = None, keep: Path | None = None) -> list[Path]:
    """Delete per-session folders whose last change is older than the TTL (not `keep`), and stale staging
    folders inside the others; returns what was deleted. A staging folder is stale when it was made before
    this server process started (a killed server's: nothing of this process can be in it) or is older than
    twice the import time limit."""
    base, ttl = base or base_dir(), ttl_seconds() if ttl is None else ttl
    gone: list[Path] = []
    if not base.is_dir():
        return gone
    now = time.time()
    stale = 2 * quotas().import_seconds + 60
    for d in base.iterdir():
        try:
            if not (d.is_dir() and d.name.startswith(PREFIX)):
                continue
            old = now - d.stat().st_mtime > ttl
        except OSError:
            continue
        if old and (keep is None or d.resolve() != keep.resolve()):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
            continue
        for w in _children(d):
            try:
                if w.name.startswith(_STAGED) and (w.stat().st_mtime < _STARTED or now - w.stat().st_mtime >= stale):
                    shutil.rmtree(w, ignore_errors=True)
                    gone.append(w)
            except OSError:
                continue
    return gone


def _children(d: Path) -> list[Path]:
    try:
        return list(d.iterdir())
    except OSError:
        return []


def disk_mb(path: Path) -> float:
    """MB of the files under `path` (0 when it does not exist)."""
    total = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total / 2 ** 20


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
    """Where this session's uploads (and runs trained from a page) go. A local dashboard is the user's own: its
    one uploads folder (settings.local_upload_dir), kept across reloads and restarts and never swept. A hosted
    one: this session's own folder, made on first use and kept fresh by touching it on each visit."""
    if not hosting.hosted():
        root = local_upload_dir()
        root.mkdir(parents=True, exist_ok=True)
        st.session_state[_ROOT] = str(root)
        return root
    root = st.session_state.get(_ROOT)
    if root is None or not Path(root).is_dir():
        base = base_dir()
        try:
            hosting.refuse_write(base)  # a misconfigured upload folder inside the served runs
        except hosting.ReadOnlyError:  # said without the server's path
            raise hosting.ReadOnlyError("uploads are off: this shared instance's upload folder is inside its "
                                        "read-only runs (whoever runs it: set DYNAMICS_UPLOAD_DIR elsewhere)") from None
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


_EVENTS = re.compile(r"^events\.out\.tfevents\.(\d{9,11})\b")


def run_name(name: str) -> str:
    """A readable run name for an uploaded file: its name without the suffix; a bare TensorBoard event file
    (`events.out.tfevents.<time>.<host>.<pid>.<n>`) becomes `tensorboard-<date>-<time>` from the time in its name."""
    m = _EVENTS.match(Path(name).name)
    if m:
        from datetime import datetime, timezone
        return f"tensorboard-{datetime.fromtimestamp(int(m.group(1)), timezone.utc):%Y%m%d-%H%M%S}"
    return re.sub(r"\.(zip|parquet|csv|txt|db|wandb)$", "", _safe(name), flags=re.I)


def _unique(root: Path, name: str) -> str:
    stem = _safe(run_name(name))[:190] or "upload"
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


def _over_quota(files: list[tuple[str, Any]], root: Path) -> str | None:
    """Why this drop is refused (files, MB per drop, session folder, all session folders), else None."""
    q = quotas()
    mb = sum(_size(b) for _, b in files) / 2 ** 20
    if len(files) > q.files:
        return f"{len(files)} files in one drop (limit {q.files}); upload fewer at a time"
    if mb > q.upload_mb:
        return f"{mb:.1f} MB in one drop (limit {q.upload_mb:g} MB); upload fewer or smaller files"
    if (used := disk_mb(root)) + mb > q.session_mb:
        return (f"your session's runs already take {used:.1f} MB; {mb:.1f} MB more is over the "
                f"{q.session_mb:g} MB a session may hold")
    if disk_mb(root.parent) + mb > q.total_mb:
        return "the server's space for uploads is full; try again later"
    return None


def _size(blob: Any) -> int:
    return blob.nbytes if isinstance(blob, memoryview) else len(blob)


def import_uploads(files: list[tuple[str, Any]], root: Path, name: str = "") -> list[dict[str, Any]]:
    """(name, bytes or memoryview) uploads -> one outcome per data file: {"file", "ok", "run", "summary",
    "skipped", "error"}. Each file is imported in a bounded child process (dynamics.runs.sandbox). `name`: the
    run name the user typed (several files: name, name-2, …); blank: from each file's name (run_name)."""
    sidecars = {n: b for n, b in files if n.lower().endswith(".json")}
    data = [(n, b) for n, b in files if not n.lower().endswith(".json")]
    if sidecars and not data:
        return [{"file": n, "ok": False, "error": "a JSON file alone is not a run; upload it together with "
                 "the CSV or Parquet file it describes"} for n in sidecars]
    if why := _over_quota(files, root):
        return [{"file": n, "ok": False, "error": why} for n, _ in data]
    hosted = hosting.hosted()
    q = quotas()
    limits = Limits.hosted() if hosted else Limits()
    bounds = Bounds(memory_mb=q.import_mb, seconds=q.import_seconds, wait_seconds=q.import_seconds)
    out, typed = [], name
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
            res = import_bounded(src, root, name=_unique(root, typed.strip() or name), config=cfg, source_name=name, limits=limits,
                                 bounds=bounds)
            for r in res.runs:  # a tracker's file or folder holds several runs: one outcome each
                out.append({"file": name, "ok": True, "run": r.run_dir.name, "summary": r.summary,
                            "skipped": r.skipped, "sidecar": side, "format": r.meta["source"]["format"]})
            out += [{"file": f"{name}: {f.get('run') or f.get('what') or 'a run'}", "ok": False,
                     "error": scrub(str(f.get("why") or f.get("error") or "not imported"), root)} for f in res.failed]
        except (RunImportError, RunFormatError) as e:
            out.append({"file": name, "ok": False, "error": scrub(str(e), root)})
        except OSError as e:  # the session folder is full or gone: one line, no path
            out.append({"file": name, "ok": False, "error": f"cannot store the upload ({e.strerror or 'disk error'})"})
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return out


_ABS_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.+=@-]+/)+[\w.+=@-]*")


def scrub(msg: str, root: Path) -> str:
    """A message for the visitor without server paths: the session folder is "your session folder", any other
    absolute path "…"."""
    msg = msg.replace(str(root), "your session folder")
    return _ABS_PATH.sub("…", msg)


def _release(files: list) -> None:
    """Drop the uploader's copies of `files` from the server's memory (their bytes are on disk now)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx
        ctx = get_script_run_ctx()
        mgr = getattr(ctx, "uploaded_file_mgr", None)
        if ctx is None or not hasattr(mgr, "remove_file"):
            return
        for f in files:
            mgr.remove_file(session_id=ctx.session_id, file_id=f.file_id)
    except Exception:  # noqa: BLE001 (an internal API: releasing early is an optimisation, never an error)
        pass


def process(uploaded: list, name: str = "") -> list[dict[str, Any]]:
    """Import the uploader's files not seen before in this session; every outcome so far, newest last.

    Streamlit reruns the page on every interaction with the same files still in the uploader, so files are
    remembered by their file id and imported once; their bytes are released from memory after the import."""
    done: dict[str, list] = st.session_state.setdefault(_DONE, {})
    new = [f for f in uploaded if f.file_id not in done]
    if new:
        try:
            root = session_root()
        except hosting.ReadOnlyError as e:
            return [{"file": f.name, "ok": False, "error": str(e)} for f in new]
        key = "+".join(f.file_id for f in new)
        done[key] = import_uploads([(f.name, f.getbuffer()) for f in new], root, name)
        for f in new:
            done.setdefault(f.file_id, [])
        _release(new)
        mine = st.session_state.setdefault(OWN_RUNS, [])
        mine += [str(root / o["run"]) for o in done[key] if o["ok"]]  # they lead the selection (dashboard.selection)
        if any(o["ok"] for o in done[key]) and hosting.hosted():  # a local uploads folder is listed on every page
            register(root)
    return [o for outcomes in done.values() for o in outcomes]


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>!|~$])")  # what can start emphasis, code, links, images, HTML, math


def md(text: Any) -> str:
    """`text` for st.markdown as plain text: Markdown and HTML characters escaped, control and format
    characters (newlines, right-to-left overrides) shown as their code point; long text cut to 200."""
    import unicodedata
    s = "".join(f"U+{ord(c):04X}" if unicodedata.category(c) in ("Cc", "Cf") else c for c in str(text)[:200])
    return _MD_SPECIAL.sub(r"\\\1", s)


def code(text: Any) -> str:
    """`text` as a Markdown code span (nothing inside is rendered); backticks become ', control characters
    their code point."""
    import unicodedata
    s = "".join(f"U+{ord(c):04X}" if unicodedata.category(c) in ("Cc", "Cf") else c for c in str(text)[:200])
    return "`" + (s.replace("`", "'") or " ") + "`"


def skipped_markdown(skipped: list[dict[str, str]]) -> str:
    """The "Skipped, and why" list as Markdown whose items are escaped text (a column named like a Markdown
    image stays text: the visitor's browser fetches nothing)."""
    return "**Skipped, and why:**\n" + "\n".join(f"- {md(s['what'])}: {md(s['why'])}" for s in skipped)


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
