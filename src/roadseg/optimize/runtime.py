"""ONNX export and ONNX Runtime sessions.

The exported graph takes what a decoder gives: (N, H, W, 3) uint8 RGB frames whose H and W are multiples of 32
(dynamic batch, height and width), and applies the model's preprocessing inside the graph; for the two-class road
models it returns the road probability (N, 1, H, W) (the sigmoid of the road logit minus the other's, computed in the
last layer), else the logits (N, C, H, W). The metadata records both (`input`, `output`), so graphs of the earlier
layout ((N, 3, H, W) float 0-255 in, logits out; no such keys) still run. Measured on 2 cores with AVX-512 VNNI
(models/kitti-lite0.md): uint8 NHWC input takes the float conversion, transposes and normalisation out of the frame's
path, and a probability output the upsampling of two maps and the sigmoid outside the graph.
The Predictor pads frames to a multiple of 32 with the colour that normalises to zero, exactly as the torch model
does internally, and crops the output back."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from roadseg.data.io import atomic_write
from roadseg.errors import PrecisionError, WeightsError

log = logging.getLogger(__name__)
INPUT, OUTPUT, PROB_OUTPUT = "image", "logits", "road_prob"
UINT8_NHWC, FLOAT_NCHW = "uint8_nhwc", "float_nchw"  # the graph's input layouts (metadata `input`)


class _Graph(torch.nn.Module):
    """What an exported graph computes: (N, H, W, 3) uint8 RGB -> the road probability (N, 1, H, W) for a model
    whose head gives one channel (the road logit difference), else the logits; in the float layout (N, 3, H, W)
    float 0-255 -> logits."""

    def __init__(self, model, prob: bool, uint8: bool):
        super().__init__()
        self.model, self.prob, self.uint8 = model, prob, uint8

    def forward(self, x):
        y = self.model.head(self.model.normalize(x.permute(0, 3, 1, 2).float() if self.uint8 else x))
        return torch.sigmoid(y) if self.prob else y


def export_onnx(model, path: str | Path, opset: int = 17, sample_hw=(192, 640), meta: dict | None = None,
                layout: str = UINT8_NHWC) -> Path:
    """Export `model` to one self-contained .onnx file (weights inside, no .onnx.data), written atomically.
    `layout` FLOAT_NCHW writes the earlier layout (float in, logits out), kept for the benchmark's comparison."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    uint8 = layout == UINT8_NHWC
    prob = uint8 and model.score_fr.out_channels == 2
    if hasattr(model, "with_shuffle_upsampling"):  # the same function; the last upsampling as conv + pixel shuffle
        model = model.with_shuffle_upsampling(road_difference=prob)
    x = torch.randint(0, 256, (1, *sample_hw, 3), dtype=torch.uint8) if uint8 else torch.rand(1, 3, *sample_hw) * 255
    output = PROB_OUTPUT if prob else OUTPUT
    spatial = {1: "height", 2: "width"} if uint8 else {2: "height", 3: "width"}

    def write(tmp: Path) -> None:
        try:
            with warnings.catch_warnings():  # the exporter's notes on constant folding are not the user's concern
                warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
                torch.onnx.export(_Graph(model, prob, uint8), (x,), str(tmp), input_names=[INPUT], output_names=[output],
                                  opset_version=opset, dynamic_axes={INPUT: {0: "batch", **spatial},
                                                                     output: {0: "batch", 2: "height", 3: "width"}},
                                  dynamo=False)
            m = onnx.load(str(tmp))
            info = {"preprocess": model.preprocess.to_dict(), "pad_value": model.pad_value(), "multiple": 32,
                    "num_classes": model.score_fr.out_channels, "input": layout, "output": output, **(meta or {})}
            m.metadata_props.add(key="roadseg", value=json.dumps(info))
            onnx.checker.check_model(m, full_check=True)
            onnx.save_model(m, str(tmp), save_as_external_data=False)
        finally:
            data = Path(str(tmp) + ".data")
            if data.exists():
                data.unlink()

    return atomic_write(path, write, by_name=True)


@dataclass(frozen=True)
class OnnxGraph:
    """An exported roadseg graph read once: its bytes (what the session is made from), its roadseg metadata and
    what it computes in ('int8', 'fp16' or 'fp32')."""

    path: Path
    data: bytes
    meta: dict
    precision: str


_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
             "DynamicQuantizeLinear"}


