"""Checkpoints: a plain dict (model state, config, preprocessing, metrics, training state) saved atomically
and loaded with `weights_only=True`, so a file that would run code is refused, never executed."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from roadseg.config import map_paths, resolve_paths
from roadseg.data.io import atomic_write
from roadseg.errors import WeightsError

FORMAT = "roadseg-checkpoint/1"
DIGEST, PATH = "_file_sha256", "_path"  # added by load_checkpoint, never saved
CALIBRATION_FRAMES = 16


RELATIVE = "paths_relative_to_file"  # the config's paths are relative to the checkpoint's folder


def atomic_save(obj, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename: never a half-written file.
    A checkpoint's config paths are stored relative to the file's folder, so the file can move with its data."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, dict) and (DIGEST in obj or PATH in obj):
        obj = {k: v for k, v in obj.items() if k not in (DIGEST, PATH)}
    if isinstance(obj, dict) and isinstance(obj.get("config"), dict):
        base = os.path.abspath(path.parent)
        obj = {**obj, "config": map_paths(obj["config"], lambda v: os.path.relpath(os.path.abspath(v), base)), RELATIVE: True}
    return atomic_write(path, lambda f: torch.save(obj, f))


def _first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of a library's message (whole words, at most `limit` characters), for one-line errors."""
    line = (text.strip().splitlines() or [""])[0]
    line = line.split(". ")[0].rstrip(".")
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " ..."


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty checkpoint file (0 bytes)")
    try:
        raw = path.read_bytes()  # read once: the digest (cache key of the optimized graphs) comes from these bytes
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__})") from None
    if raw[:1] == b"\x08" or path.suffix.lower() == ".onnx":  # an ONNX protobuf starts with its ir_version field
        raise WeightsError(f"{path}: is an ONNX model, not a roadseg checkpoint: run it with --backend onnxruntime "
                           f"--onnx {path} (and --model the checkpoint it came from)")
    try:
        ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = _first_sentence(str(exc))
        raise WeightsError(f"{path}: refused: the file holds objects other than tensors and plain data "
                           f"(loaded with weights_only=True, nothing was executed): {first}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = _first_sentence(str(exc)) or type(exc).__name__
        raise WeightsError(f"{path}: truncated or corrupt checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model" not in ckpt or "config" not in ckpt:
        raise WeightsError(f"{path}: not a roadseg checkpoint (expected a dict with format '{FORMAT}')")
    ckpt[DIGEST] = hashlib.sha256(raw).hexdigest()
    ckpt[PATH] = str(path)
    if isinstance(ckpt["config"], dict):  # files from before RELATIVE named paths relative to the working directory
        ckpt["config"] = resolve_paths(ckpt["config"], path.parent if ckpt.pop(RELATIVE, False) else Path.cwd())
    return ckpt


def checkpoint_digest(ckpt: dict | str | Path) -> str:
    """sha256 of the checkpoint file (from the bytes load_checkpoint read; a path is hashed)."""
    if isinstance(ckpt, dict) and DIGEST in ckpt:
        return ckpt[DIGEST]
    return hashlib.sha256(Path(ckpt).read_bytes()).hexdigest()


def model_from_checkpoint(ckpt: dict | str | Path, path_hint: str = "checkpoint"):
    """Rebuild the model (eval mode, float32) from a checkpoint dict or path. Returns (model, config)."""
    from roadseg.config import from_dict
    from roadseg.models import build_model
    from roadseg.models.weights import Preprocess

    if not isinstance(ckpt, dict):
        path_hint = str(ckpt)
        ckpt = load_checkpoint(ckpt)
    try:
        cfg = from_dict(ckpt["config"])
        pre = Preprocess.from_dict(ckpt["preprocess"])
    except Exception as exc:
        raise WeightsError(f"{path_hint}: checkpoint config is unusable ({exc})") from None
    model = build_model(cfg, pretrained=False, preprocess=pre)
    load_weights(model, ckpt, path_hint)
    return model.eval(), cfg


def load_weights(model, ckpt: dict, path_hint: str = "checkpoint", key: str = "model") -> None:
    """Copy a checkpoint's weights `ckpt[key]` (cast to float32) into `model`; a clear error when the shapes or names
    differ. `key="train_model"` reads the trained weights that a run with train.ema stores beside its average."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt[key].items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"{path_hint}: {len(bad)} weight tensors hold NaN or inf (first: {bad[0]}); the file is "
                           "damaged or came from a diverged run")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same names, other shapes
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), "shapes differ")
        raise WeightsError(f"{path_hint}: checkpoint is from another model ({detail[:200]})") from None
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise WeightsError(f"{path_hint}: checkpoint is from another model ({what})")


def make_checkpoint(model, cfg_dict: dict, **extra) -> dict:
    module = getattr(model, "module", model)
    return {"format": FORMAT, "model": module.state_dict(), "config": cfg_dict,
            "preprocess": module.preprocess.to_dict(), **extra}


def release(src: str | Path, dst: str | Path, half: bool = True, calibration: list[str | Path] | None = None,
            threshold: float | None = None, top_crop: float | None = None) -> Path:
    """A shippable copy of a training checkpoint: model weights (fp16 when `half`; loading casts back to fp32),
    config, preprocessing, metrics and history; no optimizer or RNG state. It carries its INT8 calibration frames
    (`calibration` files, else 16 of the checkpoint's own training frames), so that INT8 works wherever the file goes.
    `top_crop`: the top fraction of each frame's rows the file's users skip (stored beside the config, which keeps
    what training cut; default: one already stored, else training's data.top_crop)."""
    if Path(dst).exists() and Path(dst).resolve() == Path(src).resolve():
        raise WeightsError(f"{dst}: is the checkpoint being released; write the copy elsewhere")
    if top_crop is not None and not 0.0 <= top_crop <= 0.9:
        raise WeightsError(f"{dst}: top crop {top_crop} is outside 0-0.9 (a fraction of the frame's rows)")
    ckpt = load_checkpoint(src)
    model_from_checkpoint(ckpt, str(src))  # refuse to ship something that does not rebuild
    state = {k: v.half() if half and v.is_floating_point() else v for k, v in ckpt["model"].items()}
    keep = {k: ckpt[k] for k in ("epoch", "step", "best_maxf", "history", "metrics", "world", "provenance", "frame_height")
            if k in ckpt}
    # calibration frames: given, else those a released file already carries (a re-release keeps its INT8 graph),
    # else 16 of its training frames
    stored = ckpt.get("calibration") if calibration is None else None
    frames = stored or encode_frames(calibration if calibration is not None else training_frames(ckpt["config"]))
    out = {"format": FORMAT, "model": state, "config": ckpt["config"], "preprocess": ckpt["preprocess"],
           "source": ckpt.get("source", Path(src).name),  # a re-release names the training checkpoint, not itself
           "stored_dtype": "float16" if half else "float32", **keep, "calibration": frames}
    # the operating threshold predict/video use: given, or the last validation's MaxF threshold, or one already stored
    thr = threshold if threshold is not None else (ckpt.get("metrics") or {}).get("val_threshold", ckpt.get("threshold"))
    if thr is not None:
        out["threshold"] = float(thr)
    crop = top_crop if top_crop is not None else ckpt.get("top_crop")
    if crop is not None:
        out["top_crop"] = float(crop)
    return atomic_save(out, dst)


def training_frames(cfg_dict: dict, count: int = CALIBRATION_FRAMES) -> list[Path]:
    """`count` frames spread over a checkpoint's training split (never validation ones), for INT8 calibration."""
    from roadseg.config import from_dict
    from roadseg.data import build_dataset

    samples = build_dataset(from_dict(cfg_dict).data, "train").samples
    step = max(1, len(samples) // count)
    return [s.image for s in samples[::step][:count]]


def encode_frames(paths: list[str | Path], quality: int = 90) -> list[torch.Tensor]:
    """Image files -> JPEG bytes as uint8 tensors (plain data a weights_only load accepts); about 100 kB a frame."""
    from PIL import Image

    from roadseg.data.io import read_image

    out = []
    for p in paths:
        buf = io.BytesIO()
        Image.fromarray(read_image(p)).save(buf, format="JPEG", quality=quality)
        out.append(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
    return out


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about how to run it, read in one place: the network input scale, the height of the
    frames it was trained on (what `size auto` resizes other frames to), its operating threshold (None: it stores
    none), its preprocessing and its config. Built from a checkpoint (`from_checkpoint`) or from the metadata of an
    exported ONNX graph (`from_meta`, which `to_meta` writes), so both give the same settings."""

    scale: float
    frame_height: int | None
    threshold: float | None
    preprocess: dict
    config: object = None  # the roadseg.config.Config (None for a bare ONNX graph)
    name: str = "model"
    top_crop: float = 0.0  # the top fraction of each frame's rows the network never sees

    @classmethod
    def from_config(cls, cfg, preprocess: dict, threshold: float | None = None, frame_height: int | None = None,
                    name: str = "model", top_crop: float | None = None) -> ModelInfo:
        from roadseg.data.datasets import FRAME_HEIGHT

        # files written before frame_height was stored: the height of the frames of the dataset they were trained on
        height = frame_height or FRAME_HEIGHT.get(cfg.data.dataset)
        return cls(float(cfg.inference_scale), height, None if threshold is None else float(threshold), preprocess,
                   cfg, name, float(cfg.data.top_crop if top_crop is None else top_crop))

    @classmethod
    def from_checkpoint(cls, ckpt: dict, name: str = "checkpoint") -> ModelInfo:
        from roadseg.config import from_dict

        try:
            cfg = from_dict(ckpt["config"])
        except Exception as exc:
            raise WeightsError(f"{name}: checkpoint config is unusable ({exc})") from None
        # the top crop a released file stores for its users (roadseg release --top-crop), else what training cut
        return cls.from_config(cfg, ckpt.get("preprocess") or {}, ckpt.get("threshold"), ckpt.get("frame_height"), name,
                               ckpt.get("top_crop"))

    @classmethod
    def from_meta(cls, meta: dict, name: str = "model.onnx") -> ModelInfo:
        return cls(float(meta.get("scale", 1.0)), meta.get("frame_height"), meta.get("threshold"),
                   meta.get("preprocess") or {}, None, name, float(meta.get("top_crop", 0.0)))

    def to_meta(self) -> dict:
        """The ONNX metadata entries that carry this (export_onnx adds them to the graph)."""
        return {"scale": self.scale, "frame_height": self.frame_height, "threshold": self.threshold,
                "top_crop": self.top_crop}
