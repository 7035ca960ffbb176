"""The limit solver on CUDA (skipped without a GPU): the same setting solved on the GPU and on the CPU agrees
within the two Monte-Carlo errors (the devices draw different noise), in float64 and float32, for a two-layer,
cross-entropy, C = 3 run; run.json says which device and dtype were used."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from dynamics.config import RunConfig
from dynamics.limit import solve_limit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CFG = RunConfig(width=64, depth=4, block=2, inner_lr_exponent=0.5, act="tanh", task="mixture", classes=3,
                loss="xent", train_size=8, probes=4, batch="full", steps=4, record_every=2, test_size=0, lr=0.5)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_agrees_with_cpu_within_monte_carlo_error(dtype):
    res = {dev: solve_limit(CFG, particles=8192, replicas=16, device=dev, dtype=dtype, seed=1)
           for dev in ("cpu", "cuda")}
    assert res["cuda"].info["device"].startswith("cuda") and res["cuda"].info["dtype"] == dtype
    zs = []
    for name in ("loss", "h_move", "a_move", "g_sq"):
        a, b = (r.metrics[(r.metrics.metric == name) & (r.metrics.step == 4)].sort_values("layer")
                for r in (res["cpu"], res["cuda"]))
        se = np.sqrt(a.stderr.to_numpy() ** 2 + b.stderr.to_numpy() ** 2)
        zs.extend((a.value.to_numpy() - b.value.to_numpy()) / se)
    assert np.max(np.abs(zs)) < 4.5, np.round(zs, 2)   # t_15 per value, ~13 values: family-wise ≈ 1%


def test_auto_device_is_cuda_when_present(tmp_path):
    from dynamics.limit.run import limit_like
    from dynamics.runs import store
    from dynamics.train import train
    fin = train(dataclasses.replace(CFG, device="cpu"), tmp_path / "fin")
    meta = store.read_meta(limit_like(fin, tmp_path, particles=256, name="lim"))
    assert meta["device"].startswith("cuda") and meta["limit"]["device"].startswith("cuda")
    assert math.isfinite(store.read_metrics(tmp_path / "lim").value.sum())
