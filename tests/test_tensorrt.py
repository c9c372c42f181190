"""The GPU backends' CPU-side logic: backend and device choice, one-line errors for what is missing, the TensorRT
graph and engine cache, and the TensorRT runtime's code path with the bindings replaced by a fake (tests/
fake_tensorrt.py) whose engine runs the graph in ONNX Runtime at the buffer addresses it is given."""

import hashlib
import importlib
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import fake_tensorrt
from conftest import KITTI, ROOT
from roadseg.data import read_image
from roadseg.errors import PrecisionError, RoadsegError, WeightsError
from roadseg.inference.predictor import Predictor, load
from roadseg.inference.runtimes.tensorrt_runtime import TrtRuntime, engine_key, import_tensorrt
from roadseg.inference.settings import Platform, choose, resolve
from roadseg.models.checkpoint import ModelInfo

H200 = Platform(cuda=True, gpu="NVIDIA H200", capability=(9, 0), tensorrt="10.99.0")
INFO = ModelInfo(1.0, 375, None, {})


@pytest.mark.parametrize("platform, device, want", [
    (H200, "auto", ("tensorrt", "fp16", "cuda")),
    (Platform(True, "NVIDIA H200", (9, 0), None), "auto", ("torch", "fp16", "cuda")),
    (Platform(True, "Tesla V100", (7, 0), "10.99.0"), "auto", ("torch", "fp16", "cuda")),  # too old for TensorRT
    (Platform(True, "NVIDIA H200", (9, 0), "8.6.1"), "auto", ("torch", "fp16", "cuda")),  # TensorRT too old
    (Platform(), "auto", ("onnxruntime", "int8", "cpu")),
    (H200, "cpu", ("onnxruntime", "int8", "cpu")),
])
def test_backend_auto_follows_the_machine(platform, device, want):
    b, p, d, why = choose("auto", "auto", device, platform)
    assert (b, p, d) == want
    assert why.startswith(f"backend auto: {b} {p} on {d}")
    if b == "torch":
        assert "pip install 'roadseg[tensorrt]'" in why
    if not platform.cuda:
        assert "no CUDA GPU here" in why


def test_backend_auto_keeps_an_asked_precision():
    assert choose("auto", "int8", "auto", H200)[:3] == ("tensorrt", "int8", "cuda")
    # torch has no int8: without TensorRT, int8 runs on ONNX Runtime on the CPU, and it says why
    b, p, d, why = choose("auto", "int8", "auto", Platform(True, "NVIDIA H200", (9, 0), None))
    assert (b, p, d) == ("onnxruntime", "int8", "cpu") and "needs TensorRT" in why


def test_named_backends_and_device_auto():
    assert choose("tensorrt", "auto", "auto", H200)[:3] == ("tensorrt", "fp16", "cuda")
    assert choose("torch", "auto", "auto", H200)[:3] == ("torch", "fp32", "cuda")
    assert choose("onnxruntime", "auto", "auto", H200)[:3] == ("onnxruntime", "fp32", "cpu")
    assert choose("torch", "auto", "auto", Platform())[:3] == ("torch", "fp32", "cpu")
    st = resolve(INFO, backend="auto", device="auto", platform=H200)
    assert (st.backend, st.precision, st.device) == ("tensorrt", "fp16", "cuda") and st.chosen.startswith("backend auto")


@pytest.mark.parametrize("kwargs, platform, message", [
    ({"backend": "tensorrt"}, Platform(), "device cuda: torch sees no CUDA GPU here"),
    ({"backend": "tensorrt", "device": "cpu"}, H200, "backend tensorrt runs on an NVIDIA GPU, not on the CPU"),
    ({"backend": "tensorrt", "device": "cuda"}, Platform(), "device cuda: torch sees no CUDA GPU here"),
    ({"backend": "auto", "device": "cuda"}, Platform(), "device cuda: torch sees no CUDA GPU here"),
    ({"backend": "tensorrt"}, Platform(True, "NVIDIA H200", (9, 0), None), r"pip install 'roadseg\[tensorrt\]'"),
    ({"backend": "tensorrt"}, Platform(True, "NVIDIA H200", (9, 0), "8.6.1"), r"TensorRT 10 or later; found 8.6.1"),
    ({"backend": "tensorrt"}, Platform(True, "Tesla V100", (7, 0), "10.99.0"),
     r"compute capability 7.5 \(Turing\) or newer; Tesla V100 \(compute capability 7.0\) is older"),
    ({"backend": "torch", "precision": "bf16", "device": "cuda"}, Platform(True, "Tesla T4", (7, 5), None),
     r"bf16 on CUDA needs compute capability 8.0"),
    ({"backend": "tensorrt", "precision": "bf16", "device": "cuda"}, H200, "precision bf16 does not run on backend tensorrt"),
])
def test_what_cannot_run_is_one_line_naming_the_fix(kwargs, platform, message):
    with pytest.raises((PrecisionError, RoadsegError), match=message) as e:
        resolve(INFO, platform=platform, **kwargs)
    assert "\n" not in str(e.value)


