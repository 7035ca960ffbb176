"""The coupling's sliding window (issue #19): the fast slide (a block Householder downdate of the basis, no QR
of the window and no W(0)·Q) records the same numbers as rebuilding the window's bases from its vectors, and
as dynamics.coupling_reference on the window's histories, over many slides; rank-deficient histories
(repeated probes, frozen features) fall back to the rebuild and come back to the fast path."""
import pytest
import torch

from dynamics import coupling_reference as C
from dynamics.probes import CouplingTracker

@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: thread hand-offs cost more than the work (×15 on a loaded 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
        assert fast.fwd.fast and fast.fwd.slides == steps - window
    elif case == "repeated_probe":
        assert not fast.fwd.fast  # a dropped direction: every slide rebuilt, as before
    else:  # frozen steps drop directions; once they leave the window the fast path resumes
        assert fast.fwd.fast and 0 < fast.fwd.slides < steps - window
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


@pytest.mark.slow
def test_fast_slides_stay_exact_over_many_slides():
    """300 fast slides without a refresh agree with the rebuild to 1e-8, and the basis stays orthonormal and
    spans the window."""
    g = torch.Generator().manual_seed(12)
    L, n, P, window, steps = 2, 48, 4, 5, 306
    us, gs = _walk(L, P, n, steps, g, step_size=0.02), _walk(L, P, n, steps, g, step_size=0.02)
    W0 = torch.randn(L, n, n, generator=g, dtype=torch.float64)
    fast, fo = _run(W0, us, gs, window, fast=True)
    _, so = _run(W0, us, gs, window, fast=False)
    assert fast.fwd.slides == fast.bwd.slides == steps - window
    _close(fo, so, 1e-8)
    Q = fast.fwd.Q[0]
    assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1], dtype=Q.dtype), atol=1e-10)
    V = torch.cat([u[0].T for u, _ in fast.raw], 1)  # raw holds rows (L, P, n)
    assert (V - Q @ (Q.T @ V)).norm() <= 1e-9 * V.norm()


def test_float32_matrix():
    """With a float32 W(0) the messages are rounded to float32 on both paths: they agree to 1e-5."""
    g = torch.Generator().manual_seed(13)
    L, n, P, window, steps = 2, 48, 4, 5, 40
    us, gs = _walk(L, P, n, steps, g, step_size=0.02), _walk(L, P, n, steps, g, step_size=0.02)
    W32 = torch.randn(L, n, n, generator=g, dtype=torch.float64).float()
    fast, fo = _run(W32, us, gs, window, fast=True)
    _, so = _run(W32, us, gs, window, fast=False)
    assert fast.fwd.slides == steps - window
    _close(fo, so, 1e-5)


def test_pending_rotation_equals_the_rotated_basis():
    """A slide's rotation of the basis waits for the next projection: coefficients and residuals taken from the
    basis before the rotation (with the reflector applied to the coefficients) equal those of the rotated
    basis, and the basis the projection leaves behind is the rotated one."""
    import copy
    g = torch.Generator().manual_seed(14)
    L, n, P, window = 2, 40, 3, 3
    us, gs = _walk(L, P, n, window + 2, g), _walk(L, P, n, window + 2, g)
    W0 = torch.randn(L, n, n, generator=g, dtype=torch.float64)
    tr, _ = _run(W0, us, gs, window, fast=True)
    side = tr.fwd
    assert side.pending is not None                     # the last update slid and left the rotation pending
    done = copy.deepcopy(side)
    Q = done.Qr                                         # applies the rotation
    assert done.pending is None and Q.shape[1] == side.k
    v = torch.randn(L, P, n, generator=g, dtype=torch.float64)
    c = side.coef(v)
    torch.testing.assert_close(c, v @ Q.mT, rtol=0, atol=1e-12)
    r = side.project(v, c)
    torch.testing.assert_close(r, v - c @ Q, rtol=0, atol=1e-12)
    assert side.pending is None
    torch.testing.assert_close(side.Qr, Q, rtol=0, atol=1e-12)


def test_float32_matrix_against_the_reference():
    """With a float32 W(0) (and float32 vectors) only the two message products round to float32: every split
    agrees with the reference decomposition of the same float32 numbers in float64 to the messages' rounding
    (≈ √n·2⁻²⁴ relative, 1.6e-7 measured here; asserted 1e-5)."""
    g = torch.Generator().manual_seed(13)
    L, n, P, window, steps = 2, 48, 4, 5, 24
    us, gs = _walk(L, P, n, steps, g, step_size=0.02), _walk(L, P, n, steps, g, step_size=0.02)
    W32 = torch.randn(L, n, n, generator=g, dtype=torch.float64).float()
    _, fo = _run(W32, us, gs, window, fast=True)
    f64 = lambda vs, k: torch.cat([v[k].T.float().double() for v in vs], 1)
    W = W32.double()
    for t in range(window + 1, steps):
        for k in range(L):
            ref = C.coupling_stats(C.forward_decomposition(W[k], f64(us[t - window:t], k), f64(gs[t - window:t], k),
                                                           us[t][k].T.float().double()))
            refb = C.coupling_stats(C.backward_decomposition(W[k], f64(us[t - window:t + 1], k),
                                                             f64(gs[t - window:t], k), gs[t][k].T.float().double()))
            for name, want in (("coupling_fwd", ref["coupling"]), ("coupling_fwd_frac", ref["frac"]),
                               ("coupling_bwd", refb["coupling"]), ("coupling_bwd_frac", refb["frac"])):
                assert fo[t][name][0][k].item() == pytest.approx(want, rel=1e-5), (t, k, name)
