"""What a prediction returns: one Result per frame, carrying the decision as well as the probabilities."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadseg.data.io import prob_name, save_png_atomic
from roadseg.metrics import quantize, road_mask


@dataclass
class Result:
    """One frame's prediction.

    prob: (H, W) float32 road probability in [0, 1] at the frame's size. threshold: road where p >= it, and
    threshold_source where it came from ('given', "the model's validation operating point", 'default').
    prob_u8: the 8-bit map KITTI's devkit scores (metrics.quantize). mask: (H, W) bool, the one road decision
    (metrics.road_mask: the 8-bit map at the threshold's level), so the masks written here are exactly the pixels
    `eval` counts as road at that threshold."""

    prob: np.ndarray
    threshold: float
    threshold_source: str = "default"

    @functools.cached_property
    def prob_u8(self) -> np.ndarray:
        return quantize(self.prob)

    @functools.cached_property
    def mask(self) -> np.ndarray:
        return road_mask(self.prob_u8, self.threshold)

    def overlay(self, image: np.ndarray, alpha: float = 0.45, legend: bool = True) -> np.ndarray:
        """The frame with road tinted and its boundary drawn (draw.overlay), legend naming the threshold."""
        from roadseg.inference.draw import overlay

        return overlay(image, self.mask, self.threshold, alpha=alpha, legend=legend)

    def save(self, out_dir: str | Path, stem: str, image: np.ndarray | None = None, probs: bool = False,
             task: str = "road") -> list[Path]:
        """Write `<stem>_mask.png` (road 255, else 0), with `image` `<stem>_overlay.png`, with `probs` the 8-bit
        probability PNG named as KITTI's devkit expects (data.io.prob_name), in `out_dir` (made if missing). Each file
        is written atomically. Returns the files written."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = []
        if image is not None:
            files.append(out / f"{stem}_overlay.png")
            save_png_atomic(self.overlay(image), files[-1])
        files.append(out / f"{stem}_mask.png")
        save_png_atomic(self.mask.astype(np.uint8) * np.uint8(255), files[-1])
        if probs:
            files.append(out / prob_name(stem, task))
            save_png_atomic(self.prob_u8, files[-1])
        return files