def test_cli_says_what_tensorrt_needs_on_a_cpu_machine(tmp_path):
    r = subprocess.run([sys.executable, "-m", "roadseg", "predict", str(KITTI / "training" / "image_2" / "um_000000.jpg"),
                        "--out", str(tmp_path / "o"), "--backend", "tensorrt"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and not (tmp_path / "o").exists()
    assert r.stderr.strip() == ("error: device cuda: torch sees no CUDA GPU here (no NVIDIA GPU or driver, a CPU-only "
                                "torch build, or CUDA_VISIBLE_DEVICES empty); use --device cpu")


def test_missing_tensorrt_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as where it is not installed
    with pytest.raises(PrecisionError, match=r"pip install 'roadseg\[tensorrt\]'"):
        import_tensorrt()


def test_engine_key_changes_with_everything_an_engine_depends_on():
    base = dict(graph_sha256="ab" * 32, precision="fp16", gpu="NVIDIA H200", capability=(9, 0), trt_version="10.9.0",
                max_batch=4, hw=(384, 1248))
    k = engine_key(**base)
    assert k == "abababababababab_fp16_nvidia-h200-sm90_trt10.9.0_b4_384x1248_v1.engine"
    for change in [{"graph_sha256": "cd" * 32}, {"precision": "int8"}, {"gpu": "NVIDIA L4"}, {"capability": (8, 9)},
                   {"trt_version": "11.0.1"}, {"max_batch": 8}, {"hw": (288, 960)}]:
        assert engine_key(**{**base, **change}) != k, change


@pytest.fixture
def trt_graphs(tiny_ckpt, tmp_path, monkeypatch):
    """The TensorRT graphs of the tiny model, built in a cache of the test's own."""
    from roadseg.models.checkpoint import load_checkpoint
    from roadseg.optimize.cache import optimized_model
    from roadseg.optimize.runtime import read_graph

    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    ckpt = load_checkpoint(tiny_ckpt)
    return ckpt, lambda precision: read_graph(optimized_model(ckpt, precision, "tiny", target="tensorrt")[0])


def _fake_predictor(ckpt, graph, precision, max_batch=2):
    """At scale 1 (no resize: the uint8 path resizes uint8 frames, torch's float path float ones)."""
    fake_tensorrt.BUILDS.clear()
    info = ModelInfo.from_checkpoint(ckpt, "tiny")
    settings = resolve(info, backend="tensorrt", precision=precision, device="cuda", platform=H200, batch_size=max_batch,
                       scale=1.0)
    return Predictor(TrtRuntime(graph, precision, H200, max_batch=max_batch, device="cpu", trt=fake_tensorrt),
                     settings, info)


def test_tensorrt_path_with_fake_bindings_matches_torch(trt_graphs, tmp_path):
    """Frames up as uint8, the float batch padded on the device, the engine run at the addresses given, logits
    cropped and upsampled: the same probabilities as the torch model. The engine is built once per input size and
    batch range, with a profile of batch 1 to the batch size, and read from the cache after."""
    ckpt, graph = trt_graphs
    g = graph("fp32")
    assert g.meta["input"] == "float_nchw" and g.meta["output"] == "logits"
    frames = [read_image(KITTI / "training" / "image_2" / f"um_00000{i}.jpg") for i in range(3)]
    ref = load(ckpt, backend="torch", scale=1.0).probabilities(frames)
    pred = _fake_predictor(ckpt, g, "fp32")
    got = pred.probabilities(frames)  # 3 frames, batch at most 2: two engine calls
    assert all(np.abs(a - b).max() < 1e-4 for a, b in zip(ref, got))
    hw = pred.settings.input_size(*frames[0].shape[:2])
    padded = [-(-v // 32) * 32 for v in hw]
    assert fake_tensorrt.BUILDS == [{"profile": {"image": [[1, 3, *padded], [2, 3, *padded], [2, 3, *padded]]},
                                     "flags": 1 << fake_tensorrt.NetworkDefinitionCreationFlag.STRONGLY_TYPED}]
    engines = list((tmp_path / "cache" / "tensorrt").glob("*.engine"))
    assert [e.name for e in engines] == [f"{hashlib.sha256(g.data).hexdigest()[:16]}_fp32_nvidia-h200-sm90_trt10.99.0_b2_"
                                         f"{padded[0]}x{padded[1]}_v1.engine"]
    assert json.loads(engines[0].with_name(engines[0].name + ".json").read_text())["size"] == engines[0].stat().st_size
    again = _fake_predictor(ckpt, g, "fp32").probabilities(frames[:1])  # a new process's view: from the cache
    assert fake_tensorrt.BUILDS == [] and np.abs(again[0] - ref[0]).max() < 1e-4
    engines[0].write_bytes(engines[0].read_bytes()[:-7])  # a damaged cache entry is rebuilt, not loaded
    _fake_predictor(ckpt, g, "fp32").probabilities(frames[:1])
    assert len(fake_tensorrt.BUILDS) == 1


def test_tensorrt_int8_graph_is_symmetric_int8(trt_graphs):
    """TensorRT's explicit quantization takes int8 Q/DQ with zero point 0 only: every activation and weight of the
    INT8 graph for it is so; run through the fake engine it labels the frame as the fp32 graph does."""
    from onnx import numpy_helper

    ckpt, graph = trt_graphs
    g = graph("int8")
    m = onnx.load_from_string(g.data)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    qdq = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    bad = [(n.name, str(inits[n.input[2]].dtype)) for n in qdq if inits[n.input[2]].dtype != np.int8 or inits[n.input[2]].any()]
    assert len(qdq) > 10 and bad == []
    dq_out = {n.output[0] for n in qdq if n.op_type == "DequantizeLinear"}
    assert not [n.name for n in m.graph.node if n.op_type == "ConvTranspose" and set(n.input) & dq_out]  # axis 1
    frame = read_image(KITTI / "training" / "image_2" / "um_000000.jpg")
    ref = _fake_predictor(ckpt, graph("fp32"), "fp32").predict(frame).mask
    got = _fake_predictor(ckpt, g, "int8").predict(frame).mask
    assert (ref == got).mean() > 0.97


def test_engine_build_and_parse_failures_are_one_line(trt_graphs, monkeypatch, tmp_path):
    ckpt, graph = trt_graphs
    frame = read_image(KITTI / "training" / "image_2" / "um_000000.jpg")
    monkeypatch.setattr(fake_tensorrt, "FAIL_BUILD", True)
    with pytest.raises(PrecisionError, match=r"TensorRT could not build the fp16 \d+x\d+ engine"):
        _fake_predictor(ckpt, graph("fp16"), "fp16").predict(frame)
    assert not list((tmp_path / "cache" / "tensorrt").glob("*.engine"))  # nothing half-written
    monkeypatch.setattr(fake_tensorrt, "FAIL_BUILD", False)
    broken = graph("fp16").__class__(tmp_path / "broken.onnx", b"not a graph", graph("fp16").meta, "fp16")
    with pytest.raises(WeightsError, match=r"broken.onnx: TensorRT cannot parse this graph"):
        _fake_predictor(ckpt, broken, "fp16").predict(frame)


def test_torch_sees_no_cuda_here_so_auto_is_the_cpu():
    """What CI sees: on a machine without a GPU `--device auto` (the default) is the CPU path, unchanged."""
    settings = importlib.import_module("roadseg.inference.settings")
    assert settings.probe(cuda_available=False) == Platform()
    st = resolve(INFO)
    assert (st.backend, st.precision, st.device) == ("onnxruntime", "int8", "cpu")


def test_benchmark_gpu_table_names_the_gpu_and_batch(capsys):
    """benchmark --device cuda: refused in one line without a GPU; its table names the GPU, TensorRT's version and
    each row's batch, with times per frame and compute against the GPU's fp16 peak for fp16 rows."""
    from roadseg.benchmark import markdown
    from roadseg.cli import main

    assert main(["benchmark", "--device", "cuda", "--quick", "--out", "unused"]) == 2
    assert capsys.readouterr().err.strip() == ("error: benchmark --device cuda: torch sees no CUDA GPU here (no NVIDIA "
                                               "GPU or driver, or a CPU-only torch build)")
    row = {"model": "m", "scale": 1.0, "backend": "tensorrt", "precision": "fp16", "batch": 8, "p50_ms": 0.5,
           "p90_ms": 0.6, "net_ms": 0.25, "macs": 5e9, "peak_rss_mb": 900.0, "model_mb": 9.0, "MaxF": 0.96, "AP": 0.9,
           "IoU": 0.9}
    meta = {"date": "2026-12-03", "cpu": "c", "cores": 16, "cpu_flags": "avx2", "torch": "t", "onnxruntime": "o",
            "val_frames": 30, "device": "cuda", "gpu": "NVIDIA H200 (compute capability 9.0)", "tensorrt": "10.99.0",
            "peak_gmacs": {"fp32": 25000.0, "fp16": 400000.0, "int8": None}}
    table = markdown([row], meta)
    assert "on NVIDIA H200 (compute capability 9.0) (TensorRT 10.99.0)" in table
    assert "| m | 1.0 | tensorrt | fp16 | 8 | 0.5 (2000.0) | 0.6 | 0.2 (4000.0) | 20000 (5%) |" in table
