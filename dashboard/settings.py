"""The dashboard's shared settings: folders, environment variable names, session keys and the hosted switch.

Every other dashboard module imports what it needs from here and this module imports none of them, so the
dependencies run one way: settings ← hosting ← uploads ← runs ← pages. Nothing here draws anything.

Hosted (shared, read-only) mode is on when $DYNAMICS_READONLY says so (the Docker image sets it), else when
`.streamlit/secrets.toml` (or Streamlit Community Cloud's secrets box) holds `[dynamics] readonly = true`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import streamlit as st

REPO = Path(__file__).resolve().parents[1]
DATA_ENV, USER_ENV = "DYNAMICS_DATA_DIR", "DYNAMICS_RUNS"           # bundled runs; the user's runs folder
UPLOAD_ENV, TTL_ENV = "DYNAMICS_UPLOAD_DIR", "DYNAMICS_UPLOAD_TTL_HOURS"
READONLY_ENV, CAP_ENV, JOBS_ENV = "DYNAMICS_READONLY", "DYNAMICS_TRAIN_CAP", "DYNAMICS_TRAIN_JOBS"
CACHE_ENV, REMOTE_MB_ENV = "DYNAMICS_CACHE_DIR", "DYNAMICS_REMOTE_MAX_MB"
UPLOADED_ROOTS = "uploaded_roots"  # session key: list of extra run roots for this session (Upload page)

DEFAULT_CAP = (256, 16, 200)      # width, depth, steps: a CPU run of seconds
HOSTED_TTL_HOURS = 0.5            # session folders of a shared instance live 30 min after the last visit
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def hosted() -> bool:
    """$DYNAMICS_READONLY if set (1/true/yes/on, or 0/false/no/off), else secrets [dynamics] readonly."""
    env = os.environ.get(READONLY_ENV)
    if env is not None and env.strip().lower() in _TRUE | _FALSE:
        return env.strip().lower() in _TRUE
    if not st.secrets.load_if_toml_exists():  # no secrets file: no error element, no exception
        return False
    section = st.secrets.get("dynamics") or {}
    return str(section.get("readonly", False)).strip().lower() in _TRUE


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


def cache_dir() -> Path:
    """Where remote runs roots are mirrored ($DYNAMICS_CACHE_DIR, else the temp folder's dynamics-remote)."""
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "dynamics-remote")
