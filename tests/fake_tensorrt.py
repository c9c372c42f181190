"""A stand-in for NVIDIA's `tensorrt` bindings, so the TensorRT runtime's code path runs on a CPU: the API subset roadseg
calls (builder, ONNX parser, optimisation profile, runtime, engine, execution context), with checks TensorRT makes
(the input shape within the profile, tensor addresses set before running). Its "engine" is the ONNX graph run by
ONNX Runtime, reading the input from and writing the output to the raw addresses it was given (host memory here), so
a test compares what comes back with the torch model on the same frames."""

from __future__ import annotations

import ctypes
import json

import numpy as np

__version__ = "10.99.0"
BUILDS: list[dict] = []  # one entry per engine built: the profile and the network flags
FAIL_BUILD = False  # set by a test: build_serialized_network returns None, as TensorRT does on failure


class Logger:
    WARNING = 2

    def __init__(self, level=None):
        self.level = level


class NetworkDefinitionCreationFlag:
    STRONGLY_TYPED = 1


class MemoryPoolType:
    WORKSPACE = 0


class TensorIOMode:
    INPUT, OUTPUT = 1, 2


class DataType:
    FLOAT, HALF, INT8 = 0, 1, 2


class _Network:
    def __init__(self, flags: int):
        self.flags, self.onnx = flags, None


class OnnxParser:
    def __init__(self, network: _Network, logger: Logger):
        self.network, self.errors = network, []

    def parse(self, data: bytes) -> bool:
        import onnx

        try:
            onnx.load_from_string(data)
        except Exception as exc:  # noqa: BLE001 - as TensorRT, any failure is a parse error
            self.errors.append(f"ModelImporter.cpp:1: failed to parse ONNX model ({type(exc).__name__})")
            return False
        self.network.onnx = data
        return True

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> str:
        return self.errors[i]


class _Profile:
    def set_shape(self, name, lo, opt, hi):
        self.shapes = {name: [list(lo), list(opt), list(hi)]}


class _Config:
    def __init__(self):
        self.profiles, self.pools = [], {}

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile.shapes)
        return len(self.profiles) - 1


class Builder:
    def __init__(self, logger: Logger):
        self.logger = logger

    def create_network(self, flags: int = 0) -> _Network:
        return _Network(flags)

    def create_builder_config(self) -> _Config:
        return _Config()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config):
        if FAIL_BUILD:
            return None
        header = {"profile": config.profiles[0], "flags": network.flags}
        BUILDS.append(header)
        head = json.dumps(header).encode()
        return bytearray(len(head).to_bytes(4, "little") + head + network.onnx)


class Runtime:
    def __init__(self, logger: Logger):
        self.logger = logger

    def deserialize_cuda_engine(self, plan: bytes):
        try:
            n = int.from_bytes(plan[:4], "little")
            header = json.loads(plan[4 : 4 + n])
        except (ValueError, UnicodeDecodeError):
            return None
        return _Engine(header, bytes(plan[4 + n :]))


class _Engine:
    def __init__(self, header: dict, onnx_bytes: bytes):
        import onnx
        import onnxruntime as ort

        self.profile = header["profile"]
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        meta = json.loads({p.key: p.value for p in onnx.load_from_string(onnx_bytes).metadata_props}["roadseg"])
        self.classes = meta["num_classes"]
        self.names = [self.session.get_inputs()[0].name, self.session.get_outputs()[0].name]
        self.num_io_tensors = 2

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> int:
        return TensorIOMode.INPUT if name == self.names[0] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> int:
        io = self.session.get_inputs()[0] if name == self.names[0] else self.session.get_outputs()[0]
        return {"tensor(float)": DataType.FLOAT, "tensor(float16)": DataType.HALF}.get(io.type, DataType.INT8)

    def create_execution_context(self):
        return _Context(self)


def _array(address: int, shape) -> np.ndarray:
    """The float32 array at a raw address (what TensorRT reads and writes through a tensor address)."""
    count = int(np.prod(shape))
    return np.ctypeslib.as_array((ctypes.c_float * count).from_address(address)).reshape(shape)


class _Context:
    def __init__(self, engine: _Engine):
        self.engine, self.shape, self.addresses = engine, None, {}

    def set_input_shape(self, name: str, shape) -> bool:
        lo, _, hi = self.engine.profile[name]
        if name != self.engine.names[0] or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str):
        n, _, h, w = self.shape
        return (n, self.engine.classes, h, w)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        inp, out = self.engine.names
        if self.shape is None or set(self.addresses) != {inp, out}:
            return False
        x = _array(self.addresses[inp], self.shape).copy()
        y = self.engine.session.run(None, {inp: x})[0]
        _array(self.addresses[out], y.shape)[...] = y
        return True
