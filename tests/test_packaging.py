"""pyproject.toml: `pip install .` installs the library with the runtime requirements the README installs."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _names(specs):
    return {re.split(r"[<>=!~\[ ;]", s.strip(), maxsplit=1)[0].lower() for s in specs if s.strip()}


def test_pyproject_declares_the_requirements_and_the_package():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    req = [line.split("#")[0] for line in (ROOT / "requirements.txt").read_text().splitlines()]
    declared = _names(project["dependencies"]) | _names(sum(project["optional-dependencies"].values(), []))
    assert _names(req) == declared, _names(req) ^ declared
    assert "streamlit" not in _names(project["dependencies"])   # the library runs without the dashboard
    assert meta["tool"]["setuptools"]["packages"]["find"]["include"] == ["dynamics*"]
    assert (ROOT / "dynamics" / "__main__.py").exists()
