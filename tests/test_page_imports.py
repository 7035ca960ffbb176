"""A page process imports only what the pages draw: no torch (training and the recorder load it on first use).

One fresh interpreter (a server process) opens the home page and then every page with AppTest on the bundled
runs, and reports which heavy modules it holds; this test's own process already holds torch, hence the child.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_CHILD = """
import json, os, sys, time
from pathlib import Path
from streamlit.testing.v1 import AppTest
root = Path(sys.argv[1])
at = AppTest.from_file(str(root / "app.py"), default_timeout=120).run()
out = {"app.py": {"exception": [str(e.value) for e in at.exception], "torch": "torch" in sys.modules}}
for page in sorted(p.name for p in (root / "pages").glob("*.py")):
    at.switch_page(f"pages/{page}")
    at.run()
    out[page] = {"exception": [str(e.value) for e in at.exception], "torch": "torch" in sys.modules}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_no_page_imports_torch(tmp_path):
    env = {**__import__("os").environ, "DYNAMICS_DATA_DIR": str(ROOT / "data")}
    env.pop("DYNAMICS_RUNS", None)
    res = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    pages = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(pages) >= 2
    for page, got in pages.items():
        assert not got["exception"], (page, got["exception"])
        assert not got["torch"], f"{page} imported torch"
