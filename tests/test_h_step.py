"""h_step, the per-step feature change |h_ℓ(t) − h_ℓ(t′)|²/n since the previous record (the coordinate check's
"ΔW x" reading), against independent computations: the trainer's equals h_move at the first step after
initialisation, and dynamics.record's equals the change of hooked block outputs across one SGD step."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

import dynamics
from dynamics.config import RunConfig
from dynamics.train import train


def _metric(run, name):
    m = pd.read_parquet(run / "metrics.parquet")
    m["metric"] = m["metric"].astype(str)
    return m[m.metric == name].pivot_table(index="step", columns="layer", values="value")


def test_trainer_h_step_is_the_change_since_the_previous_record(tmp_path):
    cfg = RunConfig(width=32, depth=3, steps=3, train_size=8, batch="full", probes=4, record_every=1, test_size=0,
                    input_dim=8, record_coupling="off", lr=0.5)
    train(cfg, tmp_path / "r", progress=False)
    step, move = _metric(tmp_path / "r", "h_step"), _metric(tmp_path / "r", "h_move")
    assert list(step.index) == [1, 2, 3]                          # none at the first record
    np.testing.assert_allclose(step.loc[1], move.loc[1], rtol=1e-6)  # the previous record is the initialisation
    assert (step.loc[3] > 0).all() and not np.allclose(step.loc[3], move.loc[3])


def test_recorder_h_step_matches_hooked_outputs_across_one_step(tmp_path):
    torch.manual_seed(0)
    blocks = [torch.nn.Linear(16, 16) for _ in range(3)]
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), *blocks, torch.nn.Linear(16, 1))
    x, y = torch.randn(32, 8), torch.randn(32, 1)
    probe = x[:4]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def outputs():
        hs = []
        hooks = [b.register_forward_hook(lambda m, i, o: hs.append(o.detach().clone())) for b in blocks]
        hooks.append(blocks[0].register_forward_pre_hook(lambda m, i: hs.append(i[0].detach().clone())))
        with torch.no_grad():
            model(probe)
        for h in hooks:
            h.remove()
        return hs  # the pre-hook runs first: h_0 = the first block's input, then each block's output

    with dynamics.record(model, blocks=blocks, probe=probe, out=tmp_path, name="mine", overlap=False) as rec:
        for t in range(2):
            if t == 1:
                after = outputs()
            rec.step(t)
            if t == 0:
                before = outputs()
            loss = ((model(x) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    expected = [float(((a - b) ** 2).mean()) for a, b in zip(after, before)]
    np.testing.assert_allclose(_metric(tmp_path / "mine", "h_step").loc[1].to_numpy(), expected, rtol=1e-5)
