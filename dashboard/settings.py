"""The dashboard's shared settings: folders, environment variable names, session keys and the hosted switch.

Every other dashboard module imports what it needs from here and this module imports none of them, so the
dependencies run one way: settings ← hosting ← uploads ← runs ← pages. Nothing here draws anything.

Hosted (shared, read-only) mode is on when $DYNAMICS_READONLY says so (the Docker image sets it), else when
`.streamlit/secrets.toml` (or Streamlit Community Cloud's secrets box) holds `[dynamics] readonly = true`.
The switch is strict: only 1/true/yes/on and 0/false/no/off are understood; anything else fails closed
(hosted) and `check()` reports it, so `python -m dashboard.settings` (the Docker image runs it before the
server) stops with one line. `quotas()` holds the upload and import bounds, lower in hosted mode.
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path

import streamlit as st

REPO = Path(__file__).resolve().parents[1]
DATA_ENV, USER_ENV = "DYNAMICS_DATA_DIR", "DYNAMICS_RUNS"           # bundled runs; the user's runs folder
UPLOAD_ENV, TTL_ENV = "DYNAMICS_UPLOAD_DIR", "DYNAMICS_UPLOAD_TTL_HOURS"
READONLY_ENV, CAP_ENV, JOBS_ENV = "DYNAMICS_READONLY", "DYNAMICS_TRAIN_CAP", "DYNAMICS_TRAIN_JOBS"
CACHE_ENV, REMOTE_MB_ENV = "DYNAMICS_CACHE_DIR", "DYNAMICS_REMOTE_MAX_MB"
UPLOADED_ROOTS = "uploaded_roots"  # session key: list of extra run roots for this session (Upload page)
OWN_RUNS = "dashboard.own_runs"     # session key: run dirs this session uploaded (they lead the run selection)

DEFAULT_CAP = (256, 16, 200)      # width, depth, steps: a CPU run of seconds
HOSTED_TTL_HOURS = 0.5            # session folders of a shared instance live 30 min after the last visit
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting that is not understood; the message is one line naming it and what it may be."""


def _switch() -> tuple[bool, str | None]:
    """(hosted?, problem): an unclear switch gives (True, why): a shared instance never fails open."""
    env = os.environ.get(READONLY_ENV)
    if env is not None:
        v = env.strip().lower()
        if v in _TRUE | _FALSE:
            return v in _TRUE, None
        return True, f"${READONLY_ENV}={env[:40]!r} is not a clear yes or no; use 1 (shared, read-only) or 0"
    if not st.secrets.load_if_toml_exists():  # no secrets file: no error element, no exception
        return False, None
    value = (st.secrets.get("dynamics") or {}).get("readonly", False)
    if isinstance(value, bool):
        return value, None
    if str(value).strip().lower() in _TRUE | _FALSE:
        return str(value).strip().lower() in _TRUE, None
    return True, f"secrets [dynamics] readonly = {str(value)[:40]!r} is not a clear yes or no; use true or false"


def hosted() -> bool:
    """$DYNAMICS_READONLY if set (1/true/yes/on, or 0/false/no/off), else secrets [dynamics] readonly; an unclear
    value counts as hosted (check() reports it)."""
    return _switch()[0]


@dataclass(frozen=True)
class Quotas:
    """Upload and import bounds: files and MB per drop, MB per session folder and over all session folders,
    MB and seconds of one import's child process (dynamics.runs.sandbox)."""
    files: int
    upload_mb: float
    session_mb: float
    total_mb: float
    import_mb: int
    import_seconds: float


LOCAL_QUOTAS = Quotas(files=50, upload_mb=1000, session_mb=8192, total_mb=32768, import_mb=4096, import_seconds=600)
HOSTED_QUOTAS = Quotas(files=5, upload_mb=50, session_mb=200, total_mb=2048, import_mb=768, import_seconds=60)
QUOTA_ENVS = {"files": "DYNAMICS_UPLOAD_FILES", "upload_mb": "DYNAMICS_UPLOAD_MB", "session_mb": "DYNAMICS_SESSION_MB",
              "total_mb": "DYNAMICS_UPLOADS_TOTAL_MB", "import_mb": "DYNAMICS_IMPORT_MB",
              "import_seconds": "DYNAMICS_IMPORT_SECONDS"}


