"""Helpers for tests and benchmarks that serve the dashboard: stop a server process for sure.

Used by tests/test_browser.py, tests/test_hosting.py and benchmarks/load_test.py (which puts the repo root
on sys.path), so each starts its own `streamlit run` on 127.0.0.1 and always stops it the same way.
"""
from __future__ import annotations

import subprocess


def stop_server(proc: subprocess.Popen, log=None) -> None:
    """Terminate, then kill after 10 s; close the log file if one was given."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    if log is not None:
        log.close()
