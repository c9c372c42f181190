"""The trained models roadseg ships, by name: `--model kitti-lite0` (the default), `--model kitti-fcn8s-vgg16`,
or a path to any roadseg checkpoint. Each shipped file has a model card in the checkout's models/ folder (models/README.md lists them)."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from roadseg.errors import WeightsError

SHIPPED = {
    "kitti-lite0": "kitti-lite0.pt",  # FCN on EfficientNet-Lite0, skips 16/8/4, full resolution: real time
    "kitti-fcn8s-vgg16": "kitti-fcn8s-vgg16.pt",  # the paper's FCN-8s on VGG16
    "camvid-lite0": "camvid-lite0.pt",  # the Lite0 recipe on CamVid (480x360 street scenes)
}
DEFAULT = "kitti-lite0"  # the most accurate on validation of the two, and the fastest


def search_dirs() -> list[Path]:
    """Where shipped files are looked for: $ROADSEG_MODELS, the source checkout's models/ folder, then the
    environment's share/roadseg/models (where `pip install` of the wheel puts them)."""
    dirs = [Path(os.environ["ROADSEG_MODELS"])] if os.environ.get("ROADSEG_MODELS") else []
    dirs.append(Path(__file__).resolve().parents[3] / "models")
    for root in dict.fromkeys((sysconfig.get_path("data"), sys.prefix)):
        dirs.append(Path(root) / "share" / "roadseg" / "models")
    return dirs


def locate(model: str | os.PathLike | None = None) -> Path:
    """A shipped model's name (None: the default) or a checkpoint path -> the checkpoint file."""
    spec = str(model) if model is not None else DEFAULT
    if spec in SHIPPED:
        for d in search_dirs():
            if (d / SHIPPED[spec]).is_file():
                return d / SHIPPED[spec]
        raise WeightsError(f"shipped model '{spec}' ({SHIPPED[spec]}) not found in "
                           f"{', '.join(str(d) for d in search_dirs())}")
    p = Path(spec)
    if not p.is_file():
        hint = "" if any(c in spec for c in "/\\.") else f" (shipped models: {', '.join(SHIPPED)})"
        raise WeightsError(f"{p}: model file not found{hint}")
    return p
