"""INT8 post-training static quantization with ONNX Runtime: QDQ format, per-channel weights, calibration on
real frames. What stays float was decided by measurement (`benchmarks/inference.py`, README table): with 7-bit
weights on CPUs without VNNI (see avx2_saturation) quantizing every Conv and ConvTranspose costs 0.35 MaxF and is
the fastest; keeping the head (fc6, fc7, score layers) in float gains no accuracy (the `int8-headfloat` row).
With 8-bit weights on this AVX2 CPU the same model lost 2 MaxF points."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from roadseg.data.io import atomic_write, expand_inputs, read_image
from roadseg.data.transforms import resize_image
from roadseg.device import avx2_saturation
from roadseg.errors import DataError, RoadsegError
from roadseg.optimize.runtime import INPUT, UINT8_NHWC, pad_batch, pad_frames, read_meta

log = logging.getLogger(__name__)
METHODS = ("minmax", "entropy", "percentile")


class FrameReader:
    """onnxruntime CalibrationDataReader over real frames, prepared by the predictor's own preprocess for the
    settings the graph's metadata implies (its scale and trained frame height, size auto), and padded as the ONNX
    Runtime runtime pads them. Calibration runs on one shape: frames of other sizes are resized to the first's."""

    def __init__(self, paths: list[Path], meta: dict, scale: float | None = None):
        from roadseg.inference.processing import preprocess
        from roadseg.inference.settings import resolve
        from roadseg.models.checkpoint import ModelInfo

        settings = resolve(ModelInfo.from_meta(meta), backend="onnxruntime", precision="fp32", scale=scale)
        first = None
        self.items = []
        for p in paths:
            img = read_image(p)
            if first is not None and img.shape[:2] != first:
                img = resize_image(torch.from_numpy(img).permute(2, 0, 1), first).round().byte().permute(1, 2, 0).numpy()
            first = first or img.shape[:2]
            if meta.get("input") == UINT8_NHWC:
                self.items.append(pad_frames(preprocess([img], settings, "uint8"), meta["pad_value"], meta["multiple"]))
            else:
                self.items.append(pad_batch(preprocess([img], settings), meta["pad_value"], meta["multiple"]).numpy())
        self._it = iter(self.items)

    def get_next(self):
        x = next(self._it, None)
        return None if x is None else {INPUT: x}

    def rewind(self):
        self._it = iter(self.items)


def calibration_frames(calib: str | list[str], count: int) -> list[Path]:
    try:
        paths = expand_inputs([calib] if isinstance(calib, str) else calib)
    except DataError as exc:
        raise DataError(f"calibration set: {exc}") from None
    if count:
        step = max(1, len(paths) // count)
        paths = paths[::step][:count]
    bad = []
    for p in paths:
        try:
            read_image(p)
        except DataError as exc:
            bad.append(str(exc))
    if bad:
        raise DataError(f"calibration set has unreadable images: {bad[0]}" + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""))
    return paths


# Clip (EfficientNet's ReLU6) quantized too: ONNX Runtime then folds it into the QLinearConv before it; left in
# float it costs a DequantizeLinear/QuantizeLinear pair per activation (kitti-lite0: 43 -> 25 ms per frame) and
# 0.5 MaxF (the float Clip sees the 8-bit range of the unclipped output). Measured: see models/kitti-lite0.md.
DEFAULT_OPS = ("Conv", "ConvTranspose", "Clip")


