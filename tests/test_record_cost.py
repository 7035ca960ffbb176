"""Recording-cost helpers (issue #19) keep their numbers: the trainer's gradient norm without a squared copy."""
import math

import torch

from dynamics.train import grad_norm


def test_grad_norm_equals_the_float64_norm_of_all_gradients():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(6, 64, 64, generator=g), torch.randn(64, 5, generator=g), torch.randn(7, generator=g),
             torch.tensor(3.0), 1e3 * torch.randn(2, 3, generator=g, dtype=torch.float64)]
    want = math.sqrt(sum(float(t.double().pow(2).sum()) for t in grads))
    assert abs(grad_norm(grads) - want) <= 1e-7 * want  # float32 row norms: rounding ~1e-8
    assert grad_norm([]) == 0.0
    big = torch.randn(32, 512, 512, generator=g)  # one float32 accumulation would be off by ~1e-4 here
    want = float(big.double().pow(2).sum().sqrt())
    assert abs(grad_norm([big]) - want) <= 1e-8 * want
