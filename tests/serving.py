"""Helpers for tests and benchmarks that serve the dashboard: start `streamlit run app.py` on 127.0.0.1, stop a
server process for sure, and launch Debian's Chromium the same way everywhere (never a downloaded browser).

Used by tests/test_browser.py, tests/test_hosting.py, benchmarks/load_test.py, benchmarks/dashboard_load.py and
benchmarks/vs_tensorboard_browser.py (the benchmarks put the repo root on sys.path), so each starts its own server
the same way and always stops it.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dashboard.boot import BOOT_KEY

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PLOTLY = f'[data-testid="stPlotlyChart"]:not(.st-key-{BOOT_KEY} *)'  # a page's Plotly charts, not boot's hidden one
CHART = PLOTLY + ' .js-plotly-plot .main-svg'  # a drawn Plotly chart of Streamlit's


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_app(env: dict, log_path: Path, timeout: float = 60.0, script: str | Path = "app.py"
              ) -> tuple[subprocess.Popen, str, object]:
    """`streamlit run app.py` (or another `script`) on a free loopback port with `env`, output to log_path; waits until
    /_stcore/health answers. Returns (process, base URL, log file) for stop_server; raises RuntimeError with
    the log when the server exits or stays unhealthy for `timeout` seconds (and stops it)."""
    port = free_port()
    log = Path(log_path).open("w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            stop_server(proc, log)
            raise RuntimeError(f"streamlit exited ({proc.returncode}):\n{Path(log_path).read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, base, log
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_server(proc, log)
            raise RuntimeError(f"streamlit not healthy in {timeout:g} s:\n{Path(log_path).read_text()}")
        time.sleep(0.25)


def stop_server(proc: subprocess.Popen, log=None) -> None:
    """Terminate, then kill after 10 s; close the log file if one was given."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    if log is not None and not log.closed:
        log.close()