def float_nodes(path: Path, keep_float: tuple[str, ...]) -> list[str]:
    """Names of the nodes whose name contains one of `keep_float` (e.g. 'score' -> the three score convs)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return [n.name for n in m.graph.node if any(k in n.name for k in keep_float)]


# Layers that write class scores stay float: the 1x1 score convolutions (2 output channels, next to nothing to
# compute, but 8-bit steps of a logit move the road boundary: the full-size VGG16 file's INT8 MaxF loss in the
# benchmark went from -0.90 to -0.11) and the last upsampling (ShuffleUp's conv from export_onnx, float as the ConvTranspose it
# replaces was: ONNX Runtime has no INT8 ConvTranspose)
ALWAYS_FLOAT = ("shuffle_conv", "score")


def quantize_int8(src: str | Path, dst: str | Path, calib: str | list[str], method: str = "minmax", count: int = 16,
                  ops: tuple[str, ...] = DEFAULT_OPS, per_channel: bool = True, scale: float | None = None,
                  keep_float: tuple[str, ...] = (), reduce_range: bool | None = None, signed_weights: bool = True,
                  activations: str = "uint8") -> Path:
    """Write an INT8 QDQ copy of the fp32 model `src` to `dst` (never over `src`).

    Weights are int8 with zero point 0 (symmetric) and activations uint8: the format of ONNX Runtime's x86 u8s8
    kernels, VNNI's included (its symmetric depthwise and indirect convolutions need exactly this). `signed_weights`
    False writes uint8 weights with a zero point instead, the benchmark's comparison row. `activations` "int8" makes
    the activations int8 with zero point 0 too (symmetric ranges): the only Q/DQ TensorRT's explicit quantization
    takes (its implicit INT8 calibrators are deprecated since 10.1 and removed in 11); weights are then 8-bit and
    biases stay float (TensorRT fuses them itself; it takes no int32 bias Q/DQ), and ConvTranspose stays float (ONNX
    Runtime quantizes its weights per channel on axis 1, which TensorRT's kernels do not take).

    `keep_float`: node-name parts left in float, e.g. ("fc6", "fc7", "score") for the head. fc6/fc7 must go with the
    score layers: the quantizer folds a quantized conv's ReLU into its output range, which a float consumer cannot
    use (the graph check below refuses such a graph). `reduce_range` (7-bit weights) defaults to on where ONNX
    Runtime's AVX2 kernels would saturate."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise RoadsegError(f"{dst}: refusing to overwrite the fp32 model with its INT8 copy; choose another --out")
    if method not in METHODS:
        raise RoadsegError(f"unknown calibration method '{method}' (choose from {', '.join(METHODS)})")
    if activations not in ("uint8", "int8"):
        raise RoadsegError(f"activations '{activations}': choose uint8 (ONNX Runtime) or int8 (TensorRT)")
    meta = read_meta(src)
    reader = FrameReader(calibration_frames(calib, count), meta, scale)
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        pre = Path(tmpdir) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        out = Path(tmpdir) / "int8.onnx"
        symmetric = activations == "int8"
        if reduce_range is None:
            reduce_range = not symmetric and avx2_saturation()
        quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                        op_types_to_quantize=[o for o in ops if not (symmetric and o == "ConvTranspose")],
                        weight_type=QuantType.QInt8 if signed_weights else QuantType.QUInt8,
                        calibrate_method=cm, reduce_range=reduce_range,
                        nodes_to_exclude=float_nodes(pre, (*keep_float, *ALWAYS_FLOAT)),
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False} if symmetric else
                        {"CalibTensorRangeSymmetric": False})
        import onnx

        m = onnx.load(str(out))
        produced = {o for n in m.graph.node for o in n.output} | {i.name for i in m.graph.initializer} | \
            {i.name for i in m.graph.input}
        dangling = sorted({i for n in m.graph.node for i in n.input if i and i not in produced})
        if dangling:
            raise RoadsegError(f"{src}: INT8 graph is broken (inputs nobody produces: {', '.join(dangling[:3])}); "
                               "choose other keep_float nodes")
        exact_input_quantization(m, meta)
        m.metadata_props.clear()
        for p in onnx.load(str(src), load_external_data=False).metadata_props:
            m.metadata_props.add(key=p.key, value=p.value)
        atomic_write(dst, lambda f: onnx.save_model(m, f, save_as_external_data=False))
    log.info("INT8 model (%s calibration, %d frames, ops %s) written to %s", method, len(reader.items), ops, dst)
    return dst


def exact_input_quantization(m, meta: dict) -> bool:
    """Where the model's normalisation is (x - m) / s with the same integer m and scale s for every channel (Lite0:
    (x - 127) / 128), the uint8 input already is the first layer's quantized input (scale 1/s, zero point m): the
    float normalisation and the calibrated QuantizeLinear after it are replaced by that exact DequantizeLinear, so
    ONNX Runtime feeds the frame's bytes straight into its first QLinearConv (lossless; measured in
    models/kitti-lite0.md). Returns whether the graph was changed (graphs of the float layout, and VGG16's per-channel
    mean, are left as they are)."""
    import onnx
    from onnx import numpy_helper

    pre = meta.get("preprocess") or {}
    means, stds, scale = set(pre.get("mean", [])), set(pre.get("std", [])), pre.get("scale", 1.0)
    if meta.get("input") != UINT8_NHWC or len(means) != 1 or len(stds) != 1:
        return False
    zero, step = means.pop() / scale, stds.pop() / scale  # normalised = (x - zero) / step for x in 0-255
    if zero != round(zero) or not 0 <= zero <= 255:
        return False
    nodes, consumers = list(m.graph.node), {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    q = next((n for n in nodes if n.op_type == "QuantizeLinear"), None)
    cast = next((n for n in nodes if n.op_type == "Cast"), None)
    if q is None or cast is None or len(consumers.get(q.output[0], [])) != 1:
        return False
    dq = consumers[q.output[0]][0]
    chain = _chain(cast, q, consumers)
    if dq.op_type != "DequantizeLinear" or chain is None:
        return False
    s_name, z_name = f"{dq.name}_input_scale", f"{dq.name}_input_zero_point"
    m.graph.initializer.extend([numpy_helper.from_array(np.array(1.0 / step, np.float32), s_name),
                                numpy_helper.from_array(np.array(int(zero), np.uint8), z_name)])
    dq.input[:] = [cast.input[0], s_name, z_name]
    for n in chain:
        m.graph.node.remove(n)
    used = {i for n in m.graph.node for i in n.input}
    for t in [t for t in m.graph.initializer if t.name not in used]:  # the normalisation's and the Q's constants
        m.graph.initializer.remove(t)
    onnx.checker.check_model(m)
    return True


def _chain(start, end, consumers) -> list | None:
    """The nodes from `start` to `end` when each feeds only the next (the normalisation between the input's Cast and
    the first QuantizeLinear), else None."""
    chain, n = [start], start
    while n is not end:
        nxt = consumers.get(n.output[0], [])
        if len(nxt) != 1 or nxt[0].op_type not in ("Mul", "Sub", "Div", "Add", "QuantizeLinear"):
            return None
        n = nxt[0]
        chain.append(n)
    return chain


def label_agreement(a: list[np.ndarray], b: list[np.ndarray], threshold: float | None = None) -> float:
    """The fraction of pixels two sets of probability maps label alike at `threshold` (metrics.road_mask; default
    the threshold of a model that stores none)."""
    from roadseg.inference.settings import DEFAULT_THRESHOLD
    from roadseg.metrics import road_mask

    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    same = sum(int((road_mask(x, threshold) == road_mask(y, threshold)).sum()) for x, y in zip(a, b))
    return same / sum(x.size for x in a)
