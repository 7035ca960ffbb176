"""dynamics.record on a network that is not ours: an nn.Sequential of residual blocks trained by the user's own
SGD loop. h_sq and g_sq are checked against a hand computation; the recorder must not change the training."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import dynamics
from dynamics.runs.store import KERNELS, read_kernels, read_meta, read_metrics, read_neurons

D, N, DEPTH, P = 5, 16, 3, 4


class Res(nn.Module):
    """h + W2 relu(W1 h) / depth, with a dropout the recorder must not trigger."""

    def __init__(self):
        super().__init__()
        self.w1, self.w2, self.drop = nn.Linear(N, N), nn.Linear(N, N), nn.Dropout(0.1)

    def forward(self, h):
        return h + self.w2(self.drop(torch.relu(self.w1(h)))) / DEPTH


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, N), *[Res() for _ in range(DEPTH)], nn.Linear(N, 2)).double()


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, D, generator=g, dtype=torch.float64), torch.randn(32, 2, generator=g, dtype=torch.float64)


def _train(model, rec=None, steps: int = 6):
    """The user's loop: plain SGD, dropout on, recording every other step."""
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(123)  # the dropout stream
    for t in range(steps + 1):
        loss = (model(x) - y).pow(2).mean()
        if rec is not None and t % 2 == 0:
            rec.step(t, loss=loss.item())
        if t < steps:
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def _hand(model, probe):
    """h_ℓ and ĝ_ℓ = n ∂f₁/∂h_ℓ by re-running the tail of the network from each h_ℓ (eval mode)."""
    model.eval()
    hs = [model[0](probe)]
    for k in range(1, DEPTH + 1):
        hs.append(model[k](hs[-1]))
    gs = []
    for ell, h in enumerate(hs):
        h = h.detach().requires_grad_(True)
        out = h
        for k in range(ell + 1, DEPTH + 2):
            out = model[k](out)
        gs.append(torch.autograd.grad(out[:, 0].sum(), h)[0] * N)
    model.train()
    return [h.detach() for h in hs], gs


def test_record_matches_hand_computation_and_leaves_training_unchanged(tmp_path):
    model = _model()
    probe = _data()[0][:P]
    h0, g0 = _hand(model, probe)
    with dynamics.record(model, blocks=list(model[1:DEPTH + 1]), probe=probe, out=tmp_path, name="mine",
                         act="relu") as rec:
        _train(model, rec)
    meta = read_meta(tmp_path / "mine")
    assert (meta["kind"], meta["status"], meta["config"]["depth"]) == ("imported", "complete", DEPTH)
    assert meta["source"]["format"] == "record" and meta["config"]["width"] == N
    df = read_metrics(tmp_path / "mine")
    assert sorted(df["step"].unique()) == [0, 2, 4, 6]
    hsq = df[(df.metric == "h_sq") & (df.step == 0)].sort_values("layer")
    assert list(hsq.layer) == list(range(DEPTH + 1))
    np.testing.assert_allclose(hsq.value, [float(h.pow(2).mean()) for h in h0], rtol=1e-12)
    gsq = df[(df.metric == "g_sq") & (df.step == 0)].sort_values("layer")
    np.testing.assert_allclose(gsq.value, [float(g.pow(2).mean()) for g in g0], rtol=1e-12)
    # the moves are relative to the first recorded step, and training moved the features
    hm = df[df.metric == "h_move"]
    assert (hm[hm.step == 0].value == 0).all() and (hm[hm.step == 6].value > 0).all()
    assert {"phi_sq", "fg_cov", "diversity", "g_move"} <= set(df.metric)
    loss = df[df.metric == "loss"]
    assert list(loss.layer) == [-1] * 4
    # the recorder's probe pass changed neither the parameters' path nor the dropout stream
    twin = _train(_model())
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert model.training and all(m.training for m in model.modules())
    # kernels and neuron quantiles in the run format; H's diagonal mean is h_sq
    k = read_kernels(tmp_path / "mine", kinds=["H"], steps=[0], layers=[2])
    assert len(k) == P * P
    np.testing.assert_allclose(k[k.i == k.j].value.mean(), hsq.value.iloc[2], rtol=1e-12)
    assert set(read_kernels(tmp_path / "mine").kind) == {"H", "Phi", "G"}
    assert len(read_neurons(tmp_path / "mine", steps=[0])) == (DEPTH + 1) * P * 9


