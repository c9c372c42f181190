"""Optimized models built on demand from a checkpoint and cached (ROADSEG_CACHE/onnx/<sha>_<precision>.onnx):
the ONNX export, and its INT8 copy calibrated on the checkpoint's own training frames."""

from __future__ import annotations

import logging
from pathlib import Path

from roadseg.models.weights import cache_dir, file_digest

log = logging.getLogger(__name__)
VERSION = 2  # bumped whenever export or quantization changes, so no stale graph is reused (2: Clip quantized)


def optimized_model(checkpoint: str | Path, precision: str) -> tuple[Path, str]:
    """(onnx path, precision actually used). int8 falls back to fp32 when no calibration frames are found."""
    from roadseg.config import from_dict
    from roadseg.models.checkpoint import load_checkpoint, model_from_checkpoint
    from roadseg.optimize.runtime import export_onnx

    key = f"{file_digest(Path(checkpoint), 'sha256')[:16]}_v{VERSION}"
    d = cache_dir() / "onnx"
    fp32 = d / f"{key}_fp32.onnx"
    ckpt = load_checkpoint(checkpoint)
    cfg = from_dict(ckpt["config"])
    if not fp32.is_file():
        model, _ = model_from_checkpoint(ckpt, str(checkpoint))
        export_onnx(model, fp32, meta={"scale": cfg.train.val_scale or cfg.data.scale})
    if precision == "fp32":
        return fp32, "fp32"
    if precision == "fp16":
        from roadseg.optimize.runtime import to_fp16

        f16 = d / f"{key}_fp16.onnx"
        return (f16 if f16.is_file() else to_fp16(fp32, f16)), "fp16"
    if precision != "int8":
        return fp32, "fp32"
    int8 = d / f"{key}_int8.onnx"
    if int8.is_file():
        return int8, "int8"
    from roadseg.data import build_dataset
    from roadseg.errors import DataError
    from roadseg.optimize.quantize import quantize_int8

    try:  # the checkpoint's own training frames (KITTI, CamVid or a folder dataset), never validation ones
        frames = [s.image for s in build_dataset(cfg.data, "train").samples]
    except DataError as exc:
        log.warning("no calibration frames for INT8 (%s); using fp32", exc)
        return fp32, "fp32"
    quantize_int8(fp32, int8, [str(f) for f in frames], method="minmax", count=16)
    return int8, "int8"
