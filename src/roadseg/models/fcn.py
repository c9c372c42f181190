"""Fully convolutional networks (Long, Shelhamer, Darrell 2015): one decoder over any encoder that returns
feature maps by stride. FCN-8s on VGG16 is the paper's model; EfficientNet-Lite is the fast encoder.

Input: RGB float 0-255, (B, 3, H, W), any H and W; the preprocessing of the encoder's weights is applied
inside the model, so every backend (eager, compiled, ONNX) sees the same graph. Output: logits (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from roadseg.models.vgg import VGG16Encoder
from roadseg.models.weights import CAFFE, Preprocess


def bilinear_kernel(channels: int, kernel: int) -> torch.Tensor:
    """Weights (C, C, k, k) that make a transposed conv with stride k//2 a bilinear upsampling, channel by channel."""
    factor = (kernel + 1) // 2
    center = factor - 1 if kernel % 2 == 1 else factor - 0.5
    og = torch.arange(kernel, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = (filt1d[:, None] * filt1d[None, :]).float()
    w = torch.zeros(channels, channels, kernel, kernel)
    for c in range(channels):
        w[c, c] = filt
    return w


class Normalize(nn.Module):
    def __init__(self, pre: Preprocess):
        super().__init__()
        self.bgr = pre.bgr
        self.register_buffer("mul", torch.tensor([pre.scale / s for s in pre.std]).view(1, 3, 1, 1))
        self.register_buffer("sub", torch.tensor([m / s for m, s in zip(pre.mean, pre.std)]).view(1, 3, 1, 1))

    def forward(self, x):
        if self.bgr:
            x = x.flip(1)
        return x * self.mul - self.sub


class ShuffleUp(nn.Module):
    """The same function as a transposed convolution of kernel 2s, stride s, padding s/2 (FCN's upsampling), as a
    3x3 convolution to C*s*s channels at low resolution followed by a pixel shuffle: each output phase (r_y, r_x)
    reads input rows/columns q-1, q, q+1 with the transposed kernel's taps k = r + s/2 - s*d. Exported graphs use it
    for the last, full-resolution upsampling, where ONNX Runtime's float ConvTranspose was 12% of the INT8 network."""

    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.shuffle_conv = nn.Conv2d(channels, channels * factor * factor, 3, padding=1, bias=False)
        self.shuffle = nn.PixelShuffle(factor)

    @classmethod
    def from_transposed(cls, ct: nn.ConvTranspose2d) -> ShuffleUp:
        s = ct.stride[0]
        if (ct.kernel_size != (2 * s, 2 * s) or ct.stride != (s, s) or ct.padding != (s // 2, s // 2) or s % 2
                or ct.in_channels != ct.out_channels or ct.groups != 1 or ct.bias is not None):
            raise ValueError(f"not an FCN upsampling layer: {ct}")
        c = ct.in_channels
        up = cls(c, s)
        wt = ct.weight.detach()  # (C_in, C_out, 2s, 2s)
        w = torch.zeros(c * s * s, c, 3, 3, dtype=wt.dtype)
        for ry in range(s):
            for dy in (-1, 0, 1):
                ky = ry + s // 2 - s * dy
                if not 0 <= ky < 2 * s:
                    continue
                for rx in range(s):
                    for dx in (-1, 0, 1):
                        kx = rx + s // 2 - s * dx
                        if 0 <= kx < 2 * s:
                            w[torch.arange(c) * s * s + ry * s + rx, :, dy + 1, dx + 1] = wt[:, :, ky, kx].T
        with torch.no_grad():
            up.shuffle_conv.weight.copy_(w)
        return up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.shuffle_conv(x))

    def road_difference(self) -> ShuffleUp:
        """For two classes: a ShuffleUp to one channel, the road logit minus the other's (the layer is linear, so the
        difference of its outputs is the output of the difference of its weights): half the work at full resolution."""
        c, s = self.shuffle_conv.in_channels, self.factor
        if c != 2:
            raise ValueError(f"road_difference needs two classes, not {c}")
        w = self.shuffle_conv.weight.detach()
        up = ShuffleUp(c, s)
        up.shuffle_conv = nn.Conv2d(c, s * s, 3, padding=1, bias=False)
        with torch.no_grad():
            up.shuffle_conv.weight.copy_(w[s * s :] - w[: s * s])
        return up


SKIPS = [16, 8, 4, 2]  # the skip strides, coarse to fine; a model's skips are a prefix


def final_name(stride: int) -> str:
    """The name of the last upsampling, from the finest skip's stride to the input (upscore8 in FCN-8s)."""
    return "upscore2_out" if stride == 2 else f"upscore{stride}"


class FCN(nn.Module):
    """The FCN recipe on any encoder that returns feature maps by stride ({8: ..., 16: ..., 32: ...}).

    At stride 32: optional fc6/fc7 (the classifier as convolutions; `fc_width` 0 leaves them out), then the 1x1
    `score_fr`. Then for each skip stride (16, 8, 4, in that order): upsample the scores 2x with a transposed
    convolution (bilinear-initialised), add a 1x1 score of the encoder's map at that stride, and after the last
    skip upsample by that stride to the input size. Module names follow the paper: with VGG16 and skips
    [16, 8] this is FCN-8s exactly (upscore2, score_pool4, upscore_pool4, score_pool3, upscore8). A skip at stride 2
    (EfficientNet-Lite's first stage, for the finest decoding) ends in `upscore2_out`, as upscore2 is taken."""

    def __init__(self, encoder: nn.Module, num_classes: int = 2, skips=(16, 8), fc_width: int = 4096,
                 fc_kernel: int = 1, dropout: float = 0.5, skip_init: str = "zero", preprocess: Preprocess = CAFFE):
        super().__init__()
        skips = list(skips)
        if skips != SKIPS[: len(skips)] or not set(skips) <= set(encoder.channels):
            raise ValueError(f"model.skips: expected a prefix of {SKIPS} the encoder provides "
                             f"({sorted(encoder.channels, reverse=True)}), got {skips}")
        self.skips, self.preprocess = skips, preprocess
        self.normalize = Normalize(preprocess)
        self.encoder = encoder
        self.names = {s: encoder.skip_names[s] for s in skips}
        c32 = encoder.channels[32]
        self.fc = fc_width > 0
        if self.fc:
            self.fc6 = nn.Conv2d(c32, fc_width, fc_kernel, padding=fc_kernel // 2)
            self.fc7 = nn.Conv2d(fc_width, fc_width, 1)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.score_fr = nn.Conv2d(fc_width if self.fc else c32, num_classes, 1)
        stride = 32
        if skips:
            self.upscore2 = self._up(num_classes, 2)
        for i, s in enumerate(skips):
            self.add_module(f"score_{self.names[s]}", nn.Conv2d(encoder.channels[s], num_classes, 1))
            last = i == len(skips) - 1
            self.add_module(final_name(s) if last else f"upscore_{self.names[s]}", self._up(num_classes, s if last else 2))
            stride = s
        if not skips:
            self.upscore32 = self._up(num_classes, 32)
        self.out_stride = stride
        self._init(skip_init)

    @staticmethod
    def _up(c: int, factor: int) -> nn.ConvTranspose2d:
        return nn.ConvTranspose2d(c, c, 2 * factor, stride=factor, padding=factor // 2, bias=False)

    def _init(self, skip_init: str) -> None:
        for m in ((self.fc6, self.fc7, self.score_fr) if self.fc else (self.score_fr,)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
        nn.init.normal_(self.score_fr.weight, std=1e-3)
        for i, s in enumerate(self.skips):
            m = getattr(self, f"score_{self.names[s]}")
            if skip_init == "zero":  # the skips start silent and are learned (FCN staged training)
                nn.init.zeros_(m.weight)
            else:  # "scaled": FCN-8s at-once; the first skip scaled by 0.01, the next by 1e-4, ...
                nn.init.normal_(m.weight, std=0.01 ** (i + 1))
            nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                with torch.no_grad():
                    m.weight.copy_(bilinear_kernel(m.in_channels, m.kernel_size[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        if ph or pw:  # pad to a multiple of 32 with the mean colour (0 after normalisation), crop back below
            x = self.normalize(x)
            return self.head(F.pad(x, (0, pw, 0, ph)))[:, :, :h, :w]
        return self.head(self.normalize(x))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input with H, W multiples of 32 -> logits of the same size (the exported graph's core)."""
        feats = self.encoder(x)
        f = feats[32]
        if self.fc:
            f = self.drop(torch.relu(self.fc6(f)))
            f = self.drop(torch.relu(self.fc7(f)))
        else:
            f = self.drop(f)
        s = self.score_fr(f)
        if not self.skips:
            return self.upscore32(s)
        s = self.upscore2(s)
        for i, st in enumerate(self.skips):
            s = s + getattr(self, f"score_{self.names[st]}")(feats[st])
            last = i == len(self.skips) - 1
            s = getattr(self, final_name(st) if last else f"upscore_{self.names[st]}")(s)
        return s

    def with_shuffle_upsampling(self, road_difference: bool = False) -> FCN:
        """A copy whose last upsampling (to full resolution) is a ShuffleUp: the same function, cheaper to run. With
        `road_difference` (two classes) its head returns one channel, the road logit minus the other class's."""
        import copy

        m = copy.deepcopy(self)
        name = final_name(self.skips[-1]) if self.skips else "upscore32"
        up = ShuffleUp.from_transposed(getattr(self, name))
        setattr(m, name, up.road_difference() if road_difference else up)
        return m

    def pad_value(self) -> list[float]:
        """The RGB 0-255 colour that normalises to 0 (used to pad inputs outside the graph)."""
        p = self.preprocess
        v = [m / p.scale for m in p.mean]
        return v[::-1] if p.bgr else v

    def freeze_blocks(self, n: int) -> None:
        """Freeze the encoder's first n blocks (VGG: conv blocks; EfficientNet-Lite: stem and stages)."""
        self.encoder.freeze(n)


def FCN8s(num_classes: int = 2, fc_width: int = 4096, fc_kernel: int = 1, dropout: float = 0.5,
          skip_init: str = "zero", preprocess: Preprocess = CAFFE) -> FCN:
    """FCN-8s (Long, Shelhamer, Darrell 2015) on VGG16, with the paper's layer names."""
    return FCN(VGG16Encoder(), num_classes, (16, 8), fc_width, fc_kernel, dropout, skip_init, preprocess)