def read_graph(path: str | Path) -> OnnxGraph:
    """Read and check an .onnx file once: one input 'image' (N, 3, H, W) and roadseg metadata, or a one-line
    WeightsError naming the file. The precision is read from the graph (quantized nodes: int8; float16 weights:
    fp16; else fp32), so a file is labelled by what it holds, not by the flags it came with."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: ONNX file not found")
    data = path.read_bytes()
    try:
        m = onnx.load_from_string(data)
    except Exception as exc:
        raise WeightsError(f"{path}: not an ONNX model ({exc.__class__.__name__})") from None
    props = {p.key: p.value for p in m.metadata_props}
    ins = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    if "roadseg" not in props or len(ins) != 1 or ins[0].name != INPUT:
        got = ", ".join(i.name for i in ins)
        raise WeightsError(f"{path}: not a roadseg model (expected one input '{INPUT}' and roadseg metadata; got inputs: {got})")
    meta = json.loads(props["roadseg"])
    dims = ins[0].type.tensor_type.shape.dim
    if meta.get("input", FLOAT_NCHW) == UINT8_NHWC:
        if len(dims) != 4 or dims[3].dim_value not in (0, 3) or ins[0].type.tensor_type.elem_type != onnx.TensorProto.UINT8:
            raise WeightsError(f"{path}: input '{INPUT}' must be (N, H, W, 3) uint8, as its metadata says")
    elif len(dims) != 4 or (dims[1].dim_value not in (0, 3)):
        raise WeightsError(f"{path}: input '{INPUT}' must be (N, 3, H, W)")
    if any(n.op_type in _INT8_OPS for n in m.graph.node):
        precision = "int8"
    elif any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer):
        precision = "fp16"
    else:
        precision = "fp32"
    return OnnxGraph(path, data, meta, precision)


def read_meta(path: str | Path) -> dict:
    """The roadseg metadata of an .onnx file (checked as read_graph checks it)."""
    return read_graph(path).meta


def onnx_precision(path: str | Path) -> str:
    """What an .onnx file computes in: 'int8', 'fp16' or 'fp32' (read_graph)."""
    return read_graph(path).precision


def ort_session(graph: OnnxGraph | str | Path, device: str = "cpu", threads: int = 0, optimize: bool = True,
                save_optimized: str | Path | None = None, spinning: bool = True):
    """An ONNX Runtime session on a graph read by read_graph (a path is read first). `spinning=False` lets idle
    intra-op threads sleep instead of spin-waiting: slower for one stream alone, faster when other threads need the
    cores (video: overlays and encoding run beside it). `save_optimized`: ONNX Runtime writes its optimized graph
    there, through atomic_write (a temporary name renamed over it: a planted link is replaced, never followed)."""
    import onnxruntime as ort

    graph = graph if isinstance(graph, OnnxGraph) else read_graph(graph)
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if threads:
        so.intra_op_num_threads = threads
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if save_optimized:
        made = []

        def write(tmp: Path) -> None:
            so.optimized_model_filepath = str(tmp)
            made.append(_session(graph, so, device))

        atomic_write(save_optimized, write, by_name=True)
        return made[0]
    return _session(graph, so, device)


def _session(graph: OnnxGraph, so, device: str):
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise PrecisionError("onnxruntime was installed without CUDA (pip install onnxruntime-gpu)")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(graph.data, so, providers=providers)
    except Exception as exc:
        msg = str(exc).splitlines()[0][:200]
        if "float16" in msg.lower() or "not implemented" in msg.lower():
            raise PrecisionError(f"{graph.path}: this ONNX Runtime build cannot run it on {device} ({msg})") from None
        raise WeightsError(f"{graph.path}: ONNX Runtime cannot load it ({msg})") from None


def op_counts(path: str | Path) -> dict:
    import onnx

    m = onnx.load(str(path))
    out: dict = {}
    for n in m.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def pad_batch(x: torch.Tensor, pad_value, multiple: int = 32) -> torch.Tensor:
    """(N, 3, h, w) float -> padded to multiples of `multiple` with `pad_value` (graphs of the float layout)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    out = torch.empty(x.shape[0], 3, h + ph, w + pw, dtype=x.dtype)
    out[:] = torch.tensor(pad_value, dtype=x.dtype).view(1, 3, 1, 1)
    out[:, :, :h, :w] = x
    return out


def pad_frames(x: np.ndarray, pad_value, multiple: int = 32) -> np.ndarray:
    """(N, h, w, 3) uint8 -> padded to multiples of `multiple` with `pad_value` rounded to uint8 (graphs of the uint8
    layout; for Lite0's (x - 127) / 128 the pad is exactly 0 after normalisation, for VGG16's mean within 0.5 of it).
    Numpy, not torch: a torch op here would leave its thread pool spinning beside ONNX Runtime's (measured: about 5 ms
    a frame on 2 cores)."""
    n, h, w, _ = x.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return np.ascontiguousarray(x)
    out = np.empty((n, h + ph, w + pw, 3), np.uint8)
    out[:, :h, :w] = x
    colour = np.clip(np.round(pad_value), 0, 255).astype(np.uint8)
    out[:, h:] = colour  # only the margins: filling the whole array first cost 1.8 ms a KITTI frame
    out[:, :h, w:] = colour
    return out


def to_fp16(src: str | Path, dst: str | Path) -> Path:
    """An fp16 copy of the graph (for GPUs); inputs and outputs stay float32."""
    import onnx

    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:  # pragma: no cover
        raise PrecisionError(f"fp16 conversion needs onnxruntime's transformers tools ({exc})") from None
    m = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    return atomic_write(dst, lambda f: onnx.save_model(m, f))
