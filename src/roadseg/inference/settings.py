"""Inference settings, resolved once: an explicit value > what the model file stores (roadseg.models.checkpoint.
ModelInfo) > the default, validated once, then passed as one frozen object to the runtime, the pre- and
post-processing, the result and the video loop. Errors name the setting, not a command-line flag.

The backends and what each runs are listed here once (BACKENDS); a runtime is one module under
roadseg/inference/runtimes/ and one entry in that table. The network input geometry:

- `size="auto"` (default): a frame within 15% of the height the model was trained on runs at `scale`; a frame of
  another height is first brought to that height (a 540-line clip, a 12-megapixel photo), then scaled. So `scale`
  is always relative to the training frames, whatever the input.
- `size=H`: every frame runs at network height H, its width following (`scale` does not apply; giving both is
  refused).
- `size=None` ("native"): every frame runs at `scale` times its own size."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from roadseg.errors import PrecisionError, RoadsegError

# backend -> (module of its runtime, the precisions it runs). Adding a runtime: one module, one line here.
BACKENDS = {
    "torch": ("roadseg.inference.runtimes.torch_runtime", ("fp32", "bf16", "fp16", "compiled")),
    "onnxruntime": ("roadseg.inference.runtimes.ort_runtime", ("fp32", "int8", "fp16")),
}
PRECISIONS = tuple(dict.fromkeys(p for _, ps in BACKENDS.values() for p in ps))
DEVICES = ("cpu", "cuda", "auto")
AUTO = ("onnxruntime", "int8")  # backend auto: the fastest path within the accuracy budget on a CPU (README benchmark)
SIZE_TOLERANCE = 0.15  # size auto: frames within this fraction of the trained height run at the stored scale
SCALE_RANGE = (0.05, 4.0)  # as data.scale's range in the config
SIZE_RANGE = (32, 8192)
DEFAULT_THRESHOLD = 0.5  # road where p >= this, for a model file that stores no operating point


@dataclass(frozen=True)
class InferenceSettings:
    """Every setting inference uses, resolved (see `resolve`). `threshold_source` says where the threshold came from:
    'given', "the model's validation operating point" or 'default'."""

    backend: str = "torch"
    precision: str = "fp32"
    device: str = "cpu"
    scale: float = 1.0
    size: int | str | None = "auto"
    frame_height: int | None = None  # the height of the frames the model was trained on (size auto)
    threshold: float = DEFAULT_THRESHOLD
    threshold_source: str = "default"
    tta: bool = False
    batch_size: int = 4
    threads: int = 0
    spinning: bool = True
    onnx: Path | None = None
    precision_from_file: bool = False  # onnx given and precision left 'auto': the file's graph says what it runs

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """The network input (height, width) for an h x w frame."""
        if isinstance(self.size, int):
            factor = self.size / h
        elif self.size == "auto" and self.frame_height and abs(h - self.frame_height) > SIZE_TOLERANCE * self.frame_height:
            factor = round(self.frame_height * self.scale) / h
        else:
            factor = self.scale
        return max(1, round(h * factor)), max(1, round(w * factor))

    def replace(self, **changes) -> InferenceSettings:
        return dataclasses.replace(self, **changes)


def resolve_device(device: str = "cpu", cuda_available: bool | None = None) -> str:
    """'cpu' or 'cuda'. `auto` is CUDA where torch sees a GPU; `cuda_available` injects that answer (tests)."""
    if device not in DEVICES:
        raise RoadsegError(f"device '{device}': choose from {', '.join(DEVICES)}")
    if device != "auto":
        return device
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    return "cuda" if cuda_available else "cpu"


def check_precision(backend: str, precision: str, device: str) -> None:
    """Refuse a backend / precision / device combination that cannot run, in one line naming the setting."""
    if backend not in BACKENDS:
        raise PrecisionError(f"backend '{backend}': choose from {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision '{precision}': choose from {', '.join(PRECISIONS)}")
    runs = BACKENDS[backend][1]
    if precision not in runs:
        hint = (": make one with `roadseg export` then `roadseg quantize`, or use backend onnxruntime"
                if precision == "int8" else "")
        raise PrecisionError(f"precision {precision} does not run on backend {backend} (it runs {', '.join(runs)}){hint}")
    if device == "cpu" and precision == "bf16":
        from roadseg.device import cpu_supports_bf16

        if not cpu_supports_bf16():
            raise PrecisionError("precision bf16 needs a CPU with AVX-512 BF16 or AMX; this CPU has neither (use fp32)")
    if device == "cpu" and precision == "fp16" and backend == "torch":
        raise PrecisionError("precision fp16 on backend torch is for GPUs; on this CPU use bf16 or int8 (onnxruntime)")


def resolve_backend(backend: str = "auto", precision: str = "auto") -> tuple[str, str]:
    """'auto' backend: AUTO (with the precision asked, if any); 'auto' precision on a named backend: fp32."""
    if backend == "auto":
        return AUTO[0], (AUTO[1] if precision == "auto" else precision)
    return backend, ("fp32" if precision == "auto" else precision)


def _check_range(name: str, value, lo, hi, kind=float):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise RoadsegError(f"{name} {value!r}: must be a number in [{lo}, {hi}]")
    return kind(value)


def _size(size) -> int | str | None:
    if size in ("auto", None):
        return size
    if size == "native":
        return None
    try:
        v = int(size)
    except (TypeError, ValueError):
        raise RoadsegError(f"size {size!r}: a network input height in pixels, 'auto' or 'native'") from None
    return _check_range("size", v, *SIZE_RANGE, kind=int)


def resolve(info, *, backend: str = "auto", precision: str = "auto", device: str = "cpu", scale: float | None = None,
            size: int | str | None = "auto", threshold: float | None = None, tta: bool = False, batch_size: int = 4,
            threads: int = 0, spinning: bool = True, onnx: str | Path | None = None,
            cuda_available: bool | None = None) -> InferenceSettings:
    """The settings for running the model `info` (a ModelInfo): each explicit argument, else what the model file
    stores (scale, trained frame height, threshold), else the default; validated here, once.

    backend/precision: 'auto' is ONNX Runtime INT8 (AUTO); a backend given with precision 'auto' runs fp32. device:
    'cpu', 'cuda' or 'auto' (CUDA where available). scale: the network input scale (default the model's). size:
    'auto', a height in pixels, or None/'native' (see the module docstring). threshold: road where p >= it, strictly
    between 0 and 1 (default the model's stored operating point, else 0.5). tta: average with the mirrored frame.
    batch_size: frames per network call. threads: ONNX Runtime intra-op threads (0: its default). spinning: let idle
    ONNX Runtime threads spin (off when other work shares the cores). onnx: an .onnx file to run instead of the graph
    built from the checkpoint."""
    from_file = onnx is not None and precision == "auto"
    backend, precision = resolve_backend(backend, precision)
    device = resolve_device(device, cuda_available)
    check_precision(backend, precision, device)
    size = _size(size)
    if scale is not None and isinstance(size, int):
        raise RoadsegError(f"scale {scale} and size {size} exclude each other: size sets the network input height")
    scale = _check_range("scale", info.scale if scale is None else scale, *SCALE_RANGE)
    if threshold is not None:
        source = "given"
    elif info.threshold is not None:
        threshold, source = info.threshold, "the model's validation operating point"
    else:
        threshold, source = DEFAULT_THRESHOLD, "default"
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise RoadsegError(f"threshold {threshold!r}: must be strictly between 0 and 1")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RoadsegError(f"batch_size {batch_size!r}: must be a whole number of frames, at least 1")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise RoadsegError(f"threads {threads!r}: must be 0 (the runtime's default) or more")
    if onnx is not None and backend != "onnxruntime":
        raise RoadsegError(f"onnx {onnx}: an ONNX file runs on backend onnxruntime, not {backend}")
    return InferenceSettings(backend, precision, device, scale, size, info.frame_height, float(threshold), source,
                             bool(tta), batch_size, threads, bool(spinning), Path(onnx) if onnx is not None else None,
                             from_file)
