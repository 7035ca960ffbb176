"""Run every benchmark in this folder and print one table of the figures they report.

    python benchmarks/run_all.py [--full] [--only record_overhead,sweep_local] [--with-browser] [--timeout 900]

Each script runs as a subprocess with small, fast arguments (its own argparse flags; `--full` uses the
script's defaults, the sizes its issue asked for). A script reports its figures as lines `RESULT name=value`;
for a script without one the table shows its last printed line. The browser load test needs Debian's
Chromium and runs only with --with-browser, like vs_tensorboard's first-chart half. Exit status 1 when any script failed.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# script -> small arguments (seconds to a minute each on 2 cores)
FAST = {
    "record_overhead": ["--width", "128", "--depth", "8", "--steps", "10", "--repeats", "1"],
    "sweep_local": ["--width", "32", "--depth", "4", "--steps", "10", "--skip-default-threads"],
    "catalog_query": ["--runs", "50", "--layers", "10", "--steps", "20"],
    "dashboard_load": ["--depth", "32", "--steps", "200", "--no-browser"],
    "limit_vs_finite": ["--particles", "256", "--grid", "4", "--steps", "4", "--repeats", "1",
                        "--skip", "cost,convergence"],
    "load_test": ["--sessions", "2", "--duration", "10"],
    "vs_tensorboard": ["--small"],
    "import_scale": ["--small"],
    "limit_depth_term": ["--particles", "4096", "--ref", "16", "--depths", "2,4"],
}
BROWSER = {"load_test"}


def parse(stdout: str) -> dict[str, str]:
    """`RESULT name=value` lines -> {name: value}; else {'last line': the last non-empty line}."""
    found = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT ") and "=" in line:
            name, value = line[len("RESULT "):].rsplit("=", 1)
            found[name.strip()] = value.strip()
    if not found:
        lines = [ln for ln in stdout.splitlines() if ln.strip()]
        found["last line"] = lines[-1].strip() if lines else "(no output)"
    return found


def run(name: str, args: list[str], timeout: float) -> tuple[str, float, dict[str, str]]:
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args], capture_output=True, text=True,
                           timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - t0, {}
    status = "ok" if p.returncode == 0 else f"exit {p.returncode}"
    figures = parse(p.stdout)
    if p.returncode != 0:
        err = [ln for ln in p.stderr.splitlines() if ln.strip()]
        figures = {"error": err[-1] if err else "(no stderr)"}
    return status, time.monotonic() - t0, figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="each script's own default sizes (slow)")
    ap.add_argument("--only", default="", help="comma list of scripts to run (default: all)")
    ap.add_argument("--with-browser", action="store_true", help="also run the Chromium load test")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per script (default: 900)")
    a = ap.parse_args()
    names = [n for n in FAST if (HERE / f"{n}.py").exists()]
    if a.only:
        wanted = [n.strip() for n in a.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
        names = wanted
    elif not a.with_browser:
        names = [n for n in names if n not in BROWSER]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.system()}, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}; "
          f"sizes: {'full' if a.full else 'fast'}")
    rows, failed = [], False
    for name in names:
        args = [] if a.full else FAST[name]
        if name == "vs_tensorboard" and not a.with_browser:  # its Chromium half (first chart) only on request
            args = [*args, "--skip", "browser"]
        status, wall, figures = run(name, args, a.timeout)
        failed |= status != "ok"
        print(f"  {name}: {status} in {wall:.0f} s", flush=True)
        rows += [(name, status, f"{wall:.0f}", k, v) for k, v in (figures or {"": ""}).items()]
    widths = [max(len(str(r[i])) for r in rows + [("benchmark", "status", "wall s", "figure", "value")])
              for i in range(5)]
    for r in [("benchmark", "status", "wall s", "figure", "value")] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