def _quota_overrides() -> tuple[dict, list[str]]:
    values, problems = {}, []
    for f in fields(Quotas):
        raw = os.environ.get(QUOTA_ENVS[f.name], "").strip()
        if not raw:
            continue
        try:
            v = int(raw) if f.type in (int, "int") else float(raw)
            if not v > 0 or v != v or v == float("inf"):
                raise ValueError
            values[f.name] = v
        except ValueError:
            problems.append(f"${QUOTA_ENVS[f.name]}={raw[:40]!r} is not a positive "
                            f"{'whole ' if f.type in (int, 'int') else ''}number")
    return values, problems


def quotas() -> Quotas:
    """The hosted or local quotas, with $DYNAMICS_UPLOAD_FILES etc. overriding (a malformed value is ignored
    here and reported by check())."""
    return replace(HOSTED_QUOTAS if hosted() else LOCAL_QUOTAS, **_quota_overrides()[0])


def check() -> list[str]:
    """Every setting that is not understood, one line each ([] = all clear)."""
    problems = [why] if (why := _switch()[1]) else []
    problems += _quota_overrides()[1]
    for env in (TTL_ENV, JOBS_ENV):
        raw = os.environ.get(env, "").strip()
        try:
            if raw and not float(raw) > 0:
                raise ValueError
        except ValueError:
            problems.append(f"${env}={raw[:40]!r} is not a positive number")
    return problems


def train_cap() -> tuple[int, int, int] | None:
    """(width, depth, steps) caps of the train form in hosted mode; None = training off ($DYNAMICS_TRAIN_CAP
    = "WxDxS", or "0"/"off"). A malformed value falls back to the default rather than lifting the cap."""
    raw = os.environ.get(CAP_ENV, "").strip().lower()
    if raw in {"0", "off", "none"}:
        return None
    try:
        w, d, s = (int(v) for v in raw.replace("×", "x").split("x"))
        return (w, d, s) if min(w, d, s) > 0 else None
    except ValueError:
        return DEFAULT_CAP


def max_jobs() -> int:
    """Training runs in flight at once over all sessions (hosted mode; $DYNAMICS_TRAIN_JOBS, default 1)."""
    try:
        return max(1, int(os.environ.get(JOBS_ENV, 1)))
    except ValueError:
        return 1


def ttl_seconds() -> float:
    """How long a session's upload folder lives after its last visit ($DYNAMICS_UPLOAD_TTL_HOURS; default
    6 h, 30 min in hosted mode)."""
    default = HOSTED_TTL_HOURS if hosted() else 6
    try:
        return float(os.environ.get(TTL_ENV, default)) * 3600
    except ValueError:
        return default * 3600.0


def local_upload_dir() -> Path:
    """Where a local (not hosted) dashboard keeps uploads and runs trained from its pages, across reloads and
    restarts: $DYNAMICS_UPLOAD_DIR/local when that is set, else ~/.dynamics/uploads. Delete a run by deleting its
    folder there. (A hosted instance keeps per-session folders instead: dashboard.uploads.)"""
    base = os.environ.get(UPLOAD_ENV)
    return Path(base) / "local" if base else Path.home() / ".dynamics" / "uploads"


def cache_dir() -> Path:
    """Where remote runs roots are mirrored ($DYNAMICS_CACHE_DIR, else the temp folder's dynamics-remote)."""
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "dynamics-remote")


def main() -> int:
    """`python -m dashboard.settings`: check the settings before serving; one line per problem, exit 2."""
    if problems := check():
        for p in problems:
            print(f"dynamics dashboard: {p}", file=sys.stderr)
        return 2
    print(f"dynamics dashboard: settings understood ({'hosted, read-only' if hosted() else 'private'}: {quotas()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
