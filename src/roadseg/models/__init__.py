"""Models: FCN-8s on a VGG16 encoder, built from a config."""

from __future__ import annotations

from roadseg.models.fcn8s import FCN8s
from roadseg.models.vgg import CAFFE, TORCHVISION, Preprocess, load_vgg16


def build_model(cfg, pretrained: bool = True) -> FCN8s:
    """Build FCN-8s from a Config (or ModelConfig); load the pretrained encoder when `pretrained` and
    cfg.encoder is not 'none'. The model carries the preprocessing of its encoder weights."""
    m = getattr(cfg, "model", cfg)
    preprocess = CAFFE
    encoder = None
    if pretrained and m.encoder != "none":
        from roadseg.models.vgg import resolve

        encoder = resolve(m.encoder)[1]
        preprocess = encoder.preprocess
    elif m.encoder == "torchvision":
        preprocess = TORCHVISION
    model = FCN8s(m.num_classes, m.fc_width, m.fc_kernel, m.dropout, m.skip_init, preprocess)
    if encoder is not None:
        load_vgg16(model.encoder, m.encoder)
    return model


__all__ = ["FCN8s", "Preprocess", "build_model", "load_vgg16"]
