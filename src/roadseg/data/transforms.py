"""Joint image + mask transforms on tensors. Images are resized bilinearly (antialiased when shrinking),
masks always with nearest neighbour. Randomness comes from a per-sample generator seeded by
(seed, epoch, index), so a resumed run draws exactly the same augmentations.

A sample's per-pixel loss weights (`weight`, values in [0, 255]) go through the same scale, crop and flip as the image,
as one more image channel: resized bilinearly, not nearest, because a weight is a density (cells per pixel) that
resampling should average, and nearest sampling of a shrunk map would alias the sparse near-range counts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from roadseg.config import FAR_ZOOM
from roadseg.data.datasets import IGNORE


def resize_image(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) uint8/float -> (C, h, w) float 0-255 (C = 3, or 4 with a weight channel)."""
    x = img.float()[None]
    if tuple(x.shape[-2:]) == tuple(size):
        return x[0]
    shrink = size[0] < x.shape[-2]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)[0].clamp_(0, 255)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].to(torch.uint8)


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(1, round(h * scale)), max(1, round(w * scale))


FAR_BAND = 0.7  # the far band ends at this fraction of the frame height (KITTI's camera: road about 14 m ahead)


def top_rows(h: int, top_crop: float) -> int:
    """How many rows data.top_crop cuts off the top of an h-row frame (the one place of that rule: training,
    inference)."""
    return int(h * top_crop)


def far_band_rows(h: int, top_crop: float) -> tuple[int, int]:
    """The rows [first, end) of an h-row frame that hold the far road: from the top crop to FAR_BAND of the height
    (the one place of that rule: inference's far zoom, data.far_zoom's training samples)."""
    first = top_rows(h, top_crop)
    return first, max(first + 1, int(h * FAR_BAND))


class EvalTransform:
    """Resize the image by `scale` for the network; keep the target at full resolution (metrics are computed
    on full-resolution predictions)."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def __call__(self, s: dict) -> dict:
        h, w = s["image"].shape[-2:]
        s["image"] = resize_image(s["image"], scaled_size(h, w, self.scale))
        return s


class TrainTransform:
    """Training augmentation: top crop, scale jitter, a data.crop window, flip, colour jitter. With `far_zoom` p > 0
    a sample is, with probability p, the far band only (far_band_rows) at FAR_ZOOM times the frame's scale (times
    the jitter), its crop window at the band's foot: what inference's far zoom shows the network in its second
    pass."""

    def __init__(self, scale=1.0, crop=None, scale_jitter=(1.0, 1.0), hflip=True, color_jitter=0.0, seed=0,
                 top_crop=0.0, far_zoom=0.0):
        self.scale, self.crop, self.scale_jitter, self.top_crop = scale, crop, scale_jitter, top_crop
        self.hflip, self.color_jitter, self.seed, self.far_zoom = hflip, color_jitter, seed, far_zoom
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, s: dict) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 10_007 + s["index"])

        def u(lo, hi):
            return lo + (hi - lo) * torch.rand((), generator=g).item()

        img, tgt, wt = s["image"], s["target"], s.get("weight")
        if wt is not None:  # the weights ride as a fourth image channel through every geometric step
            img = torch.cat([img.float(), wt[None].float()])
        zoom = FAR_ZOOM if self.far_zoom > 0 and torch.rand((), generator=g).item() < self.far_zoom else 1.0
        if zoom > 1:
            t, end = far_band_rows(img.shape[-2], self.top_crop)
        else:
            t, end = top_rows(img.shape[-2], self.top_crop), img.shape[-2]  # the rows inference never shows the network
        img, tgt = img[:, t:end], tgt[t:end]
        h, w = img.shape[-2:]
        # the network scale: mixed sets give the frame's own
        size = scaled_size(h, w, s.get("scale", self.scale) * zoom * u(*self.scale_jitter))
        img, tgt = resize_image(img, size), resize_mask(tgt, size)
        if self.crop is not None:
            img, tgt = self._crop(img, tgt, g, bottom=zoom > 1)
        if self.hflip and torch.rand((), generator=g).item() < 0.5:
            img, tgt = img.flip(-1), tgt.flip(-1)
        if wt is not None:
            img, s["weight"] = img[:3], img[3].contiguous()
        j = self.color_jitter
        if j > 0:
            img = img * u(1 - j, 1 + j)  # brightness
            mean = img.mean()
            img = (img - mean) * u(1 - j, 1 + j) + mean  # contrast
            grey = img.mean(0, keepdim=True)
            img = (img - grey) * u(1 - j, 1 + j) + grey  # saturation
            img = img.clamp(0, 255)
        s["image"], s["target"] = img.contiguous(), tgt.contiguous()
        return s

    def _crop(self, img: torch.Tensor, tgt: torch.Tensor, g: torch.Generator,
              bottom: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """A random data.crop window, padded first where the frame is smaller: the image with a mean-ish grey (a
        weight channel with it: those pixels are ignored), the mask with ignore. `bottom`: the window's rows are the
        last ones (a far band's window then always holds the far road, at the band's foot)."""
        ch, cw = self.crop
        ph, pw = max(0, ch - img.shape[1]), max(0, cw - img.shape[2])
        if ph or pw:
            img = F.pad(img, (0, pw, 0, ph), value=114.0)
            tgt = F.pad(tgt, (0, pw, 0, ph), value=IGNORE)
        y = int(torch.randint(0, img.shape[1] - ch + 1, (), generator=g))
        y = img.shape[1] - ch if bottom else y  # drawn all the same: the draws after it stay as they were
        x = int(torch.randint(0, img.shape[2] - cw + 1, (), generator=g))
        return img[:, y : y + ch, x : x + cw], tgt[y : y + ch, x : x + cw]


def collate(batch: list[dict]) -> dict:
    out = {"image": torch.stack([b["image"] for b in batch]),
           "name": [b["name"] for b in batch], "category": [b["category"] for b in batch],
           "index": torch.tensor([b["index"] for b in batch])}
    if batch[0]["target"] is not None:
        out["target"] = torch.stack([b["target"] for b in batch])
    if batch[0].get("weight") is not None:
        out["weight"] = torch.stack([b["weight"] for b in batch])
    return out
