"""Models: one FCN decoder over a VGG16 or EfficientNet-Lite encoder, built from a config.

The classes are loaded on first use (module __getattr__), so that importing a submodule that needs no torch
(models.weights' source list, for the command line's parser) does not import torch."""

from __future__ import annotations

import importlib

_WHERE = {"efficientnet": ("EfficientNetLite", "load_lite"), "fcn": ("FCN", "FCN8s"),
          "vgg": ("VGG16Encoder", "load_vgg16"), "weights": ("Preprocess",)}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name):
    if name in _MODULE:
        return getattr(importlib.import_module(f"roadseg.models.{_MODULE[name]}"), name)
    raise AttributeError(f"module 'roadseg.models' has no attribute {name!r}")


def default_preprocess(encoder: str, weights: str):
    from roadseg.models.weights import CAFFE, LITE, TORCHVISION

    if encoder != "vgg16":
        return LITE
    return TORCHVISION if weights == "torchvision" else CAFFE


def build_model(cfg, pretrained: bool = True, preprocess=None):
    """Build the FCN from a Config (or ModelConfig); load the pretrained encoder when `pretrained` and
    cfg.weights is not 'none'. The model carries the preprocessing of its encoder weights (a Preprocess)."""
    from roadseg.models.efficientnet import EfficientNetLite, load_lite
    from roadseg.models.fcn import FCN
    from roadseg.models.vgg import VGG16Encoder, load_vgg16
    from roadseg.models.weights import resolve

    m = getattr(cfg, "model", cfg)
    load = pretrained and m.weights != "none"
    if preprocess is None:
        preprocess = resolve(m.weights, m.encoder)[1].preprocess if load else default_preprocess(m.encoder, m.weights)
    encoder = VGG16Encoder() if m.encoder == "vgg16" else EfficientNetLite(m.encoder)
    model = FCN(encoder, m.num_classes, m.skips, m.fc_width, m.fc_kernel, m.dropout, m.skip_init, preprocess)
    if load:
        (load_vgg16 if m.encoder == "vgg16" else load_lite)(model.encoder, m.weights)
    return model


__all__ = ["FCN", "FCN8s", "EfficientNetLite", "Preprocess", "build_model", "load_lite", "load_vgg16"]
