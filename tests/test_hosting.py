"""Hosted mode (dashboard.hosting): the switch, the read-only guards, `?dir=`, the banner, the caps, remote
runs roots (file:// only), the config file, and the Docker image's command and health check run locally.

AppTest sessions run with DYNAMICS_READONLY=1 and the fixture runs as the bundled data; the Docker test starts
the Dockerfile's own CMD on 127.0.0.1 (there is no Docker engine here) and always stops it.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import hosting
from dashboard.runs import DATA_ENV
from tests.serving import free_port, stop_server

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGES = sorted(str(p.relative_to(REPO)) for p in (REPO / "pages").glob("*.py"))
BANNER = "Shared read-only instance"


@pytest.fixture
def hosted_env(monkeypatch, tmp_path, runs_dir):
    """Hosted mode on the fixture runs; session folders and the remote cache under tmp_path."""
    for var in ("DYNAMICS_RUNS", "DYNAMICS_TRAIN_CAP", "DYNAMICS_UPLOAD_TTL_HOURS", "DYNAMICS_TRAIN_JOBS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DYNAMICS_READONLY", "1")
    monkeypatch.setenv(DATA_ENV, str(runs_dir))
    monkeypatch.setenv("DYNAMICS_UPLOAD_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("DYNAMICS_CACHE_DIR", str(tmp_path / "cache"))
    return runs_dir


def _page(page: str | None = None, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    if page:
        at.switch_page(page)
        for k, v in (query or {}).items():
            at.query_params[k] = v
        at.run()
        assert not at.exception
    return at


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_the_switch_env_then_secrets(monkeypatch):
    class Secrets:  # stands in for st.secrets with a [dynamics] section
        def __init__(self, section): self.section = section
        def load_if_toml_exists(self): return self.section is not None
        def get(self, key): return self.section if key == "dynamics" else None
    monkeypatch.delenv("DYNAMICS_READONLY", raising=False)
    for section, want in ((None, False), ({}, False), ({"readonly": True}, True), ({"readonly": "false"}, False)):
        monkeypatch.setattr(hosting.st, "secrets", Secrets(section))
        assert hosting.hosted() is want
    monkeypatch.setenv("DYNAMICS_READONLY", "0")  # the environment wins over secrets
    assert hosting.hosted() is False
    monkeypatch.setenv("DYNAMICS_READONLY", "1")
    monkeypatch.setattr(hosting.st, "secrets", Secrets(None))
    assert hosting.hosted() is True


def test_the_switch_is_strict_and_fails_closed(monkeypatch):
    """Anything but a clear yes/no is an error at start (python -m dashboard.settings exits 2 with one line)
    and, should the server start anyway, counts as hosted: the switch never fails open."""
    from dashboard import settings
    for raw in ("enabled", "Y", "2", "", "yes please"):
        monkeypatch.setenv("DYNAMICS_READONLY", raw)
        assert hosting.hosted() is True, raw
        (problem,) = settings.check()
        assert "is not a clear yes or no" in problem, raw
    for raw, want in (("1", True), ("TRUE", True), (" on ", True), ("0", False), ("No", False), ("off", False)):
        monkeypatch.setenv("DYNAMICS_READONLY", raw)
        assert hosting.hosted() is want and settings.check() == [], raw
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMICS_")}
    bad = subprocess.run([sys.executable, "-m", "dashboard.settings"], cwd=REPO, capture_output=True, text=True,
                         env=env | {"DYNAMICS_READONLY": "enabled", "DYNAMICS_SESSION_MB": "lots"}, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "dynamics dashboard: $DYNAMICS_READONLY='enabled' is not a clear yes or no; use 1 (shared, read-only) or 0",
        "dynamics dashboard: $DYNAMICS_SESSION_MB='lots' is not a positive number"]
    good = subprocess.run([sys.executable, "-m", "dashboard.settings"], cwd=REPO, capture_output=True, text=True,
                          env=env | {"DYNAMICS_READONLY": "1"}, timeout=60)
    assert good.returncode == 0 and "hosted, read-only" in good.stdout


def test_an_unclear_switch_stops_every_page_with_one_line(hosted_env, monkeypatch):
    monkeypatch.setenv("DYNAMICS_READONLY", "enabled")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/1_Runs.py").run()
    assert not at.exception
    (err,) = at.error
    assert err.value.startswith("This dashboard is not configured correctly: $DYNAMICS_READONLY='enabled'")
    assert not at.dataframe  # nothing else drawn


def _crashing_page():
    from dashboard import hosting
    hosting.banner()
    raise ValueError("width 'abc' in /srv/secret/pages/3_Limit.py")


def test_an_uncaught_error_in_hosted_mode_is_one_generic_line_without_paths(hosted_env, monkeypatch):
    at = AppTest.from_function(_crashing_page, default_timeout=60).run()
    (exc,) = at.exception
    assert exc.message.startswith("This app has encountered an error.") and "\n" not in exc.message
    assert not exc.stack_trace and "/srv/secret" not in exc.message and "ValueError" not in exc.message
    monkeypatch.setenv("DYNAMICS_READONLY", "0")  # a private instance shows the details again
    at = AppTest.from_function(_crashing_page, default_timeout=60).run()
    (exc,) = at.exception
    assert "/srv/secret" in exc.message and exc.stack_trace


def test_two_sessions_pressing_train_at_once_do_not_both_pass_the_cap(hosted_env, tmp_path, monkeypatch):
    """The race of the issue: check-the-cap and register are one step under a lock. prepare_run_dir is slowed
    so that, without the lock, both threads would pass the check before either registers."""
    import threading
    import dynamics.cli
    from dashboard import train_form
    from dynamics.config import RunConfig
    monkeypatch.setattr(train_form, "_JOBS", {})
    monkeypatch.setattr(hosting, "_IN_FLIGHT", [])
    release = threading.Event()
    monkeypatch.setattr(train_form, "_work", lambda cfg, run_dir, job: release.wait(30))

    def slow_prepare(out, name, cfg, overwrite):
        time.sleep(0.3)
        d = Path(out) / f"run-{threading.get_ident()}"
        d.mkdir(parents=True)
        return d
    monkeypatch.setattr(dynamics.cli, "prepare_run_dir", slow_prepare)
    out = tmp_path / "uploads" / "session-race"
    results, barrier = [], threading.Barrier(2)

    def press():
        barrier.wait()
        try:
            results.append(train_form.start(RunConfig(width=16, depth=2, steps=2), str(out)))
        except hosting.ReadOnlyError as e:
            results.append(str(e))
    threads = [threading.Thread(target=press) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    release.set()
    started = [r for r in results if isinstance(r, Path)]
    busy = [r for r in results if isinstance(r, str)]
    assert len(started) == 1 and busy == ["the server is busy with another run; try again when it ends"]


def test_train_cap_parsing(monkeypatch):
    for raw, want in (("", hosting.DEFAULT_CAP), ("128x8x50", (128, 8, 50)), ("64×4×10", (64, 4, 10)),
                      ("0", None), ("off", None), ("junk", hosting.DEFAULT_CAP)):
        monkeypatch.setenv("DYNAMICS_TRAIN_CAP", raw)
        assert hosting.train_cap() == want, raw


def test_the_banner_shows_on_every_page_only_in_hosted_mode(hosted_env, monkeypatch):
    at = _page()
    (banner,) = [i.value for i in at.info if BANNER in i.value]
    assert "30 minutes" in banner and "256×16×200" in banner
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, page
        assert any(BANNER in i.value for i in at.info), page
    monkeypatch.setenv("DYNAMICS_READONLY", "0")
    at = _page("pages/1_Runs.py")
    assert not any(BANNER in i.value for i in at.info)


def test_dir_in_the_url_is_ignored_and_the_folder_box_is_gone(hosted_env, tmp_path, monkeypatch):
    from tests.conftest import _finite
    from dynamics.config import RunConfig
    other = tmp_path / "elsewhere"
    _finite(other, "secret-run", RunConfig(width=32, depth=4))
    at = _page("pages/1_Runs.py", {"dir": str(other)})
    assert "secret-run" not in list(at.dataframe[0].value["run_id"])
    assert not [t for t in at.text_input if t.label == "Your runs folder"]
    assert "dir" not in at.query_params
    monkeypatch.setenv("DYNAMICS_READONLY", "0")  # the same link on a private instance does open the folder
    at = _page("pages/1_Runs.py", {"dir": str(other)})
    assert "secret-run" in list(at.dataframe[0].value["run_id"])


def _open_train_form(at: AppTest) -> AppTest:
    """The sidebar's "Train a small run", opened as a click does (its form is built only while open)."""
    if not [b for b in at.button if b.label == "Train"]:
        at.session_state["traj_page.train_open"] = True
        at.run()
    return at


