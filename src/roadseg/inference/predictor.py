"""Predictor: RGB uint8 frames in, full-resolution road probabilities out, on one of two backends:
`torch` (fp32, bf16 autocast, fp16 on CUDA; optionally torch.compile) or `onnxruntime` (an exported
.onnx file: fp32, graph-optimized, INT8, fp16). The network sees each frame resized by `scale`; its output
is upsampled back to the frame's size before the softmax (for two classes: sigmoid of the logit difference,
which is upsampled once instead of two maps)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from roadseg.data.transforms import resize_image, scaled_size
from roadseg.device import cpu_name, cpu_supports_bf16  # noqa: F401 (cpu_name: re-exported)
from roadseg.errors import DataError, PrecisionError, RoadsegError, WeightsError

log = logging.getLogger(__name__)
BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "compiled")
# Network input pixels per call (frames x height x width). Measured: ONNX Runtime fp32 on the VGG16 FCN peaks at
# about 0.5 kB per input pixel (1 Mpx: +0.5 GB), so 12 Mpx is about 6 GB; a 64-Mpx input would need about 30 GB.
# Batches over it run in smaller chunks; a single frame over it is refused (use --size or a smaller --scale). The
# full-resolution side (upsampled probabilities, overlays) costs about 35 bytes per image pixel (64 Mpx: 2.2 GB peak).
MAX_NETWORK_PIXELS = 12_000_000


def check_precision(backend: str, precision: str, device: str) -> None:
    if backend not in BACKENDS:
        raise PrecisionError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    if backend == "onnxruntime" and precision in ("bf16", "compiled"):
        raise PrecisionError(f"{precision} runs on the torch backend; onnxruntime runs fp32, int8 or fp16")
    if backend == "torch" and precision == "int8":
        raise PrecisionError("int8 runs on the onnxruntime backend: make one with `roadseg export` then `roadseg quantize`")
    if device == "cpu" and precision == "bf16" and not cpu_supports_bf16():
        raise PrecisionError("bf16 needs a CPU with AVX-512 BF16 or AMX; this CPU has neither (use fp32)")
    if device == "cpu" and precision == "fp16" and backend == "torch":
        raise PrecisionError("fp16 is for GPUs; on this CPU use bf16 or int8 (onnxruntime)")


def logits_to_prob(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) logits -> (B, H, W) road probability at the frame's size."""
    logits = logits.float()
    if logits.shape[1] == 2:
        d = (logits[:, 1:2] - logits[:, 0:1])
        if tuple(d.shape[-2:]) != tuple(size):
            d = F.interpolate(d, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid_(d[:, 0])  # in place: d is this function's own tensor (saves a full-size copy)
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return torch.softmax(logits, 1)[:, 1]


class Predictor:
    def __init__(self, checkpoint: str | Path | dict | None = None, *, model=None, backend: str = "torch",
                 precision: str = "fp32", scale: float | None = None, size: int | str | None = "auto",
                 device: str = "cpu",
                 onnx_path: str | Path | None = None, threads: int = 0, tta: bool = False, spinning: bool = True,
                 threshold: float | None = None):
        from roadseg.config import from_dict
        from roadseg.models.checkpoint import load_checkpoint, model_from_checkpoint

        self.backend, self.precision, self.tta = backend, precision, tta
        self.device = torch.device("cuda" if device == "cuda" else "cpu") if device != "auto" else \
            torch.device("cuda" if torch.cuda.is_available() else "cpu")
        check_precision(backend, precision, self.device.type)
        self.cfg = None
        stored = None
        if model is None and checkpoint is not None:
            hint = "checkpoint" if isinstance(checkpoint, dict) else str(checkpoint)
            ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
            self.cfg = from_dict(ckpt["config"])
            stored = ckpt.get("threshold")
            if backend == "torch":  # ONNX Runtime needs only the config (scale), not a torch model
                model, _ = model_from_checkpoint(ckpt, hint)
        self.meta = None
        if backend == "onnxruntime":
            from roadseg.optimize.runtime import onnx_precision, read_meta

            if onnx_path is None:
                raise WeightsError("the onnxruntime backend needs an .onnx file (make one with `roadseg export`)")
            self.meta = read_meta(onnx_path)
            self.precision = onnx_precision(onnx_path)  # what the file computes in (reported in metrics.json)
        scale_given = scale
        if scale is None:
            if self.cfg is not None:
                scale = self.cfg.train.val_scale or self.cfg.data.scale
            else:
                scale = (self.meta or {}).get("scale", 1.0)
        self.scale = float(scale)
        # road where probability >= threshold: --threshold, else the validation operating point (MaxF threshold)
        # stored in the file by `roadseg release`, else 0.5
        self.threshold = float(threshold if threshold is not None else stored if stored is not None else 0.5)
        self.threshold_source = "--threshold" if threshold is not None else \
            "the model's validation operating point" if stored is not None else "default"
        if not 0.0 < self.threshold < 1.0:
            raise RoadsegError(f"threshold {self.threshold}: must be between 0 and 1")
        # size: the network's input height in pixels. "auto": frames within 15% of the height of the frames the model
        # was trained on run at its scale; others are resized so the network sees them at that height (so a 540p clip
        # or a 12-megapixel photo looks to the model like its training frames). None: always `scale`.
        self._trained_h = None  # height of the frames the model was trained on (KITTI 375, CamVid 360)
        if size == "auto":
            from roadseg.data.datasets import FRAME_HEIGHT

            self._trained_h = FRAME_HEIGHT.get(self.cfg.data.dataset) if self.cfg is not None else None
            size = "auto" if self._trained_h and scale_given is None else None
        elif size is not None:
            size = int(size)
            if size < 32:
                raise RoadsegError(f"--size {size}: the network input height must be at least 32 pixels")
        self.size = size
        self.model = model
        if backend == "torch":
            if model is None:
                raise RoadsegError("the torch backend needs a checkpoint or a model")
            self.model = model.to(self.device).eval()
            self._run = self.model
            if precision == "compiled":
                self._run = torch.compile(self.model, dynamic=True)
        else:
            from roadseg.optimize.runtime import ort_session

            self.session = ort_session(onnx_path, device=self.device.type, threads=threads, spinning=spinning)
            self._input = self.session.get_inputs()[0].name
            self._in_type = self.session.get_inputs()[0].type

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self._run_network(x)
        except Exception as exc:  # ONNX Runtime's RuntimeException/Fail, torch's allocator errors, MemoryError
            text = str(exc).lower()
            if not isinstance(exc, MemoryError) and "alloc" not in text and "out of memory" not in text:
                raise
            n, _, h, w = x.shape
            raise DataError(f"out of memory running the network on {n} frame(s) of {w}x{h}: use a smaller --size, "
                            "--scale or --batch-size") from None

    def _run_network(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "torch":
            x = x.to(self.device)
            if self.precision in ("bf16", "fp16"):
                dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
                with torch.autocast(self.device.type, dtype=dtype):
                    return self._run(x).float()
            return self._run(x)
        from roadseg.optimize.runtime import pad_batch

        h, w = x.shape[-2:]
        feed = pad_batch(x, self.meta["pad_value"], self.meta["multiple"]).numpy()
        if "float16" in self._in_type:
            feed = feed.astype(np.float16)
        out = self.session.run(None, {self._input: feed})[0]
        return torch.from_numpy(out if out.dtype == np.float32 else out.astype(np.float32))[:, :, :h, :w]

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (3, h, w) float network input at this predictor's scale."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise RoadsegError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
        hw = self.input_size(image.shape[0], image.shape[1])
        if hw[0] * hw[1] > MAX_NETWORK_PIXELS:
            raise DataError(f"a {image.shape[1]}x{image.shape[0]} frame would run at {hw[1]}x{hw[0]} "
                            f"({hw[0] * hw[1] / 1e6:.3g} Mpx), over the {MAX_NETWORK_PIXELS / 1e6:g} Mpx network input "
                            f"limit (memory): use --size (e.g. --size {self._trained_h or 375}) or a smaller --scale")
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return resize_image(t, hw)

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """The network input (height, width) for an h x w frame."""
        if self.size == "auto":
            if abs(h - self._trained_h) <= 0.15 * self._trained_h:
                return scaled_size(h, w, self.scale)
            return scaled_size(h, w, round(self._trained_h * self.scale) / h)
        if self.size:
            return scaled_size(h, w, self.size / h)
        return scaled_size(h, w, self.scale)

    @torch.no_grad()
    def predict_batch(self, images) -> list[np.ndarray]:
        """Frames -> list of (H, W) float32 road probabilities in [0, 1], one per frame, at the frame's size.
        A frame is an (H, W, 3) uint8 RGB array or a PIL image; an (N, H, W, 3) uint8 array is N frames."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        images = [as_frame(im) for im in images]
        if not images:
            return []
        h, w = images[0].shape[:2]
        if any(im.shape[:2] != (h, w) for im in images):
            return [p for im in images for p in self.predict_batch([im])]
        hi, wi = self.input_size(h, w)
        per_call = max(1, MAX_NETWORK_PIXELS // (hi * wi * (2 if self.tta else 1)))  # memory: big frames, fewer per call
        if len(images) > per_call:
            return [p for i in range(0, len(images), per_call) for p in self.predict_batch(images[i : i + per_call])]
        x = torch.stack([self.prepare(im) for im in images])
        if self.tta:  # the frame and its mirror image in one batch; the mirrored probabilities flipped back
            p = logits_to_prob(self._logits(torch.cat([x, x.flip(-1)])), (h, w))
            prob = 0.5 * (p[: len(images)] + p[len(images) :].flip(-1))
        else:
            prob = logits_to_prob(self._logits(x), (h, w))
        return list(prob.cpu().numpy())  # float32 already: views, no copy

    def predict(self, image) -> np.ndarray:
        """One frame ((H, W, 3) uint8 RGB array or PIL image) -> (H, W) float32 road probability in [0, 1]."""
        return self.predict_batch([image])[0]


def as_frame(image) -> np.ndarray:
    """The one frame format: (H, W, 3) uint8 RGB. PIL images are converted to RGB; anything else is refused with
    what to do (float arrays are ambiguous, 0-1 or 0-255, so they are not guessed at)."""
    if not isinstance(image, np.ndarray):
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover
            Image = None
        if Image is not None and isinstance(image, Image.Image):
            return np.array(image.convert("RGB"))  # a writable copy
        raise RoadsegError(f"expected a frame as an (H, W, 3) uint8 RGB numpy array or a PIL image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise RoadsegError(f"expected an (H, W, 3) RGB frame, got shape {image.shape} (grey frames: np.stack([g] * 3, -1); "
                           "RGBA: drop the alpha channel)")
    if image.dtype != np.uint8:
        raise RoadsegError(f"expected uint8 RGB 0-255, got {image.dtype}: convert explicitly, e.g. "
                           "(x * 255).round().astype(np.uint8) for floats in [0, 1]; OpenCV's BGR: frame[..., ::-1]")
    return image


def resolve_backend(backend: str = "auto", precision: str = "auto") -> tuple[str, str]:
    """'auto' is the fastest path within the accuracy budget (see the README's benchmark): ONNX Runtime INT8."""
    if backend == "auto":
        return "onnxruntime", ("int8" if precision == "auto" else precision)
    return backend, ("fp32" if precision == "auto" else precision)


def load(model: str | Path | dict | None = None, *, backend: str = "auto", precision: str = "auto",
         scale: float | None = None, size: int | str | None = "auto", device: str = "cpu",
         onnx: str | Path | None = None, threads: int = 0,
         tta: bool = False, spinning: bool = True, threshold: float | None = None) -> Predictor:
    """The one predictor factory (CLI, eval, report, demo, Python API): a shipped model's name (None: the default),
    a checkpoint path, or a checkpoint dict from load_checkpoint -> a Predictor. The checkpoint is read once; with ONNX Runtime no torch model is built
    (the optimized graph comes from the cache, made on first use: export, and INT8 calibrated on the frames the
    file carries)."""
    from roadseg.models.checkpoint import load_checkpoint
    from roadseg.models.shipped import locate
    from roadseg.optimize.cache import optimized_model

    if isinstance(model, dict):  # a checkpoint the caller has already read
        path, ckpt = model.get("_path", "checkpoint"), model
    else:
        path = locate(model)
        ckpt = load_checkpoint(path)
    asked = precision
    backend, precision = resolve_backend(backend, precision)
    check_precision(backend, precision, "cuda" if device == "cuda" else "cpu")  # before any graph is built
    if backend == "onnxruntime" and onnx is None:
        onnx, precision = optimized_model(ckpt, precision, name=str(path))
    elif backend == "onnxruntime":  # a file of the user's: its graph says what it computes in
        from roadseg.optimize.runtime import onnx_precision

        found = onnx_precision(onnx)
        if asked != "auto" and found != precision:
            raise PrecisionError(f"{onnx}: is an {found} model, not {precision} (drop --precision, or pass "
                                 f"--precision {found})")
        precision = found
    return Predictor(ckpt, backend=backend, precision=precision, scale=scale, size=size, device=device, onnx_path=onnx,
                     threads=threads, tta=tta, spinning=spinning, threshold=threshold)
