"""The trainer's overlap: each record after the first runs its probe pass in the loop and its metrics, coupling
update, kernels and quantiles on a background thread while the next step trains. The run's files must be the
ones recorded without overlap, to the bit, and a background error must end the run as failed."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from dynamics import train as T
from dynamics.config import RunConfig
from dynamics.runs.store import read_kernels, read_meta, read_metrics, read_neurons

TINY = dict(width=32, depth=4, steps=10, record_every=1, train_size=16, batch=8, probes=4, test_size=8,
            test_every=3, device="cpu")


def _threads(monkeypatch) -> list[str]:
    seen: list[str] = []
    write = T._Recorder._write

    def spy(self, step, s):
        seen.append(threading.current_thread().name)
        return write(self, step, s)

    monkeypatch.setattr(T._Recorder, "_write", spy)
    return seen


@pytest.mark.parametrize("coupling", ["off", "on"])
def test_overlapped_records_are_the_in_loop_records(tmp_path, monkeypatch, coupling):
    cfg = RunConfig(**TINY, record_coupling=coupling, coupling_window=3 if coupling == "on" else 0)
    seen = _threads(monkeypatch)
    T.train(cfg, tmp_path / "on", overlap=True)
    on, seen[:] = list(seen), []
    T.train(cfg, tmp_path / "off", overlap=False)
    assert on[0] == "MainThread" and all(t.startswith("dynamics-train-record") for t in on[1:]) and len(on) == 11
    assert set(seen) == {"MainThread"}
    for read, keys in ((read_metrics, ["metric", "layer", "step"]),
                       (read_kernels, ["kind", "layer", "step", "i", "j"]),
                       (read_neurons, ["layer", "step", "probe", "quantile"])):
        a, b = (read(tmp_path / r).sort_values(keys).reset_index(drop=True) for r in ("on", "off"))
        assert len(a) == len(b) > 0 and a[keys].equals(b[keys])
        np.testing.assert_array_equal(a["value"].to_numpy(), b["value"].to_numpy())
    metrics = set(read_metrics(tmp_path / "on")["metric"])
    assert {"loss", "grad_norm", "test_loss", "h_move", "probe_loss"} <= metrics
    assert ("coupling_fwd" in metrics) == (coupling == "on")
    meta = read_meta(tmp_path / "on")
    assert meta["status"] == "complete" and meta["steps_done"] == 10


def test_a_background_error_fails_the_run_and_is_raised(tmp_path, monkeypatch):
    calls = []
    layer_metrics = T.P.layer_metrics

    def failing(s, s0, depth, prev=None):
        calls.append(threading.current_thread().name)
        if len(calls) == 4:
            raise RuntimeError("metrics failed")
        return layer_metrics(s, s0, depth, prev)

    monkeypatch.setattr(T.P, "layer_metrics", failing)
    with pytest.raises(RuntimeError, match="metrics failed"):
        T.train(RunConfig(**TINY), tmp_path / "r", overlap=True)
    assert calls[3].startswith("dynamics-train-record")
    meta = read_meta(tmp_path / "r")
    assert meta["status"] == "failed" and "metrics failed" in meta["error"]
    assert sorted(read_metrics(tmp_path / "r", metrics=["h_sq"])["step"].unique()) == [0, 1, 2]


def test_overlap_is_on_by_default_only_with_a_core_to_spare(monkeypatch):
    import torch
    cpu = torch.device("cpu")
    monkeypatch.setattr(T, "usable_cores", lambda: 4)
    monkeypatch.setattr(T.torch, "get_num_threads", lambda: 2)
    assert T.overlap_default(cpu) and not T.overlap_default(torch.device("meta"))
    monkeypatch.setattr(T.torch, "get_num_threads", lambda: 4)
    assert not T.overlap_default(cpu)


def test_sweep_workers_do_not_overlap(tmp_path, monkeypatch):
    """Sweep workers share the cores, each pinned to its share of torch threads: a background thread in each
    would oversubscribe them, so run_task trains without overlap."""
    from dynamics.sweep import execute
    got = []
    monkeypatch.setattr(T, "train", lambda cfg, work, **kw: got.append(kw.get("overlap")) or work)
    task = execute.Task(name="p0", config=RunConfig(**TINY).to_dict(), point={}, out=str(tmp_path))
    execute.run_task(task)
    assert got == [False]
