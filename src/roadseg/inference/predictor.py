"""The predictor: uint8 RGB frames in, a Result per frame out (full-resolution road probabilities, the mask at the
model's threshold). It is preprocess -> runtime -> postprocess (processing.py, runtimes/), run with one
InferenceSettings resolved by `load` from its arguments and the model file."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from roadseg.errors import DataError
from roadseg.inference import processing
from roadseg.inference.processing import as_frame, network_size, postprocess, preprocess
from roadseg.inference.result import Result
from roadseg.inference.runtimes import ModelSource, open_runtime
from roadseg.inference.settings import InferenceSettings, resolve

log = logging.getLogger(__name__)


class Predictor:
    """Runs one model with one set of settings.

    runtime: a Runtime (runtimes/). settings: the InferenceSettings it runs with (precision as the runtime reports
    it). info: the model file's ModelInfo (its config as info.config, None for a bare ONNX graph). Build one with
    `load`; `Predictor.for_module` wraps a torch module being trained."""

    def __init__(self, runtime, settings: InferenceSettings, info):
        self.runtime, self.info = runtime, info
        self.settings = settings if settings.precision == runtime.precision else settings.replace(precision=runtime.precision)

    @classmethod
    def for_module(cls, module: torch.nn.Module, cfg, precision: str = "fp32", device: str = "cpu") -> Predictor:
        """A torch predictor on a module in memory (training's validation): the settings its config implies."""
        from roadseg.models.checkpoint import ModelInfo

        info = ModelInfo.from_config(cfg, module.preprocess.to_dict())
        settings = resolve(info, backend="torch", precision=precision, device=device)
        return cls(open_runtime(settings, ModelSource(module=module)), settings, info)

    # the settings most callers read, by name
    backend = property(lambda self: self.settings.backend)
    precision = property(lambda self: self.settings.precision)
    scale = property(lambda self: self.settings.scale)
    size = property(lambda self: self.settings.size)
    threshold = property(lambda self: self.settings.threshold)
    threshold_source = property(lambda self: self.settings.threshold_source)
    cfg = property(lambda self: self.info.config)
    model = property(lambda self: getattr(self.runtime, "model", None))  # the torch module (None on ONNX Runtime)

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """The network input (height, width) for an h x w frame."""
        return self.settings.input_size(h, w)

    @torch.no_grad()
    def logits(self, x):
        """The runtime on a network batch (preprocess's output for the runtime's input_kind): logits, or road
        probabilities for a runtime whose output_kind is 'prob'; running out of memory is a one-line DataError."""
        try:
            return self.runtime(x)
        except Exception as exc:  # ONNX Runtime's RuntimeException/Fail, torch's allocator errors, MemoryError
            text = str(exc).lower()
            if not isinstance(exc, MemoryError) and "alloc" not in text and "out of memory" not in text:
                raise
            n, h, w = (x.shape[0], *x.shape[1:3]) if self.runtime.input_kind == "uint8" else (x.shape[0], *x.shape[-2:])
            raise DataError(f"out of memory running the network on {n} frame(s) of {w}x{h}: use a smaller size, "
                            "scale or batch size") from None

    def probabilities(self, images) -> list[np.ndarray]:
        """Frames -> one (H, W) float32 road probability per frame. A frame is an (H, W, 3) uint8 RGB array or a PIL
        image; an (N, H, W, 3) uint8 array is N frames. Frames of different sizes run one by one; a batch over the
        network's pixel budget runs in chunks."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        images = [as_frame(im) for im in images]
        if not images:
            return []
        h, w = images[0].shape[:2]
        if any(im.shape[:2] != (h, w) for im in images):
            return [p for im in images for p in self.probabilities([im])]
        st = self.settings
        runs = processing.passes(images, st)  # one, or two with far_zoom
        pixels = sum(math.prod(network_size(s, *fs[0].shape[:2])) for fs, s in runs)
        per_call = max(1, processing.MAX_NETWORK_PIXELS // (pixels * (2 if st.tta else 1)))
        if len(images) > per_call:
            return [p for i in range(0, len(images), per_call) for p in self.probabilities(images[i : i + per_call])]
        probs = [self._run(fs, s) for fs, s in runs]
        return processing.blend_far(probs[0], probs[1], st.far_band(h)) if st.far_zoom else probs[0]

    def _run(self, images: list[np.ndarray], settings: InferenceSettings) -> list[np.ndarray]:
        """One pass of the network over same-sized frames with `settings`: probabilities at the frames' size."""
        h, w = images[0].shape[:2]
        x = preprocess(images, settings, self.runtime.input_kind)
        return postprocess(self.logits(x), (h, w), settings.tta, self.runtime.output_kind, settings.top(h))

    def result(self, prob: np.ndarray) -> Result:
        """A Result for a probability map at this predictor's threshold (e.g. a smoothed map in video)."""
        return Result(prob, self.settings.threshold, self.settings.threshold_source)

    def predict_batch(self, images) -> list[Result]:
        """Frames (as for `probabilities`) -> one Result per frame."""
        return [self.result(p) for p in self.probabilities(images)]

    def predict(self, image) -> Result:
        """One frame ((H, W, 3) uint8 RGB array or PIL image) -> its Result (.prob, .mask, .overlay(image), .save)."""
        return self.predict_batch([image])[0]


def load(model: str | Path | dict | None = None, *, backend: str = "auto", precision: str = "auto",
         device: str = "auto", scale: float | None = None, size: int | str | None = "auto",
         threshold: float | None = None, tta: bool = False, batch_size: int = 4, threads: int = 0,
         spinning: bool = True, onnx: str | Path | None = None, cuda_available: bool | None = None,
         top_crop: float | None = None, far_zoom: float | None = None) -> Predictor:
    """The one predictor factory (CLI, eval, report, demo, Python API).

    model: a shipped model's name (None: the default, kitti-lite0), a checkpoint path, a checkpoint dict from
    load_checkpoint, or an exported .onnx file. The file is read once; settings are resolved once from the
    arguments, then what the file stores, then defaults (inference.settings.resolve documents each argument:
    backend 'auto' | 'torch' | 'onnxruntime' | 'tensorrt', precision, device 'cpu' | 'cuda' | 'auto', scale, size, threshold,
    tta, batch_size, threads, spinning, onnx, top_crop, far_zoom). With ONNX Runtime no torch model is built: the graph comes from the
    cache, made on first use (exported, and INT8 calibrated on the frames the file carries).

        model = roadseg.load("kitti-lite0")
        r = model.predict(frame)        # frame: (H, W, 3) uint8 RGB
        r.prob, r.mask, r.threshold     # probabilities, the road mask at the model's threshold, that threshold
    """
    from roadseg.models.checkpoint import PATH, ModelInfo, load_checkpoint
    from roadseg.models.shipped import locate

    if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx"):
        from roadseg.optimize.runtime import read_graph

        graph = read_graph(model)
        info = ModelInfo.from_meta(graph.meta, str(model))
        source = ModelSource(graph=graph, name=str(model))
        backend, precision = "onnxruntime", graph.precision if precision == "auto" else precision
    else:
        ckpt = model if isinstance(model, dict) else load_checkpoint(locate(model))
        name = str(ckpt.get(PATH, "checkpoint"))
        info = ModelInfo.from_checkpoint(ckpt, name)
        source = ModelSource(checkpoint=ckpt, name=name)
    settings = resolve(info, backend=backend, precision=precision, device=device, scale=scale, size=size,
                       threshold=threshold, tta=tta, batch_size=batch_size, threads=threads, spinning=spinning,
                       onnx=onnx, cuda_available=cuda_available, top_crop=top_crop, far_zoom=far_zoom)
    if source.graph is not None and settings.precision != source.graph.precision:
        from roadseg.errors import PrecisionError

        raise PrecisionError(f"{model}: is an {source.graph.precision} model, not {settings.precision}")
    return Predictor(open_runtime(settings, source), settings, info)
