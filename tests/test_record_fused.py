"""The trainer's record steps trace the probes as extra rows of the training batch (issue #19): the probe state
equals a separate probe pass (`probe_pass`: forward with trace=True + autograd.grad), and the parameters get
the gradient of the batch loss alone, so recording does not change training."""
import dataclasses

import pytest
import torch

from dynamics import probes as P
from dynamics.config import RunConfig
from dynamics.model import ResNet
from dynamics.runs import store
from dynamics.train import loss_fn, train

BASE = RunConfig(width=24, depth=5, batch=6, probes=3, steps=3, train_size=16, test_size=0, dtype="float64",
                 device="cpu")
CASES = {"reused": {}, "two-layer": {"block": 2}, "decoupled": {"backward": "decoupled"},
         "decoupled two-layer": {"backward": "decoupled", "block": 2}, "sp tanh": {"param": "sp", "act": "tanh"},
         "plain linear readout": {"param": "plain", "readout": "linear"}, "frozen hidden": {"trained": ("readout",)},
         "nothing trained": {"trained": ()}, "xent": {"loss": "xent", "classes": 3}}


def _setup(kw, dtype):
    cfg = dataclasses.replace(BASE, **kw)
    g = torch.Generator().manual_seed(3)
    model = ResNet(cfg, 7, 3, g, dtype)
    x, probes = torch.randn(6, 7, generator=g, dtype=dtype), torch.randn(3, 7, generator=g, dtype=dtype)
    y, labels = torch.randn(6, 3, generator=g, dtype=dtype), torch.randint(0, 3, (6,), generator=g)
    return cfg, model, x, probes, y, labels


def _grads(model):
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("dtype,rel", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("case", list(CASES))
def test_traced_probes_equal_a_probe_pass_and_leave_the_gradient_alone(case, dtype, rel):
    cfg, model, x, probes, y, labels = _setup(CASES[case], dtype)
    lab = labels if cfg.loss == "xent" else None
    ref = P.probe_pass(model, probes)
    loss = loss_fn(cfg, model(x), y, lab)
    if any(p.requires_grad for p in model.parameters()):
        loss.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    f, fp, hs, a_s = model.forward_with_probes(x, probes)
    fused_loss = loss_fn(cfg, f, y, lab)
    (fused_loss + fp[:, 0].sum()).backward()
    got = P.traced_state(model, fp, hs, a_s)
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=rel, atol=rel * b.abs().max().item())
    close(fused_loss.detach(), loss.detach())
    for name in ("h", "g_hat", "phi_h", "f") + (("a",) if cfg.block == 2 else ()):
        close(getattr(got, name), getattr(ref, name))
    assert (got.a is None) == (cfg.block == 1)
    for a, b in zip(_grads(model), want):
        assert (a is None) == (b is None)
        if b is not None:
            close(a, b)


def test_recording_does_not_change_the_losses(tmp_path):
    cfg = dataclasses.replace(BASE, steps=6, block=2, record_coupling="on")
    rec = train(cfg, tmp_path / "rec")
    plain = train(cfg, tmp_path / "plain", record_probes=False)
    a = store.read_metrics(rec, metrics=["loss"]).sort_values("step").value.to_numpy()
    b = store.read_metrics(plain, metrics=["loss"]).sort_values("step").value.to_numpy()
    assert len(a) == 7 and abs(a - b).max() <= 1e-12 * abs(b).max()
    # and the recorded probe metrics are those of a probe pass at the same parameters (step 0: the init)
    m = store.read_metrics(rec, metrics=["g_sq"])
    g0 = m[m.step == 0].sort_values("layer").value.to_numpy()
    from dynamics.data import load_task
    from dynamics.train import build
    data, _ = load_task(cfg)
    model = build(cfg, data, torch.device("cpu"))
    s = P.probe_pass(model, data.x[:cfg.probes].to(torch.float64))
    torch.testing.assert_close(torch.from_numpy(g0.copy()), P.FUNCTIONS["g_sq"](s, s, cfg.depth).double(), rtol=1e-10,
                               atol=0)
