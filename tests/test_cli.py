"""The CLI: flags named after the config, one clear line for every bad input, nothing half-written."""
import subprocess
import sys
from pathlib import Path

import pytest

from dynamics.runs import store
from dynamics.__main__ import main

TINY = ["--width", "16", "--depth", "2", "--steps", "3", "--train-size", "32", "--batch", "8", "--probes", "2",
        "--test-size", "8", "--quiet"]


def _fails(capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        code = main(argv)
        raise SystemExit(code)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and needle in err, err
    return err


def test_train_writes_a_run(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path), "--name", "r1"]) == 0
    assert "complete" in capsys.readouterr().out
    assert store.read_meta(tmp_path / "r1")["config"]["width"] == 16
    _fails(capsys, ["train", *TINY, "--out", str(tmp_path), "--name", "r1"], "already exists")
    assert main(["train", *TINY, "--out", str(tmp_path), "--name", "r1", "--overwrite", "--act", "tanh"]) == 0
    assert store.read_meta(tmp_path / "r1")["config"]["act"] == "tanh"


@pytest.mark.parametrize("extra,needle", [
    (["--act", "swish"], "act='swish' is not supported; choose one of linear, relu"),
    (["--width", "-4"], "width must be positive"),
    (["--width", "wide"], "invalid int value"),
    (["--task", "file:/nonexistent/data.npz"], "/nonexistent/data.npz"),
    (["--task", "cifar10", "--data-dir", "/nonexistent"], "CIFAR-10"),
    (["--batch", "1000"], "larger than train_size"),
    (["--trained", "input,bias"], "unknown group"),
    (["--loss", "xent"], "classification"),
    (["--device", "cuda"] if not __import__("torch").cuda.is_available() else ["--device", "tpu"], "device"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_input_is_one_line(tmp_path, capsys, extra, needle):
    _fails(capsys, ["train", *TINY, "--out", str(tmp_path / "out"), *extra], needle)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unwritable_out(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _fails(capsys, ["train", *TINY, "--out", str(tmp_path / "file" / "runs")], "cannot write")


def test_module_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "dynamics", "train", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--train-size" in r.stdout and "--record-every" in r.stdout


def test_the_command_line_parser_leaves_torch_unloaded():
    """`python -m dynamics --help`, `sweep`'s driver, `import`: only training and solving load torch (≈2 s)."""
    code = ("import sys; from dynamics.__main__ import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'building the parser imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
