"""dynamics.record on the architectures people train, built here (no torchvision, no transformers, no downloads):
a torchvision-style CNN whose stages change width (BasicBlock with BN and in-place ReLU, a downsampling block
with a 1×1 conv shortcut), and transformer-style models (nn.TransformerEncoderLayer blocks under a causal mask,
a block returning a tuple, models returning a dict or a ModelOutput-like object). Every h_sq and g_sq is checked
against an independent autograd computation with each layer normalised by its own size n_ℓ."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dynamics
from dynamics.runs.outputs import RecordError, next_token_loss
from dynamics.runs.store import read_kernels, read_meta, read_metrics, read_neurons

torch.set_num_threads(1)


# --- a torchvision-style CNN ----------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv-BN-ReLU-conv-BN, + identity (or a 1×1 conv + BN downsample), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += identity
        return self.relu(out)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(BasicBlock(4, 4), BasicBlock(4, 4))
        self.layer2 = nn.Sequential(BasicBlock(4, 8, stride=2), BasicBlock(8, 8))
        self.fc = nn.Linear(8, 3)

    def tail(self, h, start: int):
        for b in self.blocks()[start:]:
            h = b(h)
        return self.fc(h.mean(dim=(2, 3)))

    def blocks(self):
        return [*self.layer1, *self.layer2]

    def forward(self, x):
        return self.tail(self.stem(x), 0)


def _hand(model, probe, features, scalar):
    """h_ℓ (P, n_ℓ) and ĝ_ℓ = n_ℓ ∂(Σ f)/∂h_ℓ from one graph through explicitly kept features (eval mode)."""
    model.eval()
    with torch.enable_grad():
        hs, f = features(probe)
        grads = torch.autograd.grad(scalar(f).sum(), hs)
    model.train()
    P_ = hs[0].shape[0]
    h = [t.detach().reshape(P_, -1) for t in hs]
    return h, [d.reshape(P_, -1) * t.shape[1] for d, t in zip(grads, h)]


def test_cnn_stages_that_change_width(tmp_path):
    torch.manual_seed(0)
    model = CNN().double()
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64)
    probe = x[:4]

    def features(p):
        hs = [model.stem(p).detach().requires_grad_(True)]
        for b in model.blocks():
            hs.append(b(hs[-1].clone()))  # clone: the blocks' in-place ops must not touch the kept tensor
        return hs, model.fc(hs[-1].mean(dim=(2, 3)))
    h0, g0 = _hand(model, probe, features, lambda f: f[:, 0])
    bn_before = model.layer2[0].bn1.running_mean.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    y = torch.randint(0, 3, (16,))
    with dynamics.record(model, blocks=model.blocks(), probe=probe, out=tmp_path, name="cnn", act="relu") as rec:
        rec.step(0)
        assert torch.equal(model.layer2[0].bn1.running_mean, bn_before) and model.training
        for t in range(1, 4):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(t, loss=loss.item())
    meta = read_meta(tmp_path / "cnn")
    assert meta["status"] == "complete" and meta["config"]["widths"] == [256, 256, 256, 128, 128]
    assert [la["shape"] for la in meta["layers"]] == [[4, 8, 8]] * 3 + [[8, 4, 4]] * 2
    assert meta["layers"][3]["layout"] == "8 channels × 16 positions" and "width" not in meta["config"]
    df = read_metrics(tmp_path / "cnn")
    at0 = df[df.step == 0]
    hsq = at0[at0.metric == "h_sq"].sort_values("layer")
    gsq = at0[at0.metric == "g_sq"].sort_values("layer")
    assert len(hsq) == len(gsq) == 5
    np.testing.assert_allclose(hsq.value, [float(h.pow(2).mean()) for h in h0], rtol=1e-12)
    np.testing.assert_allclose(gsq.value, [float(g.pow(2).mean()) for g in g0], rtol=1e-10)
    assert (gsq.value > 0).all()
    div = at0[at0.metric == "diversity"].sort_values("layer")
    assert list(div.layer) == [1, 2, 4]  # not at 3, where the downsampling block changes the shape
    np.testing.assert_allclose(div.value.iloc[0], 4 * float((h0[1] - h0[0]).pow(2).mean()), rtol=1e-12)
    assert "diversity is not recorded at layer(s) 3" in meta["notes"][0]
    hm = df[(df.metric == "h_move") & (df.step == 3)]
    assert len(hm) == 5 and (hm.value > 0).all()
    k = read_kernels(tmp_path / "cnn", kinds=["H"], steps=[0], layers=[3])
    np.testing.assert_allclose(k[k.i == k.j].value.mean(), hsq.value.iloc[3], rtol=1e-12)
    assert len(read_neurons(tmp_path / "cnn", steps=[0])) == 5 * 4 * 9


# --- transformer-style models ---------------------------------------------------------------------------
V, T, D = 11, 6, 8


@dataclass
class CausalLMOutput:  # a ModelOutput-like object: not a tensor, not a tuple; has .logits
    logits: torch.Tensor
    hidden: torch.Tensor | None = None


class LM(nn.Module):
    """Token + position embedding, nn.TransformerEncoderLayer blocks under a causal mask, a linear LM head."""

    def __init__(self, returns: str = "dict", layers: int = 2):
        super().__init__()
        self.emb, self.pos = nn.Embedding(V, D), nn.Parameter(torch.randn(T, D) * 0.1)
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(D, 2, 16, dropout=0.1, batch_first=True)
                                    for _ in range(layers))
        self.head, self.returns = nn.Linear(D, V), returns

    def features(self, ids, keep=False):
        h = self.emb(ids) + self.pos
        if keep:
            h = h.detach().requires_grad_(True)
        hs, mask = [h], nn.Transformer.generate_square_subsequent_mask(ids.shape[1], dtype=h.dtype)
        for b in self.blocks:
            hs.append(b(hs[-1], src_mask=mask, is_causal=True))
        return hs, self.head(hs[-1])

    def forward(self, input_ids, attention_mask=None):
        _, logits = self.features(input_ids)
        if self.returns == "dict":
            return {"logits": logits, "aux": logits.mean()}
        if self.returns == "odict":
            return OrderedDict(logits=logits)
        return CausalLMOutput(logits)


def _ids(n: int = 4):
    return torch.randint(0, V, (n, T), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("returns", ["dict", "odict", "object"])
def test_language_model_default_is_mean_next_token_loss(tmp_path, returns):
    torch.manual_seed(1)
    model = LM(returns).double()
    ids = _ids()

    def loss(logits):
        return torch.stack([F.cross_entropy(logits[m, :-1], ids[m, 1:]) for m in range(ids.shape[0])])
    h0, g0 = _hand(model, ids, lambda p: model.features(p, keep=True), loss)
    with dynamics.record(model, blocks=list(model.blocks), probe=ids, out=tmp_path, name="lm") as rec:
        rec.step(0)
    df = read_metrics(tmp_path / "lm")
    gsq = df[df.metric == "g_sq"].sort_values("layer")
    np.testing.assert_allclose(gsq.value, [float(g.pow(2).mean()) for g in g0], rtol=1e-10)
    np.testing.assert_allclose(df[df.metric == "h_sq"].sort_values("layer").value,
                               [float(h.pow(2).mean()) for h in h0], rtol=1e-12)
    meta = read_meta(tmp_path / "lm")
    assert meta["config"]["width"] == T * D and meta["layers"][1]["layout"] == f"{T} positions × {D} features"
    # every position with a next token gets a gradient (the first logit alone reaches position 0 only); the
    # last position has no next token and, under causal attention, reaches no other position's loss
    g_pos = g0[1].reshape(4, T, D).abs().sum(dim=(0, 2))
    assert (g_pos[:-1] > 0).all() and g_pos[-1] == 0


def test_first_logit_reaches_one_position_and_output_callable(tmp_path):
    torch.manual_seed(1)
    model = LM("dict").double()
    ids = _ids()
    rec = dynamics.record(model, blocks=list(model.blocks), probe={"input_ids": ids}, out=tmp_path, name="first",
                          output=lambda out: out["logits"][:, 0, 0])
    h, g, f, shapes = rec.probe_pass()
    rec.close()
    nonzero = (g[1].reshape(4, T, D).abs().sum(dim=(0, 2)) > 0).tolist()
    assert nonzero == [True] + [False] * (T - 1)  # under causal attention: position 0 only
    assert f.shape == (4, 1) and shapes == [(T, D)] * 3
    assert not (tmp_path / "first").exists()  # no step recorded, nothing written


def test_padding_is_left_out_of_the_next_token_loss():
    logits = torch.randn(2, 4, 5, dtype=torch.float64)
    ids = torch.tensor([[1, 2, 3, 4], [1, 2, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    got = next_token_loss(logits, ids, mask)
    want1 = F.cross_entropy(logits[1, :1], ids[1, 1:2])
    np.testing.assert_allclose(got[1].item(), want1.item(), rtol=1e-12)
    np.testing.assert_allclose(got[0].item(), F.cross_entropy(logits[0, :3], ids[0, 1:]).item(), rtol=1e-12)


class TupleBlock(nn.Module):
    """A block returning (hidden, attention weights), called with hidden_states= as a keyword."""

    def __init__(self):
        super().__init__()
        self.attn, self.mlp = nn.MultiheadAttention(D, 2, batch_first=True), nn.Linear(D, D)

    def forward(self, hidden_states):
        a, w = self.attn(hidden_states, hidden_states, hidden_states)
        h = hidden_states + a
        return h + torch.tanh(self.mlp(h)), w


class TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.blocks, self.out = nn.Linear(3, D), nn.ModuleList(TupleBlock() for _ in range(3)), \
            nn.Linear(D, 2)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h, _ = b(hidden_states=h)
        return self.out(h.mean(1)), h  # a tuple: (prediction, last hidden)


def test_tuple_blocks_called_by_keyword_and_a_tuple_output(tmp_path):
    torch.manual_seed(2)
    model = TupleModel().double()
    x = torch.randn(4, 5, 3, dtype=torch.float64)

    def features(p):
        hs = [model.inp(p).detach().requires_grad_(True)]
        for b in model.blocks:
            hs.append(b(hidden_states=hs[-1])[0])
        return hs, model.out(hs[-1].mean(1))
    h0, g0 = _hand(model, x, features, lambda f: f[:, 0])
    with dynamics.record(model, pattern=r"blocks\.\d", probe=x, out=tmp_path, name="tup", act="tanh") as rec:
        rec.step(0)
    df = read_metrics(tmp_path / "tup")
    np.testing.assert_allclose(df[df.metric == "g_sq"].sort_values("layer").value,
                               [float(g.pow(2).mean()) for g in g0], rtol=1e-10)
    assert read_meta(tmp_path / "tup")["layers"][2]["module"] == "blocks.1"


class _Text(nn.Module):
    def __init__(self):
        super().__init__()
        self.b = nn.Linear(3, 3)

    def forward(self, x):
        self.b(x)
        return "a sentence"


class _FloatTokens(nn.Module):
    """Token logits (P, T, V) from float features: no token ids to take the next-token loss against."""

    def __init__(self):
        super().__init__()
        self.b, self.head = nn.Linear(D, D), nn.Linear(D, V)

    def forward(self, x):
        return {"logits": self.head(self.b(x))}


class _SeqFirst(nn.Module):
    """Transposes to (T, P, d) for a batch_first=False layer: the first dimension is not the probe batch."""

    def __init__(self):
        super().__init__()
        self.layer, self.out = nn.TransformerEncoderLayer(D, 2, 16, batch_first=False), nn.Linear(D, 2)

    def forward(self, x):
        return self.out(self.layer(x.transpose(0, 1)).mean(0))


def test_unsupported_models_fail_in_one_line_and_leave_nothing(tmp_path):
    lm = LM("dict")
    cases = [(_Text(), lambda m: [m.b], torch.randn(2, 3), None, "cannot read a model output of type str"),
             (_FloatTokens(), lambda m: [m.b], torch.randn(4, T, D), None, "no token ids"),
             (lm, lambda m: list(m.blocks), _ids(), lambda out: out["logits"][:2, 0, 0],
              r"expected a tensor of shape \(P,\)"),
             (lm, lambda m: list(m.blocks), _ids(), lambda out: out["aux"].reshape(1).expand(4).detach(),
              "no gradient"),
             (_SeqFirst(), lambda m: [m.layer], torch.randn(3, 5, D), None,
              r"shape \(5, 3, 8\): its first dimension must be the probe batch")]
    for k, (model, blocks, probe, output, expected) in enumerate(cases):
        with pytest.raises(RecordError, match=expected) as e:
            with dynamics.record(model, blocks=blocks(model), probe=probe, out=tmp_path, name=f"bad{k}",
                                 output=output) as rec:
                rec.step(0)
        assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []  # no failed run directories left behind


def test_a_failure_after_recorded_steps_keeps_them_marked_failed(tmp_path):
    torch.manual_seed(0)
    model = TupleModel().double()
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    with pytest.raises(RecordError, match="cannot read a model output of type NoneType"):
        with dynamics.record(model, blocks=list(model.blocks), probe=x, out=tmp_path, name="mid") as rec:
            rec.step(0)
            model.forward = lambda p: None
            rec.step(1)
    meta = read_meta(tmp_path / "mid")
    assert meta["status"] == "failed" and "RecordError" in meta["error"]
    assert sorted(read_metrics(tmp_path / "mid").step.unique()) == [0]


def test_half_precision_models_are_measured_in_float32(tmp_path):
    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Linear(D, D), nn.Tanh()) for _ in range(2)]
    model = nn.Sequential(nn.Linear(3, D), *blocks, nn.Linear(D, 2)).to(torch.bfloat16)
    x = torch.randn(4, 3).to(torch.bfloat16)
    with dynamics.record(model, blocks=list(model[1:3]), probe=x, out=tmp_path, name="bf16") as rec:
        rec.step(0)
    with torch.no_grad():
        hs = [model[0](x)]
        for b in model[1:3]:
            hs.append(b(hs[-1]))
    df = read_metrics(tmp_path / "bf16")
    np.testing.assert_allclose(df[df.metric == "h_sq"].sort_values("layer").value,
                               [float(h.float().pow(2).mean()) for h in hs], rtol=1e-6)
