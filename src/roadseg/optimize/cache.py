"""Optimized models built on demand from a checkpoint and cached
(ROADSEG_CACHE/onnx/<file sha>_<config sha>_v<N>_<precision>.onnx, graph_key): the ONNX export, and its INT8 copy
calibrated on the frames the checkpoint carries (`roadseg release` stores 16 of its training frames in it) or, for a
training checkpoint, on its own training frames.

Every entry is recorded beside it when built (`<entry>.json`: size and SHA-256) and checked against that record
before use, so a truncated, emptied or overwritten file (a killed process, a full disk, a stray copy) is rebuilt
with one warning line instead of failing every later run. Building holds a lock per checkpoint (`.<key>.lock`):
two processes asking for the same model at once build it once, and the second uses what the first made.

A cache that cannot be written (ROADSEG_CACHE or HOME read-only, a file, on a full disk) is not an error: a model
already in it is used, and one not yet built is built in a temporary folder removed at exit, with one warning line
(every run then pays the build again)."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from roadseg.data.io import atomic_write, check_writable
from roadseg.errors import DataError, WeightsError
from roadseg.models.checkpoint import (
    ModelInfo,
    checkpoint_digest,
    load_checkpoint,
    model_from_checkpoint,
    training_frames,
)
from roadseg.models.weights import cache_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: builds are not serialised, each still lands whole (rename)
    fcntl = None

log = logging.getLogger(__name__)
VERSION = 5  # bumped whenever export or quantization changes, so no stale graph is reused
# (2: Clip quantized; 3: the last upsampling exported as conv + pixel shuffle, kept in float;
# 4: the metadata carries the trained frame height and the threshold; 5: uint8 NHWC in, road probability out)


def optimized_model(checkpoint: str | Path | dict, precision: str, name: str | None = None,
                    target: str = "onnxruntime") -> tuple[Path, str]:
    """(onnx path, precision). `checkpoint`: a path or a dict from load_checkpoint (then the file is not read again).
    INT8 is calibrated on the checkpoint's stored frames, or its training frames; with neither, a clear error.
    `target` "tensorrt": the graphs TensorRT builds engines from (entries trt-fp32/fp16/int8): float (N, 3, H, W)
    input and logits out (the frame is prepared on the GPU), INT8 with symmetric int8 activations."""
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    name = name or (str(checkpoint) if not isinstance(checkpoint, dict) else "checkpoint")
    precision = precision if precision in ("fp16", "int8") else "fp32"
    precision = f"trt-{precision}" if target == "tensorrt" else precision
    key = graph_key(ckpt, name)
    d = cache_dir() / "onnx"
    entry = d / f"{key}_{precision}.onnx"
    if entry_problem(entry) is None:
        return entry, precision
    d = writable_cache(d)
    with build_lock(d / f".{key}.lock", name):
        return _entry(ckpt, name, d, key, precision), precision


def graph_key(ckpt: dict, name: str = "checkpoint") -> str:
    """The cache key of a checkpoint's graphs: the file's digest, and a digest of what the graph is made of beyond
    the weights (the model section of the config, the preprocessing, the metadata written into the graph), so a
    checkpoint whose config was changed in memory never reuses the graph of the file it was read from. The config's
    paths are left out: the same file read from two folders shares its graphs."""
    made_of = {"model": (ckpt.get("config") or {}).get("model"), "preprocess": ckpt.get("preprocess"),
               "meta": ModelInfo.from_checkpoint(ckpt, name).to_meta()}
    extra = hashlib.sha256(json.dumps(made_of, sort_keys=True, default=str).encode()).hexdigest()
    return f"{checkpoint_digest(ckpt)[:16]}_{extra[:8]}_v{VERSION}"


def _entry(ckpt: dict, name: str, d: Path, key: str, precision: str) -> Path:
    """The checked entry `precision` of `key` in `d`, built (with what it is made from) where missing or damaged."""
    path = d / f"{key}_{precision}.onnx"
    problem = entry_problem(path)
    if problem is None:
        return path
    if problem != "missing":
        log.warning("%s: damaged model cache entry (%s); rebuilding it", path, problem)
    trt, kind = precision.startswith("trt-"), precision.removeprefix("trt-")
    base = "trt-fp32" if trt else "fp32"
    if kind == "fp32":
        from roadseg.optimize.runtime import FLOAT_NCHW, UINT8_NHWC, export_onnx

        model, _ = model_from_checkpoint(ckpt, name)
        export_onnx(model, path, meta=ModelInfo.from_checkpoint(ckpt, name).to_meta(),
                    layout=FLOAT_NCHW if trt else UINT8_NHWC)
    elif kind == "fp16":
        from roadseg.optimize.runtime import to_fp16

        to_fp16(_entry(ckpt, name, d, key, base), path)
    else:
        from roadseg.optimize.quantize import quantize_int8

        fp32 = _entry(ckpt, name, d, key, base)
        with tempfile.TemporaryDirectory(prefix="roadseg-calib-") as tmp:
            frames = calibration_files(ckpt, name, Path(tmp))
            log.info("INT8: calibrating %s on %d frames", name, len(frames))
            quantize_int8(fp32, path, [str(f) for f in frames], method="minmax", count=len(frames),
                          activations="int8" if trt else "uint8")
    record_entry(path)
    return path


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def record_entry(path: Path) -> None:
    """Write the record of a just-built entry: its size and digest (what entry_problem checks it against)."""
    text = json.dumps({"size": path.stat().st_size, "sha256": _digest(path), "version": VERSION})
    atomic_write(_record_path(path), lambda f: f.write(text), text=True)


def entry_problem(path: Path) -> str | None:
    """None when the cache entry `path` is whole (its size and digest are those recorded when it was built),
    'missing' when there is none, else what is wrong with it, in a few words."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    try:
        rec = json.loads(_record_path(path).read_text(encoding="utf-8"))
        want_size, want_sha = int(rec["size"]), str(rec["sha256"])
    except FileNotFoundError:
        return "no build record beside it (an older roadseg's, or a build cut short)"
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError):
        return f"its build record {_record_path(path).name} is unreadable"
    if size != want_size:
        return f"{size} bytes, {want_size} when built"
    try:
        if _digest(path) != want_sha:
            return "its content differs from when it was built (SHA-256)"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    return None


@contextlib.contextmanager
def build_lock(path: Path, name: str):
    """Hold an exclusive lock on `path` while building (waiting, with one info line, for another process's build).
    Where no lock can be had (no fcntl, a folder that refuses the file) the build goes on unlocked: each file still
    lands whole, by rename."""
    fd = None
    if fcntl is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("%s: another process is building this model; waiting for it", name)
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


_TEMP_CACHE: dict[Path, Path] = {}  # unwritable cache folder -> this process's temporary stand-in


def writable_cache(d: Path) -> Path:
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
