"""Inference settings, resolved once: an explicit value > what the model file stores (roadseg.models.checkpoint.
ModelInfo) > the default, validated once, then passed as one frozen object to the runtime, the pre- and
post-processing, the result and the video loop. Errors name the setting, not a command-line flag.

The backends and what each runs are listed here once (BACKENDS); a runtime is one module under
roadseg/inference/runtimes/ and one entry in that table. Backend and device `auto` are decided here too (`choose`):
TensorRT where a CUDA GPU and the tensorrt package exist, else torch on the GPU, else ONNX Runtime INT8 on the CPU;
the settings say what was chosen and why (`chosen`). The network input geometry:

- `size="auto"` (default): a frame within 15% of the height the model was trained on runs at `scale`; a frame of
  another height is first brought to that height (a 540-line clip, a 12-megapixel photo), then scaled. So `scale`
  is always relative to the training frames, whatever the input.
- `size=H`: every frame runs at network height H, its width following (`scale` does not apply; giving both is
  refused).
- `size=None` ("native"): every frame runs at `scale` times its own size.

`top_crop` (from the model file, data.top_crop): the network sees only the frame below its top `top_crop` fraction of
rows (where the training data never has road: sky, trees, buildings); those rows get probability 0. The sizes above
are of the whole frame; the network input is the part below the cut at that size (`input_size`).

`far_zoom` (0: off): a second pass over the far road, the band of rows between the top crop and FAR_BAND of the
frame's height (`roadseg.data.transforms.far_band_rows`), at `far_zoom` times the first pass's scale, averaged with
the first pass there (its weight falls to 0 over the band's last FAR_RAMP of the height, so there is no seam). Where
the road is far, a row of pixels spans metres of road and the network's stride-4 output is coarsest; the zoomed pass
decodes it at a finer step (`zoomed`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from roadseg.errors import PrecisionError, RoadsegError

# backend -> (module of its runtime, the precisions it runs). Adding a runtime: one module, one line here.
BACKENDS = {
    "torch": ("roadseg.inference.runtimes.torch_runtime", ("fp32", "bf16", "fp16", "compiled")),
    "onnxruntime": ("roadseg.inference.runtimes.ort_runtime", ("fp32", "int8", "fp16")),
    "tensorrt": ("roadseg.inference.runtimes.tensorrt_runtime", ("fp16", "int8", "fp32")),
}
PRECISIONS = tuple(dict.fromkeys(p for _, ps in BACKENDS.values() for p in ps))
DEVICES = ("cpu", "cuda", "auto")
AUTO = ("onnxruntime", "int8")  # backend auto: the fastest path within the accuracy budget on a CPU (README benchmark)
# backend auto on a GPU, in order of preference; each with the precision it runs when none is asked for
GPU_AUTO = (("tensorrt", "fp16"), ("torch", "fp16"))
# the first precision of each backend is what `auto` precision means for it when the backend is named
NAMED_DEFAULT = {"torch": "fp32", "onnxruntime": "fp32", "tensorrt": "fp16"}
TENSORRT_MIN_CAPABILITY = (7, 5)  # Turing and newer: what current TensorRT 10.x and 11.x releases build for
TENSORRT_MIN_VERSION = 10  # strongly typed networks (precision in the graph), the only kind 11.x builds
BF16_MIN_CAPABILITY = (8, 0)  # bf16 kernels on CUDA: Ampere and newer


@dataclass(frozen=True)
class Platform:
    """What this machine offers inference: a CUDA GPU (its name and compute capability) and the TensorRT package's
    version (None where it is not installed). Probed once by `probe`; tests pass their own."""

    cuda: bool = False
    gpu: str = ""
    capability: tuple[int, int] = (0, 0)
    tensorrt: str | None = None

    def gpu_text(self) -> str:
        return f"{self.gpu or 'the GPU'} (compute capability {self.capability[0]}.{self.capability[1]})"

    def tensorrt_ok(self) -> bool:
        """A TensorRT this runtime can use on this GPU: version 10 or later, a Turing or newer GPU."""
        major = (self.tensorrt or "").split(".")[0]
        return (major.isdigit() and int(major) >= TENSORRT_MIN_VERSION and self.cuda
                and self.capability >= TENSORRT_MIN_CAPABILITY)


def probe(cuda_available: bool | None = None) -> Platform:
    """This machine's Platform. `cuda_available` overrides torch's answer (tests); TensorRT is only looked for where
    there is a GPU (its import needs CUDA's libraries)."""
    import torch

    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if not cuda:
        return Platform()
    if not torch.cuda.is_available():  # told there is one (tests): nothing more to ask
        return Platform(cuda=True, gpu="a CUDA GPU", capability=(9, 0))
    return Platform(True, torch.cuda.get_device_name(), tuple(torch.cuda.get_device_capability()), _tensorrt_version())


def _tensorrt_version() -> str | None:
    try:
        import tensorrt
    except Exception:  # not installed, or installed without the CUDA libraries it loads
        return None
    return str(getattr(tensorrt, "__version__", "unknown"))
SIZE_TOLERANCE = 0.15  # size auto: frames within this fraction of the trained height run at the stored scale
SCALE_RANGE = (0.05, 4.0)  # as data.scale's range in the config
SIZE_RANGE = (32, 8192)
DEFAULT_THRESHOLD = 0.5  # road where p >= this, for a model file that stores no operating point
FAR_RAMP = 0.05  # over the band's last rows of this fraction of the height, the zoomed pass's weight falls to 0
FAR_WEIGHT = 0.5  # the zoomed pass's weight in the band (the mean of the two passes)
FAR_ZOOM_RANGE = (1.0, 4.0)


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
    chosen: str = ""  # backend auto: what was chosen and why, in words for the user
    top_crop: float = 0.0  # the top fraction of a frame's rows the network does not see (road probability 0)
    far_zoom: float = 0.0  # the far band's second pass, at this times the scale (0: none)

    def top(self, h: int) -> int:
        """The rows above the network's view in an h-row frame (top_crop)."""
        from roadseg.data.transforms import top_rows

        return top_rows(h, self.top_crop)

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """The network input (height, width) for an h x w frame: its rows below `top(h)`, at the frame's scale."""
        factor = self.factor(h)
        return max(1, round((h - self.top(h)) * factor)), max(1, round(w * factor))

    def factor(self, h: int) -> float:
        """The frame's scale on its way into the network, for an h-row frame (size and scale: module docstring)."""
        if isinstance(self.size, int):
            return self.size / h
        if self.size == "auto" and self.frame_height and abs(h - self.frame_height) > SIZE_TOLERANCE * self.frame_height:
            return round(self.frame_height * self.scale) / h
        return self.scale

    def far_band(self, h: int) -> tuple[int, int]:
        """The rows [first, end) of an h-row frame that far_zoom's second pass covers."""
        from roadseg.data.transforms import far_band_rows

        return far_band_rows(h, self.top_crop)

    def zoomed(self, h: int) -> InferenceSettings:
        """The settings of far_zoom's second pass, run on the far band of an h-row frame cut out (its own frame):
        far_zoom times the first pass's scale (what size and scale make of an h-row frame), native size, no top crop
        and no second zoom."""
        return self.replace(size=None, scale=self.factor(h) * self.far_zoom, top_crop=0.0, far_zoom=0.0)

    def record(self) -> dict:
        """What shapes the probabilities, for a run's JSON record (metrics.json, predict's and video's summaries)."""
        return {"backend": self.backend, "precision": self.precision, "scale": self.scale, "size": self.size,
                "tta": self.tta, "top_crop": self.top_crop, "far_zoom": self.far_zoom}

    def label(self) -> str:
        """The same in words, for a command's summary line: 'onnxruntime int8', then flip TTA and far zoom if on."""
        extras = ["flip TTA"] * self.tta + [f"far zoom {self.far_zoom:g}x"] * bool(self.far_zoom)
        return " ".join([self.backend, self.precision]) + "".join(f", {e}" for e in extras)

    def replace(self, **changes) -> InferenceSettings:
        return dataclasses.replace(self, **changes)


def resolve_device(device: str = "cpu", cuda_available: bool | None = None, backend: str = "torch") -> str:
    """'cpu' or 'cuda' for `backend`. `auto` is CUDA where torch sees a GPU, for the backends that run there (torch,
    tensorrt; ONNX Runtime runs on the CPU, TensorRT only on the GPU); `cuda_available` injects torch's answer (tests)."""
    if device not in DEVICES:
        raise RoadsegError(f"device '{device}': choose from {', '.join(DEVICES)}")
    if device != "auto" or backend in ("onnxruntime", "tensorrt"):
        return {"auto": "cpu" if backend == "onnxruntime" else "cuda"}.get(device, device)
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    return "cuda" if cuda_available else "cpu"


def check_precision(backend: str, precision: str, device: str, platform: Platform | None = None) -> None:
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
    if device == "cpu":
        _check_cpu(backend, precision)
    elif platform is not None:
        _check_gpu(backend, precision, platform)


def _check_cpu(backend: str, precision: str) -> None:
    if backend == "tensorrt":
        raise PrecisionError("backend tensorrt runs on an NVIDIA GPU, not on the CPU: use --device cuda, or backend "
                             "onnxruntime on the CPU")
    if precision == "bf16":
        from roadseg.device import cpu_supports_bf16

        if not cpu_supports_bf16():
            raise PrecisionError("precision bf16 needs a CPU with AVX-512 BF16 or AMX; this CPU has neither (use fp32)")
    if precision == "fp16" and backend == "torch":
        raise PrecisionError("precision fp16 on backend torch is for GPUs; on this CPU use bf16 or int8 (onnxruntime)")


def _check_gpu(backend: str, precision: str, platform: Platform) -> None:
    """device cuda: a GPU torch can see, and for TensorRT the package and a GPU it builds for."""
    if not platform.cuda:
        raise PrecisionError("device cuda: torch sees no CUDA GPU here (no NVIDIA GPU or driver, a CPU-only torch "
                             "build, or CUDA_VISIBLE_DEVICES empty); use --device cpu")
    if backend == "tensorrt":
        if platform.tensorrt is None:
            raise PrecisionError("backend tensorrt needs NVIDIA TensorRT's Python package: pip install "
                                 "'roadseg[tensorrt]' (or use backend torch on the GPU)")
        if not platform.tensorrt.split(".")[0].isdigit() or int(platform.tensorrt.split(".")[0]) < TENSORRT_MIN_VERSION:
            raise PrecisionError(f"backend tensorrt needs TensorRT 10 or later; found {platform.tensorrt}: pip install "
                                 "-U 'roadseg[tensorrt]'")
        if platform.capability < TENSORRT_MIN_CAPABILITY:
            raise PrecisionError(f"backend tensorrt needs compute capability 7.5 (Turing) or newer; "
                                 f"{platform.gpu_text()} is older: use backend torch")
    if precision == "bf16" and platform.capability < BF16_MIN_CAPABILITY:
        raise PrecisionError(f"precision bf16 on CUDA needs compute capability 8.0 (Ampere) or newer; "
                             f"{platform.gpu_text()} is older: use fp16")


def choose(backend: str, precision: str, device: str, platform: Platform) -> tuple[str, str, str, str]:
    """(backend, precision, device, why) for the asked backend/precision/device ('auto' allowed in each): a named
    backend runs its NAMED_DEFAULT precision for 'auto'; backend auto takes the first of GPU_AUTO that this machine
    can run (where device allows a GPU), else AUTO on the CPU; `why` says what was chosen, for backend auto."""
    if device not in DEVICES:
        raise RoadsegError(f"device '{device}': choose from {', '.join(DEVICES)}")
    if backend != "auto":
        device = resolve_device(device, platform.cuda, backend)
        return backend, NAMED_DEFAULT.get(backend, "fp32") if precision == "auto" else precision, device, ""
    if device != "cpu" and platform.cuda:
        for b, p in GPU_AUTO:
            want = p if precision == "auto" else precision
            if want not in BACKENDS[b][1] or (b == "tensorrt" and not platform.tensorrt_ok()):
                continue
            why = (f"TensorRT {platform.tensorrt} on {platform.gpu}" if b == "tensorrt" else
                   f"torch on {platform.gpu} (for TensorRT: pip install 'roadseg[tensorrt]')")
            return b, want, "cuda", f"backend auto: {b} {want} on cuda, {why}"
    if device == "cuda":
        _check_gpu("torch", "fp32", platform)  # no GPU: say so rather than fall back to the CPU silently
    want = AUTO[1] if precision == "auto" else precision
    why = "no CUDA GPU here" if not platform.cuda else "device cpu" if device == "cpu" else f"{want} on the GPU needs TensorRT"
    return AUTO[0], want, "cpu", f"backend auto: {AUTO[0]} {want} on cpu ({why})"


def resolve_backend(backend: str = "auto", precision: str = "auto") -> tuple[str, str]:
    """'auto' backend on a CPU: AUTO (with the precision asked, if any); 'auto' precision on a named backend: its
    NAMED_DEFAULT."""
    b, p, _, _ = choose(backend, precision, "cpu", Platform())
    return b, p


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


def far_zoom_factor(text: str) -> float:
    """The command line's --far-zoom (an argparse type, for every command that has the flag): a factor in (1, 4]; a
    path where the factor goes is named so, as `--far-zoom` without a factor takes the next word."""
    import argparse

    lo, hi = FAR_ZOOM_RANGE
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a factor in ({lo:g}, {hi:g}], got {text!r} (inputs go before "
                                         "--far-zoom, or give the factor: --far-zoom 2)") from None
    if not lo < v <= hi:
        raise argparse.ArgumentTypeError(f"expected a factor in ({lo:g}, {hi:g}], got {text}")
    return v


def resolve(info, *, backend: str = "auto", precision: str = "auto", device: str = "auto", scale: float | None = None,
            size: int | str | None = "auto", threshold: float | None = None, tta: bool = False, batch_size: int = 4,
            threads: int = 0, spinning: bool = True, onnx: str | Path | None = None,
            cuda_available: bool | None = None, platform: Platform | None = None,
            top_crop: float | None = None, far_zoom: float | None = None) -> InferenceSettings:
    """The settings for running the model `info` (a ModelInfo): each explicit argument, else what the model file
    stores (scale, trained frame height, threshold), else the default; validated here, once.

    backend/precision: 'auto' is TensorRT fp16 or torch fp16 on a GPU, ONNX Runtime INT8 on the CPU (`choose`); a
    backend given with precision 'auto' runs its NAMED_DEFAULT. device: 'cpu', 'cuda' or 'auto' (CUDA where available
    and the backend runs there). platform: what the machine offers (default: probed; `cuda_available` overrides
    torch's answer). scale: the network input scale (default the model's). size:
    'auto', a height in pixels, or None/'native' (see the module docstring). threshold: road where p >= it, strictly
    between 0 and 1 (default the model's stored operating point, else 0.5). tta: average with the mirrored frame.
    batch_size: frames per network call. threads: ONNX Runtime intra-op threads (0: its default). spinning: let idle
    ONNX Runtime threads spin (off when other work shares the cores). onnx: an .onnx file to run instead of the graph
    built from the checkpoint. top_crop: the top fraction of rows the network does not see (default the model's;
    0: whole frames, for a camera whose road reaches higher in the frame than in the training data). far_zoom: the
    far band's second pass at this times the scale, in FAR_ZOOM_RANGE without its lower end (None or 0: none; see the
    module docstring)."""
    from_file = onnx is not None and precision == "auto"
    if onnx is not None and backend == "auto":
        backend = "onnxruntime"
    platform = platform or probe(cuda_available)
    backend, precision, device, chosen = choose(backend, precision, device, platform)
    check_precision(backend, precision, device, platform)
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
    top_crop = _check_range("top_crop", info.top_crop if top_crop is None else top_crop, 0.0, 0.9)
    far_zoom = _check_range("far_zoom", far_zoom, *FAR_ZOOM_RANGE) if far_zoom else 0.0
    if far_zoom == FAR_ZOOM_RANGE[0]:
        raise RoadsegError("far_zoom 1: the band again at the same scale adds work and nothing else; use 0 (off) or a "
                           f"factor in ({FAR_ZOOM_RANGE[0]:g}, {FAR_ZOOM_RANGE[1]:g}]")
    return InferenceSettings(backend, precision, device, scale, size, info.frame_height, float(threshold), source,
                             bool(tta), batch_size, threads, bool(spinning), Path(onnx) if onnx is not None else None,
                             from_file, chosen, float(top_crop), far_zoom)
