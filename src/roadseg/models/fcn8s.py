"""FCN-8s (Long, Shelhamer, Darrell 2015) on the VGG16 encoder.

Input: RGB float 0-255, (B, 3, H, W), any H and W; the preprocessing of the encoder's weights is applied
inside the model, so every backend (eager, compiled, ONNX) sees the same graph. Output: logits (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from roadseg.models.vgg import CAFFE, Preprocess, VGG16Encoder


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


class FCN8s(nn.Module):
    def __init__(self, num_classes: int = 2, fc_width: int = 4096, fc_kernel: int = 1, dropout: float = 0.5,
                 skip_init: str = "zero", preprocess: Preprocess = CAFFE):
        super().__init__()
        self.preprocess = preprocess
        self.normalize = Normalize(preprocess)
        self.encoder = VGG16Encoder()
        self.fc6 = nn.Conv2d(512, fc_width, fc_kernel, padding=fc_kernel // 2)
        self.fc7 = nn.Conv2d(fc_width, fc_width, 1)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.score_fr = nn.Conv2d(fc_width, num_classes, 1)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, padding=4, bias=False)
        self._init(skip_init)

    def _init(self, skip_init: str) -> None:
        for m in (self.fc6, self.fc7, self.score_fr):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
        nn.init.normal_(self.score_fr.weight, std=1e-3)
        for m in (self.score_pool4, self.score_pool3):
            if skip_init == "zero":  # the skips start silent and are learned (FCN staged training)
                nn.init.zeros_(m.weight)
            else:  # "scaled": FCN-8s at-once; pool4 scaled by 0.01 and pool3 by 1e-4 relative to a normal init
                nn.init.normal_(m.weight, std=0.01 if m is self.score_pool4 else 1e-4)
            nn.init.zeros_(m.bias)
        for m in (self.upscore2, self.upscore_pool4, self.upscore8):
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
        pool3, pool4, pool5 = self.encoder(x)
        f = self.drop(torch.relu(self.fc6(pool5)))
        f = self.drop(torch.relu(self.fc7(f)))
        s = self.upscore2(self.score_fr(f))
        s = self.upscore_pool4(s + self.score_pool4(pool4))
        return self.upscore8(s + self.score_pool3(pool3))

    def pad_value(self) -> list[float]:
        """The RGB 0-255 colour that normalises to 0 (used to pad inputs outside the graph)."""
        p = self.preprocess
        v = [m / p.scale for m in p.mean]
        return v[::-1] if p.bgr else v

    def freeze_blocks(self, n: int) -> None:
        """Freeze VGG blocks 1..n (no gradients, eval-mode has no effect as VGG has no BN)."""
        from roadseg.models.vgg import BLOCKS, CONV_NAMES

        for name in CONV_NAMES[: sum(BLOCKS[:n])]:
            for p in getattr(self.encoder, name).parameters():
                p.requires_grad_(False)