def test_record_by_pattern_without_act_skips_phi_metrics(tmp_path):
    model = _model()
    probe = _data()[0][:P]
    rec = dynamics.record(model, pattern=r"[1-3]", probe=probe, out=tmp_path, name="pat")
    rec.step(0)
    rec.close()
    df = read_metrics(tmp_path / "pat")
    assert "phi_sq" not in set(df.metric) and "fg_cov" not in set(df.metric)
    assert "Phi" not in set(read_kernels(tmp_path / "pat").kind)
    h0, _ = _hand(model, probe)
    np.testing.assert_allclose(df[df.metric == "h_sq"].sort_values("layer").value,
                               [float(h.pow(2).mean()) for h in h0], rtol=1e-12)
    assert not model[1]._forward_hooks  # hooks removed on close


def test_record_reports_bad_arguments(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="no module name"):
        dynamics.record(model, pattern="blocks", probe=torch.zeros(2, D), out=tmp_path, name="x")
    with pytest.raises(ValueError, match="exactly one"):
        dynamics.record(model, probe=torch.zeros(2, D), out=tmp_path, name="x")
    with pytest.raises(ValueError, match="named twice"):
        dynamics.record(model, blocks=[model[1], model[1]], probe=torch.zeros(2, D), out=tmp_path, name="x")
    shared = Res().double()
    reuse = nn.Sequential(nn.Linear(D, N), shared, shared, nn.Linear(N, 2)).double()  # one block applied twice
    rec = dynamics.record(reuse, blocks=[shared], probe=torch.zeros(2, D, dtype=torch.float64),
                          out=tmp_path, name="twice")
    with pytest.raises(RuntimeError, match="block calls"):
        rec.step(0)
    rec.close("failed")
    assert not (tmp_path / "twice").exists()  # nothing was recorded: nothing is left behind


def test_a_failing_loop_marks_the_run_failed(tmp_path):
    model = _model()
    with pytest.raises(ZeroDivisionError):
        with dynamics.record(model, blocks=list(model[1:4]), probe=_data()[0][:P], out=tmp_path, name="f") as rec:
            rec.step(0)
            1 / 0
    assert read_meta(tmp_path / "f")["status"] == "failed"
    assert KERNELS  # files exist and are readable
    assert len(read_metrics(tmp_path / "f", steps=[0])) > 0


@pytest.mark.parametrize("act", ["relu", None])
def test_stacked_layers_equal_the_layer_by_layer_path(tmp_path, act):
    """The fast path (all layers stacked) writes the same rows as the layer-by-layer path."""
    from dynamics.runs.recorder import Recorder
    probe = _data()[0][:P]
    runs = {}
    for batched in (True, False):
        model = _model()
        rec = dynamics.record(model, blocks=list(model[1:DEPTH + 1]), probe=probe, out=tmp_path,
                              name=f"b{batched}", act=act)
        rec.batched = batched
        with rec:
            _train(model, rec)
        runs[batched] = rec.run_dir
    assert Recorder.batched is True
    for read, keys in ((read_metrics, ["metric", "layer", "step"]), (read_kernels, ["kind", "layer", "step", "i", "j"]),
                       (read_neurons, ["layer", "step", "probe", "quantile"])):
        fast, slow = (read(runs[b]).sort_values(keys).reset_index(drop=True) for b in (True, False))
        assert len(fast) == len(slow) > 0
        pd.testing.assert_frame_equal(fast, slow, check_exact=False, rtol=1e-12, atol=1e-14)


def test_neuron_quantiles_equal_torch_quantile():
    from dynamics import probes as Pr
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for n in (1, 2, 7, 512):
            h = torch.randn(3, 4, n, generator=g).to(dtype)
            if n > 1:
                h[1, 2, 0] = float("nan")  # a diverged row: NaN, as torch.quantile gives
            ref = torch.quantile(h, torch.tensor(Pr.QUANTILES, dtype=dtype), dim=-1).permute(1, 2, 0)
            got = Pr.neuron_quantiles(Pr.ProbeState(h=h, g_hat=None, phi_h=None, a=None, f=None))
            assert got.shape == ref.shape and torch.equal(got.isnan(), ref.isnan())
            assert torch.equal(got.nan_to_num(), ref.nan_to_num())  # bit-exact
