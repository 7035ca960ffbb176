"""A shared dashboard that one visitor cannot take down: hostile uploads end in one line or a bounded import.

The corpus (tests/attack_files.py, generated here, nothing big checked in) goes through the Upload page's
import path in hosted mode (each file in a child process under a memory and time limit), and, in the slow
served test, through the real page in Chromium against `streamlit run app.py`, with the server process's peak
memory (VmHWM) and CPU time read from /proc. Also: the child process's memory and time limits, the disk
quotas, stale staging folders, upload bytes released once on disk, names escaped, CSV cells escaped.
"""
from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import uploads as U
from dashboard.csv_export import csv_bytes, escape_cell
from dynamics.runs.import_bounds import Limits
from dynamics.runs.import_checks import RunImportError
from dynamics.runs.imports import import_file
from dynamics.runs.sandbox import Bounds, import_bounded
from tests.attack_files import corpus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def hosted(monkeypatch, tmp_path, runs_dir):
    for var in ("DYNAMICS_RUNS", "DYNAMICS_SESSION_MB", "DYNAMICS_UPLOADS_TOTAL_MB", "DYNAMICS_UPLOAD_FILES",
                "DYNAMICS_UPLOAD_MB", "DYNAMICS_IMPORT_MB", "DYNAMICS_IMPORT_SECONDS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DYNAMICS_READONLY", "1")
    monkeypatch.setenv("DYNAMICS_DATA_DIR", str(runs_dir))
    monkeypatch.setenv("DYNAMICS_UPLOAD_DIR", str(tmp_path / "uploads"))
    root = tmp_path / "uploads" / f"{U.PREFIX}test"
    root.mkdir(parents=True)
    return root


def _one_line(msg: str) -> None:
    assert "\n" not in msg and "Traceback" not in msg and len(msg) < 400, msg
    assert "/tmp" not in msg and str(REPO) not in msg, f"a server path reaches the visitor: {msg}"


@pytest.mark.slow
def test_every_attack_ends_in_one_line_or_a_bounded_import(hosted):
    for name, (drop, refusal) in corpus().items():
        outcomes = U.import_uploads(drop, hosted)
        assert outcomes, name
        for o in outcomes:
            if refusal is None:
                assert o["ok"], (name, o)
                s = o["summary"]
                assert s["rows"] <= Limits.hosted().max_rows and s["steps"] <= Limits.hosted().max_steps
            else:
                assert not o["ok"], (name, o)
                _one_line(o["error"])
                assert refusal in o["error"], (name, o["error"])
    left = [p.name for p in hosted.iterdir() if p.name.startswith((".staging-", ".import-"))]
    assert left == []  # nothing half-written
    assert sorted(p.name for p in hosted.iterdir()) == ["formula", "mdcol"]


