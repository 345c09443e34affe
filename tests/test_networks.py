"""CNN1 and CNN2: receptive fields, output shapes, the paper's prediction rule."""

from __future__ import annotations

import pytest
import torch

from calcscore.networks import (
    CNN1,
    CNN2,
    RECEPTIVE_FIELDS,
    CNN1Config,
    build_network,
    max_dilation_for,
    receptive_field,
    regularised_parameters,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_receptive_field_formula():
    assert {d: receptive_field(d) for d in RECEPTIVE_FIELDS} == RECEPTIVE_FIELDS
    assert [max_dilation_for(rf) for rf in (35, 67, 131, 259)] == [8, 16, 32, 64]
    with pytest.raises(ValueError, match="max_dilation"):
        receptive_field(12)
    with pytest.raises(ValueError, match="receptive_field_px"):
        max_dilation_for(100)


@pytest.mark.parametrize("max_dilation", [8, 16, 32, 64])
def test_cnn1_receptive_field_is_exact(max_dilation):
    """A change at RF//2 pixels from the centre changes the centre's output; one pixel further
    out does not (65 / 66 for the paper's 131 configuration), in every orientation."""
    torch.manual_seed(0)
    model = CNN1(width=2, head_width=4, max_dilation=max_dilation).double().eval()
    r = model.receptive_field // 2
    assert model.receptive_field == RECEPTIVE_FIELDS[max_dilation]
    size = 2 * (r + 1) + 1  # receptive field + 2: the output is 3 x 3
    c = size // 2
    x = torch.zeros(1, 3, size, size, dtype=torch.float64)

    def centre_logits(inp):  # head and auxiliary logits of the centre voxel, in float64
        out = model(inp)
        return torch.cat([out.head] + [a[:, :, 1, 1] for a in out.aux], dim=1)

    with torch.no_grad():
        base = centre_logits(x)
        for channel in range(3):
            for du, dv in ((r, 0), (0, -r), (r, r), (-r, r)):
                inside = x.clone()
                inside[0, channel, c + du, c + dv] = 3.0
                assert not torch.equal(centre_logits(inside), base), (channel, du, dv)
            for du, dv in ((r + 1, 0), (0, -(r + 1)), (r + 1, r + 1), (-(r + 1), 3)):
                outside = x.clone()
                outside[0, channel, c + du, c + dv] = 3.0
                assert torch.equal(centre_logits(outside), base), (channel, du, dv)


def test_cnn1_shapes_and_fully_convolutional_parts():
    torch.manual_seed(1)
    model = CNN1(width=3, head_width=5, max_dilation=2).eval()  # receptive field 11
    x = torch.randn(4, 3, 15, 15)
    out = model(x)
    assert out.head.shape == (4, 7)
    assert [a.shape for a in out.aux] == [(4, 7, 5, 5)] * 3
    # the head on features of a whole slice, taken at the centre, gives the same logits
    feats = [net.features(x[:, i : i + 1]) for i, net in enumerate(model.subnets)]
    assert feats[0].shape == (4, 3, 5, 5)
    head = model.head(*(f[:, :, 2, 2] for f in feats))
    torch.testing.assert_close(head, out.head)
    torch.testing.assert_close(model.axial.aux(feats[0][:, :, 2, 2]), out.aux[0][:, :, 2, 2])
    with pytest.raises(ValueError, match="patch_size"):
        model(torch.randn(1, 3, 14, 14))
    with pytest.raises(ValueError, match=r"\(N, 3, P, P\)"):
        model(torch.randn(1, 1, 15, 15))


def test_prediction_weights_the_four_outputs():
    head = torch.tensor([[10.0, 0, 0, 0, 0, 0, 0]])
    aux = tuple(torch.tensor([[0.0, 10, 0, 0, 0, 0, 0]]) for _ in range(3))
    p = CNN1.combine(head, aux)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(1))
    sm = float(torch.softmax(head, 1)[0, 0])
    assert float(p[0, 0]) == pytest.approx(0.5 * sm + 0.5 * (1 - sm) / 6, rel=1e-5)
    assert p[0, 1] > p[0, 0]  # three confident auxiliary outputs outvote the head
    torch.testing.assert_close(CNN1.combine(head, None), torch.softmax(head, 1))


def test_cnn1_without_aux_outputs():
    model = CNN1(CNN1Config(width=2, head_width=4, max_dilation=2, aux=False)).eval()
    out = model(torch.randn(2, 3, 11, 11))
    assert out.aux is None and out.head.shape == (2, 7)
    assert model.predict_proba(torch.randn(2, 3, 11, 11)).shape == (2, 7)
    with pytest.raises(ValueError, match="aux=False"):
        model.axial.aux(torch.randn(2, 2))


