"""The training loop's conventions (issue #2): what is recorded when, and what the numbers mean."""
import numpy as np
import pytest
import torch

from dynamics.runs import store
from dynamics.config import RunConfig
from dynamics.data import load_task
from dynamics.train import build, loss_fn, train

SMALL = dict(width=32, depth=4, steps=12, record_every=5, train_size=64, test_size=16, batch=16, probes=4,
             input_dim=8, dtype="float64", device="cpu")


def _metric(run, name):
    df = store.read_metrics(run, metrics=[name])
    return df.sort_values(["step", "layer"])


def test_recorded_steps_and_layers(tmp_path):
    run = train(RunConfig(**SMALL), tmp_path / "r")
    meta = store.read_meta(run)
    assert meta["status"] == "complete" and meta["steps_done"] == 12 and meta["kind"] == "finite"
    loss = _metric(run, "loss")
    assert loss.step.tolist() == list(range(13)) and (loss.layer == store.NETWORK_LAYER).all()
    h = _metric(run, "h_sq")
    assert sorted(h.step.unique()) == [0, 5, 10, 12]
    assert sorted(h.layer.unique()) == list(range(5))
    assert sorted(_metric(run, "diversity").layer.unique()) == [1, 2, 3, 4]
    assert _metric(run, "test_loss").step.tolist() == [0, 10, 12]  # test_every=10, and the last step
    assert _metric(run, "a_move").empty  # one-layer blocks have no inner features
    step0 = _metric(run, "h_move")
    assert (step0[step0.step == 0].value == 0).all() and (step0[step0.step == 12].value > 0).all()
    k = store.read_kernels(run, kinds=["H"], steps=[5], layers=[2])
    assert len(k) == 16
    assert np.isclose(np.diag(store.kernel_matrix(k)).mean(), h[(h.step == 5) & (h.layer == 2)].value.item())
    q = store.read_neurons(run, steps=[0], layers=[0])
    assert len(q) == 4 * 9 and q.groupby("probe").value.apply(lambda v: v.is_monotonic_increasing).all()


def test_loss_convention_matches_a_hand_written_loop(tmp_path):
    """loss at step t = loss of the parameters after t full-batch updates, on the whole training set."""
    cfg = RunConfig(**{**SMALL, "batch": "full"})
    run = train(cfg, tmp_path / "r")
    data, _ = load_task(cfg)
    model = build(cfg, data, torch.device("cpu"))
    opt = torch.optim.SGD(model.param_groups(), lr=model.s.lr)
    expected = []
    for step in range(cfg.steps + 1):
        loss = loss_fn(cfg, model(data.x), data.y, None)
        expected.append(loss.item())
        opt.zero_grad()
        loss.backward()
        if step < cfg.steps:
            opt.step()
    np.testing.assert_allclose(_metric(run, "loss").value, expected, rtol=1e-10)
    probe = _metric(run, "probe_loss")
    model0 = build(cfg, data, torch.device("cpu"))
    assert probe.value.iloc[0] == pytest.approx(loss_fn(cfg, model0(data.x[:4]), data.y[:4], None).item())


def test_divergence_keeps_what_was_recorded(tmp_path):
    run = train(RunConfig(**{**SMALL, "lr": 1e6, "steps": 30}), tmp_path / "r")
    meta = store.read_meta(run)
    assert meta["status"] == "diverged"
    loss = _metric(run, "loss")
    assert not np.isfinite(loss.value.iloc[-1]) and np.isfinite(loss.value.iloc[0])
    assert 0 in _metric(run, "h_sq").step.values


def test_failure_midway_marks_run_failed_and_keeps_steps(tmp_path):
    def boom(step, loss):
        if step == 7:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(RunConfig(**SMALL), tmp_path / "r", on_step=boom)
    meta = store.read_meta(tmp_path / "r")
    assert meta["status"] == "failed" and "KeyboardInterrupt" in meta["error"]
    assert sorted(_metric(tmp_path / "r", "h_sq").step.unique()) == [0, 5]
    assert not list((tmp_path / "r").glob(".*tmp*"))