def test_claimed_depth_and_bad_config_types_are_refused(tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("step,layer,metric,value\n0,0,h_sq,1\n0,1,h_sq,2\n")
    for cfg, phrase in (({"depth": 10 ** 12}, "config depth 1000000000000 must be an integer from 1"),
                        ({"depth": True}, "config depth True"), ({"depth": 4, "width": "abc"}, "config width 'abc'"),
                        ({"depth": 4, "lr": "nan"}, "config lr"), ({"depth": 4, "act": "re\u202elu"}, "U+202E"),
                        ({"depth": 4, "x": {"deep": 1}}, "config x must be")):
        with pytest.raises(RunImportError, match=re.escape(phrase)):
            import_file(src, tmp_path / "out", config=cfg, limits=Limits.hosted())
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    res = import_file(src, tmp_path / "out", config={"depth": 1024, "width": 64, "lr": 0.5}, limits=Limits.hosted())
    assert res.meta["config"]["depth"] == 1024


def test_zip_entries_streamed_under_caps_with_magic_checks(tmp_path):
    import zipfile
    for entries, phrase in (({"run.json": b"[1]", "metrics.parquet": b"PAR1" + bytes(100)}, "not a JSON object"),
                            ({"run.json": b"{}", "metrics.parquet": b"NOPE" + bytes(100)}, "no PAR1 magic"),
                            ({"run.json": b"{" + b" " * (2 ** 20 + 1) + b"}", "metrics.parquet": b"PAR1"},
                             "run.json is 1048579 bytes uncompressed (limit 1048576)")):
        z = tmp_path / "r.zip"
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
            for n, b in entries.items():
                zf.writestr(n, b)
        with pytest.raises(RunImportError, match=re.escape(phrase)):
            import_file(z, tmp_path / "out")


def test_parquet_decoded_size_checked_before_reading(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    n = 50_000  # the 10 MB "junk" column is never read; step, layer, metric, value decode to ≈ 0.7 MB
    t = pa.table({"step": np.arange(n, dtype=np.int32), "layer": np.zeros(n, np.int16), "metric": ["h_sq"] * n,
                  "value": np.zeros(n), "junk": ["x" * 200] * n})
    pq.write_table(t, tmp_path / "m.parquet", use_dictionary=False)
    with pytest.raises(RunImportError, match="too large once decoded"):
        import_file(tmp_path / "m.parquet", tmp_path / "out", limits=Limits(max_decoded_bytes=2 ** 19))
    # only the run-format columns are read: the junk column is skipped unread (and said so)
    res = import_file(tmp_path / "m.parquet", tmp_path / "out", limits=Limits(max_decoded_bytes=2 ** 21))
    assert {"what": "column junk", "why": "not one of step, layer, metric, value, stderr"} in res.skipped


def test_the_child_is_killed_past_its_memory_or_time_and_leaves_nothing(tmp_path):
    src = tmp_path / "big.csv"
    with src.open("w") as f:
        f.write("step,layer,metric,value\n")
        f.writelines(f"{s},0,metric_{s % 997},{s}.5\n" for s in range(300_000))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RunImportError, match=r"needed more than 60 MB of memory and was stopped") as e:
        import_bounded(src, out, bounds=Bounds(memory_mb=60))
    _one_line(str(e.value))
    t0 = time.monotonic()
    with pytest.raises(RunImportError, match=r"stopped after 0.5 s") as e:
        import_bounded(src, out, bounds=Bounds(seconds=0.5))
    assert time.monotonic() - t0 < 5
    assert list(out.iterdir()) == []


def test_disk_quotas_per_drop_session_and_server(hosted, monkeypatch):
    csv = b"step,layer,metric,value\n0,0,h_sq,1\n"
    (hosted / "old").mkdir()
    (hosted / "old" / "blob").write_bytes(bytes(60_000))
    monkeypatch.setenv("DYNAMICS_SESSION_MB", "0.05")
    (o,) = U.import_uploads([("a.csv", csv)], hosted)
    assert not o["ok"] and "over the 0.05 MB a session may hold" in o["error"]
    monkeypatch.setenv("DYNAMICS_SESSION_MB", "10")
    other = hosted.parent / f"{U.PREFIX}other"
    other.mkdir()
    (other / "blob").write_bytes(bytes(200_000))
    monkeypatch.setenv("DYNAMICS_UPLOADS_TOTAL_MB", "0.2")
    (o,) = U.import_uploads([("a.csv", csv)], hosted)
    assert not o["ok"] and o["error"] == "the server's space for uploads is full; try again later"
    monkeypatch.setenv("DYNAMICS_UPLOADS_TOTAL_MB", "10")
    (o,) = U.import_uploads([("a.csv", csv)], hosted)
    assert o["ok"], o


def test_staging_folders_of_a_killed_server_go_at_the_next_sweep_this_servers_stay(hosted, monkeypatch):
    for d in (".staging-abc", ".import-run-xyz"):
        (hosted / d).mkdir()
        (hosted / d / "part").write_bytes(b"x" * 100)
    monkeypatch.setattr(U, "_STARTED", time.time() + 1)  # a new server process, started after they were made
    gone = U.sweep_old(base=hosted.parent, ttl=3600)
    assert sorted(p.name for p in gone) == [".import-run-xyz", ".staging-abc"]
    monkeypatch.setattr(U, "_STARTED", time.time() - 1)
    (hosted / ".staging-new").mkdir()  # mid-import in this process (another session's sweep runs): kept
    assert U.sweep_old(base=hosted.parent, ttl=3600) == []
    old = time.time() - 3 * U.quotas().import_seconds - 60
    os.utime(hosted / ".staging-new", (old, old))
    monkeypatch.setattr(U, "_STARTED", old - 1)
    assert [p.name for p in U.sweep_old(base=hosted.parent, ttl=3600)] == [".staging-new"]


def _uploader_app():
    import streamlit as st
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from dashboard import uploads
    files = st.file_uploader("logs", accept_multiple_files=True)
    outcomes = uploads.process(files or [])
    ctx = get_script_run_ctx()
    held = ctx.uploaded_file_mgr.file_storage.get(ctx.session_id, {})
    st.write(f"held {len(held)}; outcomes {[o['ok'] for o in outcomes]}")


def test_upload_bytes_are_released_once_written(hosted):
    at = AppTest.from_function(_uploader_app, default_timeout=60).run()
    csv = b"step,layer,metric,value\n0,0,h_sq,1\n0,1,h_sq,2\n"
    at.file_uploader[0].set_value([("a.csv", csv, "text/csv")]).run()
    assert not at.exception
    assert at.markdown[-1].value == "held 0; outcomes [True]"


def test_names_render_as_text_and_csv_cells_cannot_be_formulas(hosted):
    (o,) = U.import_uploads(corpus(("markdown_column",))["markdown_column"][0], hosted)
    text = U.skipped_markdown(o["skipped"])
    assert "![x](" not in text and r"\!\[x\](http" in text  # shown as text: the browser fetches nothing
    assert U.code("a`b\u202e\n") == "`a'bU+202EU+000A`"
    (o,) = U.import_uploads(corpus(("formula_config",))["formula_config"][0], hosted)
    cfg = json.loads((hosted / o["run"] / "run.json").read_text())["config"]
    out = pd.read_csv(io.BytesIO(csv_bytes(pd.DataFrame([cfg]).assign(value=[-1.5], text=["-2"]))), dtype=str)
    assert out.loc[0, "act"] == "'=cmd|' /C calc'!A0" and out.loc[0, "task"].startswith("'@SUM")
    assert out.loc[0, "value"] == "-1.5" and out.loc[0, "text"] == "-2"  # numbers stay numbers
    assert [escape_cell(v) for v in ("+1", "+cmd", "\tx", "ok", 3)] == ["+1", "'+cmd", "'\tx", "ok", 3]


def _proc_stats(pid: int) -> tuple[float, float]:
    """(peak resident MB, CPU seconds) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return hwm, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _zygote_pid(server: int) -> int | None:
    """The import zygote (dynamics.runs.sandbox) the server started, if any."""
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == server and \
                    b"dynamics.runs.sandbox" in (d / "cmdline").read_bytes():
                return int(d.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


@pytest.mark.slow
def test_served_app_takes_every_attack_under_1_gb_and_bounded_cpu(runs_dir, tmp_path):
    """The corpus dropped on the Upload page of a served hosted instance in Chromium: every drop ends in its
    one-line refusal or an import, no page shows an exception, and the server process's peak memory stays
    under 1 GB and its CPU time bounded (the imports' own work happens in child processes)."""
    from playwright.sync_api import sync_playwright

    from tests.serving import serve_app, stop_server
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMICS_")} | {
        "DYNAMICS_READONLY": "1", "DYNAMICS_DATA_DIR": str(runs_dir), "DYNAMICS_UPLOAD_DIR": str(tmp_path / "up")}
    proc, base, log = serve_app(env, tmp_path / "serve.log")
    attacks = corpus()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.set_default_timeout(90_000)
            page.goto(f"{base}/Upload")
            upload = page.locator('[data-testid="stFileUploader"] input[type=file]')
            seen = 0
            for name, (drop, refusal) in attacks.items():
                data = [(n, b) for n, b in drop if not n.endswith(".json")]
                folder = tmp_path / "drops" / name  # by path: Playwright takes no buffer over 50 MB
                folder.mkdir(parents=True)
                for n, b in drop:
                    (folder / n).write_bytes(b)
                upload.set_input_files([str(folder / n) for n, _ in drop])
                seen += len(data)
                page.wait_for_function(
                    "n => [...document.querySelectorAll('[data-testid=stAlert]')].filter(e => "
                    "/was not imported|imported as run/.test(e.innerText)).length >= n", arg=seen)
                alerts = page.locator('[data-testid="stAlert"]').all_inner_texts()
                newest = [a for a in alerts if re.search("was not imported|imported as run", a)][:len(data)]
                for text in newest:
                    if refusal is None:
                        assert "imported as run" in text, (name, text)
                    else:
                        assert "was not imported" in text and refusal in text, (name, text)
                        _one_line(text.split("was not imported:", 1)[1].strip())
                assert page.get_by_test_id("stException").count() == 0, name
            browser.close()
        hwm, cpu = _proc_stats(proc.pid)
        zygote = _zygote_pid(proc.pid)
        assert zygote is not None  # the imports ran outside the server process
        z_hwm, _ = _proc_stats(zygote)
        fields = Path(f"/proc/{zygote}/stat").read_text().rsplit(")", 1)[1].split()
        child_cpu = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    finally:
        stop_server(proc, log)
    print(f"server peak RSS {hwm:.0f} MB, CPU {cpu:.1f} s; import zygote peak RSS {z_hwm:.0f} MB, its children's "
          f"CPU {child_cpu:.1f} s (each child capped at 768 MB above the loaded interpreter)")
    assert hwm < 1024, f"server peak memory {hwm:.0f} MB"
    assert z_hwm < 1024, f"import zygote peak memory {z_hwm:.0f} MB"
    assert cpu < 120, f"server CPU time {cpu:.0f} s"
