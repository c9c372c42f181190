"""Models: one FCN decoder over a VGG16 or EfficientNet-Lite encoder, built from a config."""

from __future__ import annotations

from roadseg.models.efficientnet import EfficientNetLite, load_lite
from roadseg.models.fcn import FCN, FCN8s
from roadseg.models.vgg import VGG16Encoder, load_vgg16
from roadseg.models.weights import CAFFE, LITE, TORCHVISION, Preprocess, resolve


def default_preprocess(encoder: str, weights: str) -> Preprocess:
    if encoder != "vgg16":
        return LITE
    return TORCHVISION if weights == "torchvision" else CAFFE


def build_model(cfg, pretrained: bool = True, preprocess: Preprocess | None = None) -> FCN:
    """Build the FCN from a Config (or ModelConfig); load the pretrained encoder when `pretrained` and
    cfg.weights is not 'none'. The model carries the preprocessing of its encoder weights."""
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