def test_decoupled_twin_shares_init_and_data_order(tmp_path):
    a = train(RunConfig(**SMALL), tmp_path / "a")
    b = train(RunConfig(**{**SMALL, "backward": "decoupled"}), tmp_path / "b")
    la, lb = _metric(a, "loss").value.to_numpy(), _metric(b, "loss").value.to_numpy()
    assert la[0] == lb[0] and not np.allclose(la[1:], lb[1:])  # same init; the backward changes training
    # a readout-only update never passes through W, so twins that share init and batches stay identical
    ro = dict(SMALL, trained=("readout",))
    c = train(RunConfig(**ro), tmp_path / "c")
    d = train(RunConfig(**{**ro, "backward": "decoupled"}), tmp_path / "d")
    np.testing.assert_array_equal(_metric(c, "loss").value, _metric(d, "loss").value)


def test_frozen_features_do_not_move(tmp_path):
    run = train(RunConfig(**{**SMALL, "trained": ("readout",)}), tmp_path / "r")
    move = _metric(run, "h_move")
    assert (move.value == 0).all()
    assert (_metric(run, "g_move").query("step > 0").value > 0).all()  # ĝ = v-weighted, and v learns


def test_two_layer_blocks_record_inner_movement(tmp_path):
    run = train(RunConfig(**{**SMALL, "block": 2}), tmp_path / "r")
    a = _metric(run, "a_move")
    assert sorted(a.layer.unique()) == [1, 2, 3, 4] and (a.query("step == 12").value > 0).all()


def test_classification_with_cross_entropy(tmp_path):
    run = train(RunConfig(**{**SMALL, "task": "mixture", "loss": "xent", "classes": 3}), tmp_path / "r")
    loss = _metric(run, "loss").value.to_numpy()
    assert loss[0] == pytest.approx(np.log(3), rel=0.05)  # logits are O(1/√n) at init under μP


def test_fg_eigmin_is_the_smallest_eigenvalue_of_the_feature_gradient_covariance(tmp_path):
    """P = 1: the 2×2 closed form from the recorded phi_sq, g_sq, fg_cov; P = 4: numpy on the probe pass."""
    run = train(RunConfig(**{**SMALL, "probes": 1, "act": "tanh"}), tmp_path / "one")
    m = {k: _metric(run, k).set_index(["step", "layer"]).value for k in ("phi_sq", "g_sq", "fg_cov", "fg_eigmin")}
    a, b, c = m["phi_sq"], m["g_sq"], m["fg_cov"]
    closed = (a + b) / 2 - np.sqrt(((a - b) / 2) ** 2 + c ** 2)
    np.testing.assert_allclose(m["fg_eigmin"].to_numpy(), closed.loc[m["fg_eigmin"].index].to_numpy(), rtol=1e-9)
    assert (m["fg_eigmin"] > 0).all() and m["fg_eigmin"].index.get_level_values("step").nunique() == 4

    from dynamics.probes import FUNCTIONS, probe_pass
    cfg = RunConfig(**{**SMALL, "act": "relu"})
    data, _ = load_task(cfg)
    model = build(cfg, data, torch.device("cpu"))
    s = probe_pass(model, data.x[:4])
    got = FUNCTIONS["fg_eigmin"](s, s, cfg.depth).numpy()
    phi = np.maximum(s.h.numpy(), 0.0)  # relu, computed here rather than taken from the state
    g = s.g_hat.numpy()
    for layer in range(cfg.depth + 1):
        v = np.concatenate([phi[layer], g[layer]])  # (2P, n)
        assert got[layer] == pytest.approx(np.linalg.eigvalsh(v @ v.T / cfg.width).min(), rel=1e-9, abs=1e-12)
