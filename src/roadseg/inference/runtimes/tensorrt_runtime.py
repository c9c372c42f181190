"""The TensorRT runtime (NVIDIA GPUs; `pip install 'roadseg[tensorrt]'`): engines built from the exported ONNX graph
and cached, fp16 and INT8 from explicit Q/DQ.

Precision lives in the graph, not in builder flags (TensorRT 11 removed BuilderFlag.FP16/INT8 and the implicit INT8
calibrators; 10.x builds the same graphs as a strongly typed network): fp16 is the graph with fp16 weights and
activations (float32 in and out), INT8 the graph quantized with symmetric int8 activations and weights
(optimize.quantize, `activations="int8"`), both from the float-layout export (roadseg.optimize.cache, target
"tensorrt"). An engine is built for the shapes the predictor sends, batch 1 to settings.batch_size (twice that with
tta) at one network input size, and cached in ROADSEG_CACHE/tensorrt keyed by the graph's SHA-256, the precision, the
GPU model and compute capability, TensorRT's version and those shapes (`engine_key`); a second input size builds a
second engine on first use.

The frame crosses the bus once each way: uint8 frames go up as they are, become the float (N, 3, H, W) batch on the
GPU (padded to a multiple of 32 with the colour that normalises to zero), and the logits stay there for
processing.postprocess, which upsamples them to the frame's size on the GPU before the one copy back."""

from __future__ import annotations

import logging
import re

import numpy as np
import torch

from roadseg.errors import PrecisionError, RoadsegError, WeightsError

log = logging.getLogger(__name__)
WORKSPACE_BYTES = 1 << 30  # the builder's scratch memory for tactics (the engine's own memory is sized by TensorRT)
BUILD_VERSION = 1  # bumped whenever how engines are built changes (workspace, profile, flags): old ones are not reused
_LOGGERS: dict = {}  # TensorRT keeps one logger per process: one per bindings module, made once


def logger(trt):
    if id(trt) not in _LOGGERS:
        _LOGGERS[id(trt)] = trt.Logger(trt.Logger.WARNING)
    return _LOGGERS[id(trt)]


def import_tensorrt():
    """The tensorrt module, or a one-line error saying what to install."""
    try:
        import tensorrt
    except ImportError:
        raise PrecisionError("backend tensorrt needs NVIDIA TensorRT's Python package: pip install 'roadseg[tensorrt]'") \
            from None
    major = int(str(getattr(tensorrt, "__version__", "0")).split(".")[0] or 0)
    if major < 10:
        raise PrecisionError(f"backend tensorrt needs TensorRT 10 or later (strongly typed networks); found "
                             f"{tensorrt.__version__}: pip install -U 'roadseg[tensorrt]'")
    return tensorrt


