import pytest
import torch

from roadseg.config import Config
from roadseg.models import FCN8s, build_model
from roadseg.models.fcn import bilinear_kernel


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


# ------------------------------------------------------------------ one decoder over two encoders

def test_shipped_fcn8s_gives_its_recorded_logits():
    """The shipped FCN-8s/VGG16 file loads into the FCN and gives the logits recorded when it was shipped, on a fixed
    input (tests/data/fcn8s_reference.npz). The first reference was written by the FCN8s class before the
    encoder/decoder split (so the split changed nothing); it was rewritten on 2026-11-26 for the full-resolution
    file, and again for the file with the 7x7 fc6 (session 9)."""
    from pathlib import Path

    import numpy as np

    from roadseg.models.checkpoint import model_from_checkpoint

    root = Path(__file__).resolve().parents[1]
    m, _ = model_from_checkpoint(root / "models" / "kitti-fcn8s-vgg16.pt")
    x = torch.rand(1, 3, 70, 100, generator=torch.Generator().manual_seed(1234)) * 255
    with torch.no_grad():
        y = m(x).numpy()
    ref = np.load(Path(__file__).parent / "data" / "fcn8s_reference.npz")["logits"]
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() < 1e-3 * np.abs(ref).max()
    assert [n for n, _ in m.named_children()] == ["normalize", "encoder", "fc6", "fc7", "drop", "score_fr", "upscore2",
                                                  "score_pool4", "upscore_pool4", "score_pool3", "upscore8"]


def lite(skips=(16, 8, 4), **kw):
    from roadseg.config import from_dict

    torch.manual_seed(0)
    cfg = from_dict({"model": {"encoder": "efficientnet_lite0", "weights": "none", "fc_width": 0, "skips": list(skips), **kw}})
    return build_model(cfg, pretrained=False).eval()


@pytest.mark.parametrize("h,w", [(375, 1242), (33, 65), (64, 64)])
def test_lite0_fcn_output_has_input_size(h, w):
    with torch.no_grad():
        assert lite()(torch.rand(1, 3, h, w) * 255).shape == (1, 2, h, w)


def test_lite0_encoder_strides_and_channels():
    from roadseg.models import EfficientNetLite

    e = EfficientNetLite("efficientnet_lite0").eval()
    with torch.no_grad():
        f = e(torch.zeros(1, 3, 64, 96))
    assert {s: tuple(t.shape[1:]) for s, t in f.items()} == {2: (16, 32, 48), 4: (24, 16, 24), 8: (40, 8, 12),
                                                              16: (112, 4, 6), 32: (1280, 2, 3)}
    assert e.channels == {2: 16, 4: 24, 8: 40, 16: 112, 32: 1280}
    assert len(e._blocks) == 16 and len(EfficientNetLite("efficientnet_lite2")._blocks) == 21


@pytest.mark.parametrize("skips,names", [((), ["upscore32"]), ((16,), ["upscore2", "score_s16", "upscore16"]),
                                         ((16, 8, 4), ["upscore2", "score_s16", "upscore_s16", "score_s8",
                                                       "upscore_s8", "score_s4", "upscore4"])])
def test_decoder_layers_follow_the_skips(skips, names):
    m = lite(skips)
    assert [n for n, _ in m.named_children() if n.startswith(("score_s", "upscore"))] == names
    with torch.no_grad():
        assert m(torch.rand(1, 3, 64, 64) * 255).shape == (1, 2, 64, 64)


def test_skips_are_checked():
    from roadseg.config import from_dict
    from roadseg.errors import ConfigError

    with pytest.raises(ConfigError, match="model.skips"):
        from_dict({"model": {"skips": [8, 16]}})
    with pytest.raises(ConfigError, match="vgg16 provides skips at strides 16 and 8"):
        from_dict({"model": {"skips": [16, 8, 4]}})


def test_legacy_config_names_the_weights_source_as_encoder():
    from roadseg.config import from_dict

    m = from_dict({"model": {"encoder": "hed", "fc_width": 1024}}).model
    assert (m.encoder, m.weights, m.skips) == ("vgg16", "hed", [16, 8])
    assert from_dict({"model": {"encoder": "/x/vgg.h5"}}).model.weights == "/x/vgg.h5"
    assert from_dict({"model": {"encoder": "efficientnet_lite0"}}).model.weights == "auto"


def test_lite_freeze_keeps_stem_and_early_stages_fixed():
    m = lite()
    m.train()
    m.freeze_blocks(2)
    assert not m.encoder._conv_stem.weight.requires_grad and not m.encoder._blocks[2]._project_conv.weight.requires_grad
    assert m.encoder._blocks[3]._project_conv.weight.requires_grad
    before = m.encoder._bn0.running_mean.clone()
    m(torch.rand(1, 3, 64, 64) * 255)
    assert torch.equal(before, m.encoder._bn0.running_mean)  # frozen batch norm keeps its statistics


def test_shipped_models_resolve_by_name_or_path(tmp_path, monkeypatch):
    from roadseg.errors import WeightsError
    from roadseg.models.shipped import DEFAULT, SHIPPED, locate

    assert locate("kitti-fcn8s-vgg16").name == "kitti-fcn8s-vgg16.pt"
    assert locate(None).name == SHIPPED[DEFAULT]
    own = tmp_path / "mine.pt"
    own.write_bytes(b"x")
    assert locate(str(own)) == own
    with pytest.raises(WeightsError, match=r"kitti-lite7: model file not found \(shipped models: kitti-lite0, kitti-fcn8s"):
        locate("kitti-lite7")
    (tmp_path / "kitti-lite0.pt").write_bytes(b"y")
    monkeypatch.setenv("ROADSEG_MODELS", str(tmp_path))  # searched before the checkout's models/
    assert locate("kitti-lite0") == tmp_path / "kitti-lite0.pt"


def test_stride_two_skip_decodes_at_half_resolution():
    """skips [16, 8, 4, 2] on EfficientNet-Lite: a fourth score layer on the first stage (16 channels at stride 2),
    the last upsampling 2x (upscore2_out: upscore2 is the paper's first 2x); the export's pixel-shuffle copy of it
    is the same function; VGG16 refuses it."""
    from roadseg.config import from_dict
    from roadseg.errors import ConfigError
    from roadseg.models import build_model

    cfg = from_dict({"model": {"encoder": "efficientnet_lite0", "weights": "none", "fc_width": 0,
                               "skips": [16, 8, 4, 2]}})
    m = build_model(cfg, pretrained=False).eval()
    assert m.score_s2.in_channels == 16 and m.upscore2_out.stride == (2, 2) and m.upscore_s4.stride == (2, 2)
    torch.manual_seed(0)
    with torch.no_grad():
        m.score_s2.weight.normal_(0, 0.1)
        x = torch.rand(1, 3, 64, 96) * 255
        y = m(x)
        assert y.shape == (1, 2, 64, 96)
        assert torch.allclose(m.with_shuffle_upsampling()(x), y, atol=1e-4)
        m.score_s2.weight.zero_()
        assert not torch.allclose(m(x), y, atol=1e-3)  # the stride-2 skip reaches the output
    with pytest.raises(ConfigError, match=r"expected a prefix of \[16, 8, 4, 2\]"):
        from_dict({"model": {"encoder": "efficientnet_lite0", "skips": [16, 8, 2]}})
    with pytest.raises(ConfigError, match="vgg16 provides skips at strides 16 and 8"):
        from_dict({"model": {"skips": [16, 8, 4, 2]}})
