import pytest
import torch

from roadseg.config import Config
from roadseg.models import FCN8s, build_model
from roadseg.models.fcn8s import bilinear_kernel


def tiny(**kw):
    torch.manual_seed(0)
    return FCN8s(fc_width=kw.pop("fc_width", 16), **kw).eval()


@pytest.mark.parametrize("h,w", [(375, 1242), (33, 65), (31, 17), (64, 64)])
def test_output_has_input_size(h, w):
    m = tiny()
    with torch.no_grad():
        y = m(torch.rand(2, 3, h, w) * 255)
    assert y.shape == (2, 2, h, w)


def test_default_model_has_paper_layers_and_width():
    m = build_model(Config(), pretrained=False)
    assert m.fc6.out_channels == 4096 and m.fc7.in_channels == 4096 and m.fc6.kernel_size == (1, 1)
    assert m.upscore8.stride == (8, 8) and m.upscore2.stride == (2, 2)
    n = sum(p.numel() for p in m.parameters())
    # 14.71M VGG16 convs + fc6 2.10M + fc7 16.78M + score layers
    assert 33_600_000 < n < 33_620_000


def _up(layer, x):
    with torch.no_grad():
        return layer(x)


def test_transposed_convs_start_as_bilinear_upsampling():
    m = tiny(num_classes=3)
    const = torch.full((1, 3, 8, 10), 2.5)
    for layer, f in ((m.upscore2, 2), (m.upscore_pool4, 2), (m.upscore8, 8)):
        y = _up(layer, const)
        assert y.shape[-2:] == (8 * f, 10 * f)
        inner = y[..., f:-f, f:-f]  # away from the border, a constant map stays constant
        assert torch.allclose(inner, torch.full_like(inner, 2.5), atol=1e-5)
        ramp = torch.arange(10.0).view(1, 1, 1, 10).expand(1, 3, 8, 10).contiguous()
        r = _up(layer, ramp)[0, 0, 4 * f, f:-f]  # a ramp stays a ramp: constant slope 1/f
        d = r[1:] - r[:-1]
        assert torch.allclose(d, torch.full_like(d, 1.0 / f), atol=1e-5)
        # channels do not mix
        one = torch.zeros(1, 3, 8, 10)
        one[:, 1] = 1
        out = _up(layer, one)
        assert out[:, 0].abs().max() == 0 and out[:, 2].abs().max() == 0


def test_bilinear_kernel_matches_hand_values():
    k = bilinear_kernel(1, 4)[0, 0]  # 1-D factors 0.25, 0.75, 0.75, 0.25
    assert torch.allclose(k[0], torch.tensor([0.0625, 0.1875, 0.1875, 0.0625]))
    assert torch.allclose(k[1], torch.tensor([0.1875, 0.5625, 0.5625, 0.1875]))


@pytest.mark.parametrize("skip_init", ["zero", "scaled"])
def test_skip_score_layers_init(skip_init):
    m = tiny(skip_init=skip_init)
    if skip_init == "zero":
        assert m.score_pool4.weight.abs().max() == 0 and m.score_pool3.weight.abs().max() == 0
    else:
        assert 0 < m.score_pool3.weight.std() < m.score_pool4.weight.std() < 0.02


def test_freeze_blocks_stops_gradients():
    m = tiny()
    m.freeze_blocks(2)
    assert not m.encoder.conv2_2.weight.requires_grad and m.encoder.conv3_1.weight.requires_grad