def _train(at: AppTest, *, folder: str = "", width: int | None = None) -> AppTest:
    at = _open_train_form(at)
    (box,) = [t for t in at.text_input if t.label == "into folder"]
    box.set_value(folder)
    if width is not None:
        (w,) = [s for s in at.select_slider if s.label == "width n"]
        w.set_value(width)
    (submit,) = [b for b in at.button if b.label == "Train"]
    return submit.click().run()


def test_training_into_the_bundled_runs_is_refused(hosted_env):
    before = _tree(hosted_env)
    at = _train(_page("pages/2_Trajectories.py"), folder=str(hosted_env))
    assert not at.exception
    (err,) = at.error
    assert err.value.startswith("Cannot train: ") and "read-only on this shared instance" in err.value
    at = _train(at, folder=str(hosted_env / "w64-d4"))  # inside it, too
    assert "read-only on this shared instance" in at.error[0].value
    at = _train(at, folder="/tmp/anywhere")  # and any other folder of the server
    assert "only your session's temporary folder is writable" in at.error[0].value
    assert _tree(hosted_env) == before


def test_training_above_the_cap_or_when_off_is_refused(hosted_env, monkeypatch):
    at = _train(_page("pages/2_Trajectories.py"), width=512)
    assert "width=512 is above this shared instance's cap 256" in at.error[0].value
    monkeypatch.setenv("DYNAMICS_TRAIN_CAP", "0")
    at = _train(_page("pages/2_Trajectories.py"))
    assert any("Training is off on this shared instance" in c.value for c in at.caption)
    assert "training from the page is off" in at.error[0].value


