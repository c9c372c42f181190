"""Drawing the road decision over a frame: a tint, the boundary in yellow, and a small legend."""

from __future__ import annotations

import functools

import numpy as np
import torch

from roadseg.inference.processing import as_tensor

ROAD_RGB = (255, 0, 200)  # magenta tint, like the KITTI masks
EDGE_RGB = (255, 255, 0)
_ROAD16, _EDGE8 = torch.tensor(ROAD_RGB, dtype=torch.int16), torch.tensor(EDGE_RGB, dtype=torch.uint8)


def overlay(image: np.ndarray, mask: np.ndarray, threshold: float | None = None, alpha: float = 0.45,
            legend: bool = True) -> np.ndarray:
    """Tint road pixels and draw the road boundary in yellow. image (H, W, 3) uint8, mask (H, W) bool: the road
    decision (metrics.road_mask, what Result.mask holds). Integer arithmetic in torch (multi-threaded):
    image + (tint - image) * alpha, alpha in 1/256 steps. legend (with the threshold the mask was made at): a small
    key in the top-left corner, "road (p >= threshold)" beside a swatch of the tint; drawn once per (frame height,
    threshold, alpha) and pasted, so it costs a video next to nothing. Frames under 160x90 get none."""
    if mask.dtype != np.bool_:
        raise TypeError(f"overlay takes the road mask (bool), got {mask.dtype}: use Result.mask or metrics.road_mask")
    a = int(round(alpha * 256))
    im, road = as_tensor(image), as_tensor(mask)
    i16 = im.to(torch.int16)
    blend = (i16 + (((_ROAD16 - i16) * a) >> 8)).to(torch.uint8)  # |tint - image| * a < 2^15: no overflow
    inner = road.clone()  # 4-neighbour erosion: boundary = road pixels with a non-road neighbour
    inner[1:] &= road[:-1]
    inner[:-1] &= road[1:]
    inner[:, 1:] &= road[:, :-1]
    inner[:, :-1] &= road[:, 1:]
    out = torch.where(road[..., None], blend, im)
    out = torch.where((road & ~inner)[..., None], _EDGE8, out).numpy()
    h, w = out.shape[:2]
    if legend and threshold is not None and w >= 160 and h >= 90:
        rgb, cover = _legend(min(h, w), round(float(threshold), 3), a)
        lh, lw = min(rgb.shape[0], h), min(rgb.shape[1], w)
        region = out[:lh, :lw].astype(np.uint16)  # pixel + (legend - pixel) * cover / 256, cover in 0..256
        out[:lh, :lw] = ((region * (256 - cover[:lh, :lw]) + rgb[:lh, :lw] * cover[:lh, :lw]) >> 8).astype(np.uint8)
    return out


@functools.lru_cache(maxsize=16)
def _legend(short_side: int, threshold: float, a: int) -> tuple[np.ndarray, np.ndarray]:
    """The legend patch: RGB (uint16) and its coverage (uint16, 0..256): a dark translucent box holding a swatch of
    the road tint with the yellow boundary colour as its frame, and the label in white."""
    from PIL import Image, ImageDraw, ImageFont

    px = max(10, round(short_side / 36))  # text height: 15 px on a 540-line frame, 10 px on KITTI's 375
    try:
        font = ImageFont.load_default(px)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    label = f"road (p >= {threshold:.3g})"
    pad = max(2, px // 3)
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), label, font=font)
    sw = px  # the swatch is a square as tall as the text
    bw, bh = pad + sw + pad + (x1 - x0) + pad, pad + max(sw, y1) + pad
    rgba = Image.new("RGBA", (bw + pad, bh + pad), (0, 0, 0, 0))  # a margin of pad from the frame's edge
    d = ImageDraw.Draw(rgba)
    d.rectangle((pad, pad, pad + bw - 1, pad + bh - 1), fill=(0, 0, 0, 150))
    tint = tuple(int(round(90 * (1 - a / 256) + c * a / 256)) for c in ROAD_RGB)  # the tint over a mid-grey road
    sy = pad + (bh - sw) // 2
    d.rectangle((2 * pad, sy, 2 * pad + sw - 1, sy + sw - 1), fill=(*tint, 255), outline=(*EDGE_RGB, 255))
    d.text((3 * pad + sw - x0, pad + (bh - y1) // 2), label, font=font, fill=(255, 255, 255, 255))
    arr = np.asarray(rgba).astype(np.uint16)
    cover = (arr[..., 3:] * 256 + 127) // 255
    return arr[..., :3], cover