def engine_key(graph_sha256: str, precision: str, gpu: str, capability: tuple[int, int], trt_version: str,
               max_batch: int, hw: tuple[int, int]) -> str:
    """The cache file name of an engine: everything an engine is only valid for."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-") or "gpu"
    return (f"{graph_sha256[:16]}_{precision}_{slug}-sm{capability[0]}{capability[1]}_trt{trt_version}"
            f"_b{max_batch}_{hw[0]}x{hw[1]}_v{BUILD_VERSION}.engine")


def build_engine(trt, data: bytes, name: str, input_name: str, shapes, what: str) -> bytes:
    """A serialized engine for the ONNX graph `data`, with one optimisation profile `shapes` (min, opt, max) for its
    input; parse and build failures are one-line errors naming the graph `name`."""
    builder = trt.Builder(logger(trt))
    typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)  # always on (and ignored) in 11.x
    network = builder.create_network(0 if typed is None else 1 << int(typed))
    parser = trt.OnnxParser(network, logger(trt))
    if not parser.parse(data):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "no detail"
        raise WeightsError(f"{name}: TensorRT cannot parse this graph ({errors.splitlines()[0][:200]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *shapes)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise PrecisionError(f"{name}: TensorRT could not build the {what} engine (its log above says why)")
    return bytes(plan)


def frames_to_batch(frames: np.ndarray, device: torch.device, pad_value, multiple: int) -> torch.Tensor:
    """(N, h, w, 3) uint8 frames -> (N, 3, H, W) float 0-255 on `device`, H and W padded to `multiple` with
    `pad_value`: one upload of the bytes, the conversion on the device."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device, non_blocking=True)
    n, h, w, _ = x.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    out = torch.empty(n, 3, h + ph, w + pw, dtype=torch.float32, device=device)
    if ph or pw:
        out[:] = torch.tensor(pad_value, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    out[:, :, :h, :w] = x.permute(0, 3, 1, 2)
    return out


class TrtRuntime:
    """Runs one graph (an OnnxGraph of the float layout) through TensorRT engines, one per network input size.
    `platform` (settings.Platform) names the GPU for the cache key; `device` is where the buffers live ('cuda'; the
    tests run the code path with fake bindings on 'cpu')."""

    backend = "tensorrt"
    input_kind, output_kind = "uint8", "logits"  # see roadseg.inference.runtimes.Runtime

    def __init__(self, graph, precision: str, platform, max_batch: int = 4, device: str = "cuda", trt=None):
        from roadseg.optimize.runtime import INPUT

        self.trt = trt or import_tensorrt()
        self.graph, self.meta, self.precision = graph, graph.meta, precision
        self.platform, self.max_batch, self.device = platform, max_batch, torch.device(device)
        self.input = INPUT
        self._engines: dict = {}  # (H, W) -> (engine, execution context, output name)
        # a stream of its own: on the default stream TensorRT adds device-wide synchronisations to every call
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        n, h, w = frames.shape[:3]
        if n > self.max_batch:
            return torch.cat([self(frames[i : i + self.max_batch]) for i in range(0, n, self.max_batch)])
        x = frames_to_batch(frames, self.device, self.meta["pad_value"], self.meta["multiple"])
        return self.run(x)[:, :, :h, :w]

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The engine for x's size on a padded (N, 3, H, W) float batch already on the device -> logits there."""
        x = x.contiguous().float()
        _, ctx, out_name = self._engine(tuple(x.shape[-2:]))
        if not ctx.set_input_shape(self.input, tuple(x.shape)):
            raise RoadsegError(f"TensorRT refused the input shape {tuple(x.shape)} (engine built for batch 1-"
                               f"{self.max_batch})")
        out = torch.empty(tuple(ctx.get_tensor_shape(out_name)), dtype=torch.float32, device=self.device)
        ctx.set_tensor_address(self.input, x.data_ptr())
        ctx.set_tensor_address(out_name, out.data_ptr())
        if self._stream is None:  # the fake bindings of the tests, on the CPU
            ok = ctx.execute_async_v3(0)
        else:
            caller = torch.cuda.current_stream(self.device)
            self._stream.wait_stream(caller)  # x was written on the caller's stream
            ok = ctx.execute_async_v3(self._stream.cuda_stream)
            caller.wait_stream(self._stream)  # the caller's next ops on `out` wait for the engine
        if not ok:
            raise RoadsegError(f"TensorRT failed to run the {self.precision} engine (its log above says why)")
        return out

    def _engine(self, hw: tuple[int, int]):
        if hw not in self._engines:
            trt = self.trt
            engine = trt.Runtime(logger(trt)).deserialize_cuda_engine(self._plan(hw))
            if engine is None:  # a cached plan this TensorRT cannot load: built once more
                log.warning("TensorRT could not load its cached %s engine for %dx%d; rebuilding it", self.precision,
                            hw[1], hw[0])
                engine = trt.Runtime(logger(trt)).deserialize_cuda_engine(self._plan(hw, rebuild=True))
            if engine is None:
                raise WeightsError(f"TensorRT could not load the {self.precision} engine it built for {hw[1]}x{hw[0]}")
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            out = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
            if any(engine.get_tensor_dtype(n) != trt.DataType.FLOAT for n in names):
                raise WeightsError(f"{self.graph.path}: the engine's input and output must be float32 (the graph's are "
                                   "not)")
            self._engines[hw] = (engine, engine.create_execution_context(), out)
        return self._engines[hw]

    def _plan(self, hw: tuple[int, int], rebuild: bool = False) -> bytes:
        """The serialized engine for input size hw: from the cache, or built (once, under the cache's lock)."""
        import hashlib

        from roadseg.data.io import atomic_write
        from roadseg.models.weights import cache_dir
        from roadseg.optimize.cache import build_lock, entry_problem, record_entry, writable_cache

        p = self.platform
        key = engine_key(hashlib.sha256(self.graph.data).hexdigest(), self.precision, p.gpu, p.capability,
                         str(self.trt.__version__), self.max_batch, hw)
        path = cache_dir() / "tensorrt" / key
        if not rebuild and entry_problem(path) is None:
            return path.read_bytes()
        path = writable_cache(path.parent) / key
        with build_lock(path.with_name(f".{key}.lock"), str(self.graph.path)):
            if rebuild or entry_problem(path) is not None:
                shapes = [(b, 3, *hw) for b in (1, self.max_batch, self.max_batch)]
                log.info("TensorRT: building the %s engine for %dx%d, batch 1-%d (once; cached in %s)",
                         self.precision, hw[1], hw[0], self.max_batch, path.parent)
                plan = build_engine(self.trt, self.graph.data, str(self.graph.path), self.input, shapes,
                                    f"{self.precision} {hw[1]}x{hw[0]}")
                atomic_write(path, lambda f: f.write(plan))
                record_entry(path)
            return path.read_bytes()


def open(settings, source) -> TrtRuntime:  # noqa: A001 - the runtime modules' one entry point
    from roadseg.inference.settings import probe
    from roadseg.optimize.cache import optimized_model
    from roadseg.optimize.runtime import read_graph

    if source.checkpoint is None:
        raise RoadsegError("backend tensorrt builds its engines from a model file (a shipped name or a checkpoint)")
    trt = import_tensorrt()
    path, _ = optimized_model(source.checkpoint, settings.precision, name=source.name, target="tensorrt")
    return TrtRuntime(read_graph(path), settings.precision, probe(), settings.batch_size * (2 if settings.tta else 1),
                      settings.device, trt)
