"""A KITTI Road test frame shipped with the package, so that a first prediction needs no download.

`FRAME` is KITTI Road's testing/image_2/um_000000 (1242x375, re-encoded as JPEG quality 92), laid out as KITTI
keeps it: its calibration file sits at calib/um_000000.txt beside image_2/, so the bird's-eye view and
`predict --kitti-submission` work on it too. KITTI data is CC BY-NC-SA 3.0 (www.cvlibs.net/datasets/kitti).

    python -m roadseg.data.samples          # prints the frame's path
    roadseg predict "$(python -m roadseg.data.samples)" --out quickstart
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
FRAME = HERE / "image_2" / "um_000000.jpg"
CALIBRATION = HERE / "calib" / "um_000000.txt"

__all__ = ["CALIBRATION", "FRAME"]