def test_an_upload_folder_inside_the_bundled_runs_is_refused(hosted_env, monkeypatch):
    monkeypatch.setenv("DYNAMICS_UPLOAD_DIR", str(hosted_env / "uploads"))
    at = _page("pages/6_Upload.py")
    at.file_uploader[0].set_value(("log.csv", b"step,layer,metric,value\n0,0,h_sq,1\n", "text/csv")).run()
    assert not at.exception
    (err,) = at.error
    assert "`log.csv` was not imported" in err.value and "upload folder is inside its read-only runs" in err.value
    assert str(hosted_env) not in err.value  # no server path reaches the visitor
    assert not (hosted_env / "uploads").exists()


def test_hosted_session_folders_expire_after_30_minutes_on_any_page(hosted_env, tmp_path):
    from dashboard.uploads import PREFIX
    base = tmp_path / "uploads"
    old, fresh = base / f"{PREFIX}old", base / f"{PREFIX}fresh"
    for d in (old, fresh):
        d.mkdir(parents=True)
    forty_min_ago = time.time() - 40 * 60
    os.utime(old, (forty_min_ago, forty_min_ago))
    _page("pages/1_Runs.py")
    assert not old.exists() and fresh.exists()


@pytest.mark.slow
def test_training_within_the_cap_goes_to_the_session_folder(hosted_env, tmp_path):
    from dashboard import train_form
    before = _tree(hosted_env)
    at = _open_train_form(_page("pages/2_Trajectories.py"))
    (box,) = [t for t in at.text_input if t.label == "into folder"]
    box.set_value("")
    for label, value in (("width n", 16), ("depth L", 2)):
        next(s for s in at.select_slider if s.label == label).set_value(value)
    next(n for n in at.number_input if n.label == "steps").set_value(2)
    at = next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception and not at.error
    (run_dir,) = at.session_state["dashboard.train_jobs"]
    assert Path(run_dir).parent.parent == tmp_path / "uploads"  # uploads/session-XXXX/<run>
    assert train_form.wait(run_dir)["status"] == "complete"
    assert _tree(hosted_env) == before


