"""The README's pictures, made from the shipped default model: `make media` (or `python scripts/make_media.py`).

Writes into docs/media/ (each file atomically):
  kitti_overlay.jpg  the sample KITTI frame shipped with the package, road tinted (what `roadseg predict` draws)
  bev.jpg            the same prediction in KITTI's bird's-eye view (20 m across, 6-46 m ahead), from the frame's
                     calibration file, as the KITTI road server scores it
  video_frame.jpg    one frame of the annotated dash-cam clip (what `roadseg video` draws)
  clip.webp          four seconds of that clip, annotated (animated WebP, a few hundred kB)

The clip is solidWhiteRight.mp4 (MIT licence, github.com/udacity/CarND-LaneLines-P1, test_videos/); pass --video
where it lies elsewhere. About 30 s on 2 CPU cores."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

import roadseg
from roadseg.data import read_image
from roadseg.data.bev import frame_lookup
from roadseg.data.io import atomic_write
from roadseg.data.samples import FRAME

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = Path(os.environ.get("ROADSEG_DATA", ROOT.parent / "shared" / "data")) / "video" / "solidWhiteRight.mp4"


def save_jpeg(image: np.ndarray | Image.Image, path: Path, width: int | None = None, quality: int = 85) -> None:
    im = image if isinstance(image, Image.Image) else Image.fromarray(image)
    if width and im.width != width:
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    atomic_write(path, lambda tmp: im.save(tmp, format="JPEG", quality=quality, optimize=True))


def kitti_pictures(model, out: Path) -> None:
    frame = read_image(FRAME)
    r = model.predict(frame)
    save_jpeg(r.overlay(frame), out / "kitti_overlay.jpg", width=696)  # 210 px high, as the row
    lk = frame_lookup(FRAME, frame.shape[:2])  # None only if the sample lost its calibration file
    bev = lk.warp(r.overlay(frame, legend=False), fill=32)  # (800, 400, 3): far edge at the top
    save_jpeg(bev, out / "bev.jpg", width=105)  # the picture row's height (210 px) for a 1:2 grid


def clip_pictures(model, video: Path, out: Path, still: int, start: int, frames: int, step: int, width: int) -> None:
    import av

    shots, picked = [], set(range(start, start + frames * step, step))
    with av.open(str(video)) as container:
        for i, f in enumerate(container.decode(video=0)):
            if i == still or i in picked:
                rgb = f.to_ndarray(format="rgb24")
                over = model.predict(rgb).overlay(rgb, legend=i == still)
                if i == still:
                    save_jpeg(over, out / "video_frame.jpg", width=373)
                if i in picked:
                    im = Image.fromarray(over)
                    shots.append(im.resize((width, round(im.height * width / im.width)), Image.LANCZOS))
            if i >= max(still, start + frames * step):
                break
    atomic_write(out / "clip.webp", lambda tmp: shots[0].save(
        tmp, format="WEBP", save_all=True, append_images=shots[1:], duration=round(1000 * step / 25), loop=0,
        quality=60, method=6))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="kitti-lite0", help="shipped model name or checkpoint")
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="the dash-cam clip")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "media", help="output folder")
    p.add_argument("--width", type=int, default=400, help="width of the animated clip in pixels")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    model = roadseg.load(a.model)
    kitti_pictures(model, a.out)
    clip_pictures(model, a.video, a.out, still=60, start=0, frames=50, step=2, width=a.width)
    for f in sorted(a.out.iterdir()):
        print(f"{f}  {f.stat().st_size // 1024} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
