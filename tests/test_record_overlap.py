"""dynamics.record with overlap: steps after the first are recorded on a background thread from a private copy
of the model taken at the call, while the user's loop trains on. The run must hold exactly the numbers of a run
recorded in the training thread, the training must not change, and errors must not be lost."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

import dynamics
from dynamics.runs.probe_hooks import ProbeHooks
from dynamics.runs.store import read_kernels, read_meta, read_metrics, read_neurons

D, N, DEPTH, P = 5, 24, 4, 6


class Res(nn.Module):
    """h + W2 relu(BN(W1 h)) / depth with a dropout: running statistics (buffers) that training changes, and
    randomness the eval-mode probe pass must not use."""

    def __init__(self):
        super().__init__()
        self.w1, self.w2 = nn.Linear(N, N), nn.Linear(N, N)
        self.bn, self.drop = nn.BatchNorm1d(N), nn.Dropout(0.2)

    def forward(self, h):
        return h + self.w2(self.drop(torch.relu(self.bn(self.w1(h))))) / DEPTH


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, N), *[Res() for _ in range(DEPTH)], nn.Linear(N, 3))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, D, generator=g), torch.randn(64, 3, generator=g)


def _run(tmp_path, name: str, overlap: bool, steps: int = 8, change=None, autocast: bool = False, **kw):
    """The user's loop, recording every step before its update (the copy must be taken at the call: the update
    right after it changes the weights). Returns the losses, the final weights and the threads that ran
    each probe pass."""
    model = _model()
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    threads, losses = [], []
    run = ProbeHooks.run

    def spy(self, *a, **k):
        threads.append(threading.current_thread().name)
        return run(self, *a, **k)

    torch.manual_seed(123)  # the dropout stream: recording must not draw from it
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ProbeHooks, "run", spy)
        with dynamics.record(model, blocks=list(model[1:DEPTH + 1]), probe=x[:P], out=tmp_path, name=name,
                             act="relu", overlap=overlap, **kw) as rec:
            for t in range(steps):
                if change is not None:
                    opt = change(t, model, opt)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    loss = (model(x) - y).float().pow(2).mean()
                    rec.step(t, loss=loss.detach())  # a tensor: read at the call
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
    return losses, [p.detach().clone() for p in model.parameters()], threads


def _same_run(a, b):
    for read, keys in ((read_metrics, ["metric", "layer", "step"]),
                       (read_kernels, ["kind", "layer", "step", "i", "j"]),
                       (read_neurons, ["layer", "step", "probe", "quantile"])):
        fa, fb = (read(r).sort_values(keys).reset_index(drop=True) for r in (a, b))
        assert len(fa) == len(fb) > 0
        assert fa[keys].equals(fb[keys])
        np.testing.assert_array_equal(fa["value"].to_numpy(), fb["value"].to_numpy())


def test_overlap_records_the_same_numbers_and_leaves_training_unchanged(tmp_path):
    lo, wo, to = _run(tmp_path, "on", True)
    lf, wf, tf = _run(tmp_path, "off", False)
    assert to[0] == "MainThread" and all(t.startswith("dynamics-record") for t in to[1:]) and len(to) == 8
    assert set(tf) == {"MainThread"}
    assert lo == lf and all(torch.equal(a, b) for a, b in zip(wo, wf))
    _same_run(tmp_path / "on", tmp_path / "off")
    moves = read_metrics(tmp_path / "on", metrics=["h_move"])
    assert moves[moves.step == 7]["value"].min() > 0  # the copies followed training (moves are not all zero)
    assert read_meta(tmp_path / "on")["status"] == "complete"
    loss = read_metrics(tmp_path / "on", metrics=["loss"]).sort_values("step")["value"].to_numpy()
    np.testing.assert_allclose(loss, lo, rtol=1e-7)


def test_a_model_changed_between_steps_is_copied_again(tmp_path):
    """A new head without a bias (one parameter fewer) at step 3: that step is recorded in the training thread, the next ones from a
    new copy; a parameter replaced by one of the same shape is simply copied from."""
    def change(t, model, opt):
        if t == 3:
            torch.manual_seed(7)
            model[-1] = nn.Linear(N, 3, bias=False)
        if t == 5:
            model[1].w1.weight = nn.Parameter(model[1].w1.weight.detach() * 0.5)
        return torch.optim.SGD(model.parameters(), lr=0.05) if t in (3, 5) else opt

    _, _, to = _run(tmp_path, "on", True, change=change)
    _run(tmp_path, "off", False, change=change)
    assert [t == "MainThread" for t in to] == [True, False, False, True, False, False, False, False]
    _same_run(tmp_path / "on", tmp_path / "off")


def test_a_model_that_cannot_be_copied_is_recorded_in_the_training_thread(tmp_path):
    def change(t, model, opt):
        if t == 0:
            model[2].lock = threading.Lock()  # deepcopy cannot copy a lock
        return opt

    _, _, to = _run(tmp_path, "on", True, change=change)
    _run(tmp_path, "off", False, change=change)
    assert set(to) == {"MainThread"}
    assert any("could not be copied" in n for n in read_meta(tmp_path / "on")["notes"])
    _same_run(tmp_path / "on", tmp_path / "off")


@pytest.mark.parametrize("steps", [3, 4])
def test_a_background_error_is_raised_and_marks_the_run_failed(tmp_path, steps):
    """Step 2's pass fails on the background thread: the error comes out of the next step (steps=4) or of
    close (steps=3), the run is kept as failed with it, and steps 0 and 1 are in it."""
    calls = []

    def output(out):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the probe pass failed")
        return out[:, 0]

    with pytest.raises(RuntimeError, match="the probe pass failed"):
        _run(tmp_path, "bad", True, steps=steps, output=output)
    meta = read_meta(tmp_path / "bad")
    assert meta["status"] == "failed" and "the probe pass failed" in meta["error"]
    assert sorted(read_metrics(tmp_path / "bad", metrics=["h_sq"])["step"].unique()) == [0, 1]


def test_the_default_overlaps_small_cpu_models_on_a_multicore_machine(tmp_path, monkeypatch):
    import dynamics.runs.recorder as R
    monkeypatch.setattr(R, "usable_cores", lambda: 4)
    _, _, auto = _run(tmp_path, "auto", None, steps=3)
    assert auto[0] == "MainThread" and all(t.startswith("dynamics-record") for t in auto[1:])
    monkeypatch.setattr(R, "OVERLAP_MAX_BYTES", 1000)  # the model is larger: no copy
    _, _, big = _run(tmp_path, "big", None, steps=3)
    monkeypatch.setattr(R, "OVERLAP_MAX_BYTES", 2 ** 30)
    monkeypatch.setattr(R, "usable_cores", lambda: 1)   # one core: nothing to overlap with
    _, _, one = _run(tmp_path, "one", None, steps=3)
    assert set(big) == set(one) == {"MainThread"}


def test_steps_under_autocast_are_recorded_in_the_training_thread(tmp_path):
    """Autocast is per thread: a background step would measure float32 where the caller measures bfloat16."""
    _, _, to = _run(tmp_path, "on", True, steps=4, autocast=True)
    _run(tmp_path, "off", False, steps=4, autocast=True)
    assert set(to) == {"MainThread"}
    _same_run(tmp_path / "on", tmp_path / "off")
    _run(tmp_path, "float32", False, steps=4)
    h = [read_metrics(tmp_path / r, metrics=["h_sq"]).sort_values(["step", "layer"])["value"].to_numpy()
         for r in ("on", "float32")]
    assert not np.array_equal(h[0], h[1])  # bfloat16 was in force: the numbers differ from float32's