def test_a_file_url_runs_root_is_mirrored_read_only(hosted_env, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, hosted_env.as_uri())  # file:///...
    hosting._MIRRORS.clear()
    at = _page("pages/1_Runs.py")
    assert sorted(at.dataframe[0].value["run_id"]) == ["w128-d4", "w64-d4"]
    (mirror,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert sorted(p.name for p in (mirror / "w64-d4").iterdir()) == sorted(p.name for p in (hosted_env / "w64-d4").iterdir()
                                                                            if p.name in hosting.RUN_FILES)
    with pytest.raises(hosting.ReadOnlyError):
        hosting.refuse_write(mirror / "w64-d4")
    monkeypatch.setenv("DYNAMICS_REMOTE_MAX_MB", "0.001")
    hosting._MIRRORS.clear()
    at = _page("pages/1_Runs.py")
    assert any("over the 0.001 MB cap" in e.value for e in at.error)


def test_config_keeps_xsrf_on_and_sets_the_upload_limit():
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["enableXsrfProtection"] is True
    assert cfg["server"].get("enableCORS", True) is True  # XSRF needs CORS protection on
    assert cfg["server"]["maxUploadSize"] == 200
    assert "dynamics" not in cfg  # Streamlit warns on unknown sections: hosted mode lives in env / secrets


def _dockerfile() -> dict[str, list[str]]:
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


def test_dockerfile_slim_cpu_torch_non_root_health_check_hosted():
    d = _dockerfile()
    assert d["FROM"] == ["python:3.11-slim"]
    assert any("torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in r for r in d["RUN"])
    assert any("-r requirements.txt -c constraints.txt" in r for r in d["RUN"])
    assert d["USER"] and d["USER"][-1] not in ("root", "0")
    assert "/_stcore/health" in d["HEALTHCHECK"][0] and "curl" not in d["HEALTHCHECK"][0]
    assert "DYNAMICS_READONLY=1" in " ".join(d["ENV"])
    sh, c, line = json.loads(d["CMD"][0])
    assert (sh, c) == ("sh", "-c") and line.startswith("python -m dashboard.settings && exec streamlit run app.py ")
    assert shlex.split(line.split("exec ", 1)[1]) == [
        "streamlit", "run", "app.py", "--server.address", "0.0.0.0", "--server.port", "8501", "--server.headless",
        "true", "--server.maxUploadSize", "50", "--client.showErrorDetails", "none"]
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".streamlit/secrets.toml" in ignored and ".git" in ignored


@pytest.mark.slow
def test_the_image_command_serves_and_its_health_check_passes(runs_dir, tmp_path):
    """The Dockerfile's CMD and HEALTHCHECK, run here with the image's ENV (loopback and a free port in place
    of 0.0.0.0:8501). No Docker engine on this machine: the build itself is not exercised."""
    d, port = _dockerfile(), free_port()
    sh, c, line = json.loads(d["CMD"][0])  # sh -c "python -m dashboard.settings && exec streamlit run …"
    line = line.replace("0.0.0.0", "127.0.0.1").replace("8501", str(port)).replace("python ", f"{sys.executable} ")
    cmd = [sh, c, line.replace("exec streamlit ", f"exec {sys.executable} -m streamlit ")]
    env_pairs = dict(kv.split("=", 1) for r in d["ENV"] for kv in shlex.split(r))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMICS_")} | env_pairs | {
        DATA_ENV: str(runs_dir), "DYNAMICS_UPLOAD_DIR": str(tmp_path / "up"), "DYNAMICS_CACHE_DIR": str(tmp_path / "c")}
    check = shlex.split(d["HEALTHCHECK"][0].split("CMD", 1)[1].replace("8501", str(port)))
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd,
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, ok = time.monotonic() + 60, False
        while time.monotonic() < deadline and proc.poll() is None and not ok:
            time.sleep(0.5)
            ok = subprocess.run([sys.executable if a == "python" else a for a in check], env=env,
                                capture_output=True, timeout=10).returncode == 0
        assert ok, (tmp_path / "serve.log").read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
            assert r.read() == b"ok"
    finally:
        stop_server(proc, log)
    assert "not a valid config option" not in (tmp_path / "serve.log").read_text()
