"""The coupling's sliding window (issue #19): the fast slide (a block Householder downdate of the basis, no QR
of the window and no W(0)·Q) records the same numbers as rebuilding the window's bases from its vectors, and
as dynamics.coupling_reference on the window's histories, over many slides; rank-deficient histories
(repeated probes, frozen features) fall back to the rebuild and come back to the fast path."""
import pytest
import torch

from dynamics import coupling_reference as C
from dynamics.probes import CouplingTracker

NAMES = ("coupling_fwd", "coupling_bwd", "coupling_fwd_frac", "coupling_bwd_frac", "coupling_acc",
         "coupling_fwd_chance", "coupling_bwd_chance", "coupling_acc_chance")


def _walk(L, P, n, steps, g, step_size=0.05, frozen=(), repeat=False):
    """Slowly moving probe vectors (as features in training: nearly collinear across steps). `frozen`
    steps repeat the previous step's vectors exactly; `repeat` makes probe 1 a copy of probe 0."""
    x = torch.randn(L, P, n, generator=g, dtype=torch.float64)
    out = []
    for t in range(steps):
        if t not in frozen:
            x = x + step_size * torch.randn(L, P, n, generator=g, dtype=torch.float64)
        v = x.clone()
        if repeat:
            v[:, 1] = v[:, 0]
        out.append(v)
    return out


def _run(W0, us, gs, window, fast, branch=0.6):
    tr = CouplingTracker(W0, window=window, decoupled=False, branch=branch)
    if not fast:
        tr.fwd.refresh = tr.bwd.refresh = 0  # every slide rebuilds from the window's vectors
    else:
        tr.fwd.refresh = tr.bwd.refresh = 10 ** 9
    outs = [tr.update(u.to(W0.dtype), g.to(W0.dtype)) for u, g in zip(us, gs)]
    return tr, outs


def _close(run_a, run_b, rel):
    """Every metric at every step within rel, relative to the metric's largest value over the run (a split
    that is zero up to rounding, 1e-31 against 1e-32, is equal)."""
    for name in NAMES:
        scale = max(o[name][0].abs().max().item() for o in run_b)
        for a, b in zip(run_a, run_b):
            x, y = a[name][0], b[name][0]
            assert torch.allclose(x, y, rtol=rel, atol=rel * scale), (name, x, y)


@pytest.mark.parametrize("case", ["generic", "repeated_probe", "frozen_steps"])
def test_fast_slides_equal_the_rebuild_and_the_reference(case):
    g = torch.Generator().manual_seed(11)
    L, n, P, window, steps = 2, 40, 3, 4, 40
    W0 = torch.randn(L, n, n, generator=g, dtype=torch.float64)
    kw = {"repeated_probe": {"repeat": True}, "frozen_steps": {"frozen": {9, 10, 11, 25}}}.get(case, {})
    us, gs = _walk(L, P, n, steps, g, **kw), _walk(L, P, n, steps, g, **kw)
    fast, fo = _run(W0, us, gs, window, fast=True)
    slow, so = _run(W0, us, gs, window, fast=False)
    _close(fo, so, 1e-8)
    if case == "generic":  # the fast path did every slide: no rebuild at all
        assert fast.fwd.C is not None and fast.fwd.slides == steps - window
    elif case == "repeated_probe":
        assert fast.fwd.C is None  # a dropped direction: every slide rebuilt, as before
    else:  # frozen steps drop directions; once they leave the window the fast path resumes
        assert fast.fwd.C is not None and 0 < fast.fwd.slides < steps - window
    # against the reference decomposition on the last split's window (steps t−window..t−1)
    t = steps - 1
    hist = lambda vs, k: torch.cat([v[k].T for v in vs], dim=1)
    for k in range(L):
        ref = C.coupling_stats(C.forward_decomposition(W0[k], hist(us[t - window:t], k), hist(gs[t - window:t], k),
                                                       us[t][k].T))
        assert fo[-1]["coupling_fwd"][0][k].item() == pytest.approx(ref["coupling"], rel=1e-7)
        refb = C.coupling_stats(C.backward_decomposition(W0[k], hist(us[t - window:t + 1], k),
                                                         hist(gs[t - window:t], k), gs[t][k].T))
        assert fo[-1]["coupling_bwd"][0][k].item() == pytest.approx(refb["coupling"], rel=1e-7)


def test_fast_slides_stay_exact_over_many_slides_and_in_float32():
    """300 fast slides without a refresh agree with the rebuild to 1e-8 (float64 matrices) and to 1e-5 with a
    float32 W(0), whose messages are rounded to float32 either way."""
    g = torch.Generator().manual_seed(12)
    L, n, P, window, steps = 2, 48, 4, 5, 306
    us, gs = _walk(L, P, n, steps, g, step_size=0.02), _walk(L, P, n, steps, g, step_size=0.02)
    W0 = torch.randn(L, n, n, generator=g, dtype=torch.float64)
    fast, fo = _run(W0, us, gs, window, fast=True)
    _, so = _run(W0, us, gs, window, fast=False)
    assert fast.fwd.slides == fast.bwd.slides == steps - window
    _close(fo, so, 1e-8)
    W32 = W0.float()
    _, fo32 = _run(W32, us, gs, window, fast=True)
    _, so32 = _run(W32, us, gs, window, fast=False)
    _close(fo32, so32, 1e-5)
    # the fast basis is still orthonormal and spans the window
    Q = fast.fwd.Q[0]
    assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1], dtype=Q.dtype), atol=1e-10)
    V = torch.cat([u[0] for u, _ in fast.raw], 1)  # raw holds (L, n, P)
    assert (V - Q @ (Q.T @ V)).norm() <= 1e-9 * V.norm()
