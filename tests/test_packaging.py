"""pyproject.toml: `pip install .` installs the library with the runtime requirements the README installs, its
own distribution name, the `dynamics` console script and extras that mirror the optional requirement files; the
guide's `dynamics.record(...)` example (docs/own-runs.md) runs from a folder outside the checkout."""
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
META = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(specs):
    return {re.split(r"[<>=!~\[ ;]", s.strip(), maxsplit=1)[0].lower() for s in specs if s.strip()}


def _requirements(name):
    return _names(line.split("#")[0] for line in (ROOT / name).read_text().splitlines()
                  if not line.strip().startswith("-r"))


def test_pyproject_declares_the_requirements_and_the_package():
    project = META["project"]
    declared = _names(project["dependencies"]) | _names(project["optional-dependencies"]["dashboard"])
    assert _requirements("requirements.txt") == declared, _requirements("requirements.txt") ^ declared
    assert "streamlit" not in _names(project["dependencies"])   # the library runs without the dashboard
    assert META["tool"]["setuptools"]["packages"]["find"]["include"] == ["dynamics*"]
    assert (ROOT / "dynamics" / "__main__.py").exists()


def test_distribution_name_is_its_own_and_extras_mirror_the_optional_files():
    project = META["project"]
    assert project["name"] != "dynamics"          # taken on the package index by an unrelated project
    extras = project["optional-dependencies"]
    for extra in ("dask", "tensorboard", "trackers"):
        assert _names(extras[extra]) == _requirements(f"requirements-{extra}.txt"), extra
    assert project["scripts"]["dynamics"].split("#")[0].strip() == "dynamics.__main__:main"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`pip install --no-deps .` of a copy of the package files into a fresh target (offline: no build isolation)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "dynamics", src / "dynamics", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(target), str(src)], capture_output=True, text=True)
    if r.returncode and "bdist_wheel" in r.stderr:
        pytest.skip("setuptools too old to build offline: pip install -r requirements-dev.txt")
    assert r.returncode == 0, r.stderr[-2000:]
    return target


def _outside(target, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    project = tmp_path / "my_project"
    project.mkdir()
    return env, project


def test_installed_command_runs_outside_the_checkout(installed, tmp_path):
    env, project = _outside(installed, tmp_path)
    script = installed / "bin" / "dynamics"
    assert script.exists()
    r = subprocess.run([sys.executable, str(script), "--help"], cwd=project, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "train" in r.stdout, r.stderr[-2000:]


RECORD_EXAMPLE = """
import dynamics, torch, torch.nn as nn, torch.nn.functional as F
assert "{root}" not in dynamics.__file__, dynamics.__file__

class MyBlock(nn.Module):
    def __init__(self, n):
        super().__init__(); self.lin = nn.Linear(n, n)
    def forward(self, h):
        return h + torch.relu(self.lin(h)) / 4 ** 0.5

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 64), *[MyBlock(64) for _ in range(4)], nn.Linear(64, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x_train, y_train = torch.randn(64, 32), torch.randint(0, 10, (64,))
with dynamics.record(model, blocks=list(model[1:5]), probe=x_train[:8], out="runs/", name="mine",
                     act="relu") as rec:
    for step in range(6):
        loss = F.cross_entropy(model(x_train), y_train)
        if step % 2 == 0:
            rec.step(step, loss=loss.item())
        opt.zero_grad(); loss.backward(); opt.step()
"""


def test_readme_record_example_runs_from_the_users_own_folder(installed, tmp_path):
    env, project = _outside(installed, tmp_path)
    (project / "train_mine.py").write_text(RECORD_EXAMPLE.format(root=ROOT))
    r = subprocess.run([sys.executable, "train_mine.py"], cwd=project, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    import pandas as pd
    m = pd.read_parquet(project / "runs" / "mine" / "metrics.parquet")
    assert sorted(m["step"].unique()) == [0, 2, 4]
    assert set(m.loc[m["layer"] >= 0, "layer"]) == {0, 1, 2, 3, 4}
    assert "dynamics.record(" in (ROOT / "docs" / "own-runs.md").read_text()   # the example the guide shows