def test_paper_cnn1_layers():
    model = CNN1()
    convs = [m for m in model.axial.body if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1, 1, 2, 4, 8, 16, 32, 1, 1]
    assert [c.kernel_size[0] for c in convs] == [3] * 8 + [1]
    assert all(c.out_channels == 32 and c.padding == (0, 0) for c in convs)
    assert model.head_layers[1].in_features == 96 and model.head_layers[1].out_features == 128
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 5


def test_cnn2_shapes_and_shared_weights():
    torch.manual_seed(2)
    model = CNN2().eval()
    assert [m.out_channels for m in model.tower if isinstance(m, torch.nn.Conv2d)] == [
        24,
        32,
        48,
        32,
    ]
    assert model.tower_features == 32 * 6 * 6
    x = torch.randn(3, 3, 65, 65)
    assert model(x).shape == (3, 2)
    p = model.predict_proba(x)
    assert p.shape == (3,) and torch.all((p >= 0) & (p <= 1))
    # one tower for all orientations: swapping sagittal and coronal patches of a voxel only
    # permutes the dense layer's inputs, so the network sees the three planes with one filter bank
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 4
    with pytest.raises(ValueError, match="65"):
        model(torch.randn(1, 3, 64, 64))


def test_build_network_and_weight_decay_groups():
    m = build_network("cnn2", {"patch_size": 33, "width_scale": 0.5, "unrelated": 1})
    assert isinstance(m, CNN2) and m.config.patch_size == 33
    decay, other = regularised_parameters(m)
    assert all(p.ndim > 1 for p in decay) and all(p.ndim == 1 for p in other)
    assert len(decay) + len(other) == len(list(m.parameters()))
    with pytest.raises(ValueError, match="kind"):
        build_network("cnn3", {})


@pytest.mark.parametrize("width_scale", [1.0, 0.5])
def test_cnn2_with_batch_norm_folded_computes_the_same_function(width_scale):
    torch.manual_seed(0)
    net = CNN2(width_scale=width_scale, dense_width=32).eval()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 3.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    folded = net.folded()
    assert not any(
        isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d) for m in folded.modules()
    )
    assert any(
        isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()
    )  # the original is untouched
    assert all(m.inplace for m in folded.modules() if isinstance(m, torch.nn.ELU))
    assert not any(m.inplace for m in net.modules() if isinstance(m, torch.nn.ELU))
    x = torch.randn(16, 3, 65, 65)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-4)
        nhwc = net.folded(channels_last=True)
        conv = next(
            m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1
        )
        assert (
            conv.weight.is_contiguous(memory_format=torch.channels_last)
            and not conv.weight.is_contiguous()
        )
        torch.testing.assert_close(
            nhwc(x.contiguous(memory_format=torch.channels_last)), net(x), rtol=1e-4, atol=1e-4
        )


def test_cnn1_inference_copy_computes_the_same_with_its_elus_in_place():
    """CNN1.for_inference: ELUs in place on a copy, the same probabilities and features; the
    model (e.g. one being trained) keeps its own modules and still trains."""
    torch.manual_seed(0)
    net = CNN1(width=4, head_width=8, max_dilation=4).eval()
    fast = net.for_inference()
    # per subnet: convs of dilation 1, 1, 2, 4, 1 and the 1x1 one, each with its ELU; one in the head
    assert sum(isinstance(m, torch.nn.ELU) and m.inplace for m in fast.modules()) == 3 * 6 + 1
    assert not any(m.inplace for m in net.modules() if isinstance(m, torch.nn.ELU))
    x = torch.randn(5, 3, 25, 25)
    with torch.no_grad():
        torch.testing.assert_close(fast.predict_proba(x), net.predict_proba(x), rtol=0, atol=0)
        planes = torch.randn(2, 1, 40, 40)
        torch.testing.assert_close(
            fast.axial.features(planes), net.axial.features(planes), rtol=0, atol=0
        )
        nhwc = net.for_inference(channels_last=True)
        conv = next(
            m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1
        )
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()  # NHWC strides, not a plain copy
        torch.testing.assert_close(
            nhwc.axial.features(planes.contiguous(memory_format=torch.channels_last)),
            net.axial.features(planes),
            rtol=1e-5,
            atol=1e-5,
        )
    assert next(net.parameters()).is_contiguous()  # the original keeps its layout
    net.train()
    net.head_layers(torch.randn(2, 12)).sum().backward()  # the original's autograd is untouched
