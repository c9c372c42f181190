"""Optimized models built on demand from a checkpoint and cached (ROADSEG_CACHE/onnx/<sha>_<precision>.onnx):
the ONNX export, and its INT8 copy calibrated on the frames the checkpoint carries (`roadseg release` stores 16 of
its training frames in it) or, for a training checkpoint, on its own training frames.

A cache that cannot be written (ROADSEG_CACHE or HOME read-only, a file, on a full disk) is not an error: a model
already in it is used, and one not yet built is built in a temporary folder removed at exit, with one warning line
(every run then pays the build again)."""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from pathlib import Path

from roadseg.data.io import check_writable
from roadseg.errors import DataError, WeightsError
from roadseg.models.checkpoint import (
    ModelInfo,
    checkpoint_digest,
    load_checkpoint,
    model_from_checkpoint,
    training_frames,
)
from roadseg.models.weights import cache_dir

log = logging.getLogger(__name__)
VERSION = 4  # bumped whenever export or quantization changes, so no stale graph is reused
# (2: Clip quantized; 3: the last upsampling exported as conv + pixel shuffle, kept in float;
# 4: the metadata carries the trained frame height and the threshold)


def optimized_model(checkpoint: str | Path | dict, precision: str, name: str | None = None) -> tuple[Path, str]:
    """(onnx path, precision). `checkpoint`: a path or a dict from load_checkpoint (then the file is not read again).
    INT8 is calibrated on the checkpoint's stored frames, or its training frames; with neither, a clear error."""
    from roadseg.optimize.runtime import export_onnx

    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    name = name or (str(checkpoint) if not isinstance(checkpoint, dict) else "checkpoint")
    key = f"{checkpoint_digest(ckpt)[:16]}_v{VERSION}"
    d = cache_dir() / "onnx"
    if not (d / f"{key}_{precision if precision in ('fp16', 'int8') else 'fp32'}.onnx").is_file():
        d = _writable_cache(d)
    fp32 = d / f"{key}_fp32.onnx"
    if not fp32.is_file():
        model, _ = model_from_checkpoint(ckpt, name)
        export_onnx(model, fp32, meta=ModelInfo.from_checkpoint(ckpt, name).to_meta())
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
    from roadseg.optimize.quantize import quantize_int8

    with tempfile.TemporaryDirectory(prefix="roadseg-calib-") as tmp:
        frames = calibration_files(ckpt, name, Path(tmp))
        log.info("INT8: calibrating %s on %d frames", name, len(frames))
        quantize_int8(fp32, int8, [str(f) for f in frames], method="minmax", count=len(frames))
    return int8, "int8"


_TEMP_CACHE: dict[Path, Path] = {}  # unwritable cache folder -> this process's temporary stand-in


def _writable_cache(d: Path) -> Path:
    """`d`, or where it cannot be written, a temporary folder for this process (removed at exit), said once."""
    if d in _TEMP_CACHE:
        return _TEMP_CACHE[d]
    try:
        return check_writable(d, folder=True, what="model cache (ROADSEG_CACHE, default ~/.cache/roadseg)")
    except DataError as exc:
        tmp = Path(tempfile.mkdtemp(prefix="roadseg-onnx-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        _TEMP_CACHE[d] = tmp
        log.warning("%s; building the ONNX model in %s for this run only (set ROADSEG_CACHE to a writable folder "
                    "to keep it)", exc, tmp)
        return tmp


def calibration_files(ckpt: dict, name: str, tmp: Path) -> list[Path]:
    """The frames to calibrate INT8 on, as files: those stored in the checkpoint, else its training frames."""
    stored = ckpt.get("calibration") or []
    if stored:
        files = []
        for i, t in enumerate(stored):
            f = tmp / f"calib_{i:02d}.jpg"
            f.write_bytes(t.numpy().tobytes())
            files.append(f)
        return files
    try:
        return training_frames(ckpt["config"])
    except DataError as exc:
        raise WeightsError(f"{name}: cannot build the INT8 model: the checkpoint carries no calibration frames and its "
                           f"training frames are not found ({exc}); make a shippable copy with `roadseg release` where "
                           f"the data is, or run with --precision fp32") from None
