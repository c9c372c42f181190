"""ONNX export parity, fusion, INT8 agreement with fp32 on real frames, reduced precision, bad inputs."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from conftest import KITTI
from roadseg import device
from roadseg.cli import main
from roadseg.data import read_image
from roadseg.errors import DataError, PrecisionError, RoadsegError, WeightsError
from roadseg.inference.predictor import load
from roadseg.models.checkpoint import ModelInfo, load_checkpoint, model_from_checkpoint
from roadseg.models.fcn import ShuffleUp
from roadseg.optimize.quantize import label_agreement, quantize_int8
from roadseg.optimize.runtime import export_onnx, op_counts, ort_session, to_fp16

TRAIN = sorted((KITTI / "training" / "image_2").glob("*.jpg"))


@pytest.fixture(scope="module")
def exported(tiny_ckpt, tmp_path_factory):
    model, cfg = model_from_checkpoint(tiny_ckpt)
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", meta={"scale": cfg.data.scale})


def test_export_is_one_checked_file_with_dynamic_shapes(exported):
    assert not exported.with_name(exported.name + ".data").exists()
    m = onnx.load(str(exported))
    onnx.checker.check_model(m, full_check=True)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "height", "width", 3]  # frames as decoded
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert [o.name for o in m.graph.output] == ["road_prob"]
    meta = json.loads(next(p.value for p in m.metadata_props if p.key == "roadseg"))
    assert meta["preprocess"]["bgr"] and (meta["input"], meta["output"]) == ("uint8_nhwc", "road_prob")


def test_road_difference_is_the_difference_of_the_two_class_outputs():
    torch.manual_seed(0)
    ct = torch.nn.ConvTranspose2d(2, 2, 8, stride=4, padding=2, bias=False)
    up = ShuffleUp.from_transposed(ct)
    x = torch.randn(1, 2, 5, 7)
    full, diff = up(x), up.road_difference()(x)
    assert diff.shape == (1, 1, 20, 28)
    assert torch.allclose(diff[:, 0], full[:, 1] - full[:, 0], atol=1e-5)
    assert torch.allclose(full, ct(x), atol=1e-5)


def test_old_layout_graph_still_runs(tiny_ckpt, tmp_path):
    """A graph of the earlier layout ((N, 3, H, W) float in, logits out; no input/output metadata) runs as before."""
    model, _ = model_from_checkpoint(tiny_ckpt)
    model = model.eval().with_shuffle_upsampling()

    class Old(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.head(self.model.normalize(x))

    path = tmp_path / "old.onnx"
    torch.onnx.export(Old(), (torch.rand(1, 3, 64, 96) * 255,), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}, "logits": {0: "b", 2: "h", 3: "w"}}, dynamo=False)
    m = onnx.load(str(path))
    info = ModelInfo.from_checkpoint(load_checkpoint(tiny_ckpt), "tiny").to_meta()  # its scale
    m.metadata_props.add(key="roadseg", value=json.dumps({"preprocess": model.preprocess.to_dict(),
                                                          "pad_value": model.pad_value(), "multiple": 32, **info}))
    onnx.save(m, str(path))
    frame = read_image(TRAIN[0])[:100, :150]
    old = load(str(path))
    assert (old.runtime.input_kind, old.runtime.output_kind) == ("float", "logits")
    ref = load(tiny_ckpt, backend="torch").predict(frame).prob
    assert float(np.abs(old.predict(frame).prob - ref).max()) < 1e-4


def test_onnxruntime_matches_torch_on_real_frames(tiny_ckpt, exported):
    frames = [read_image(TRAIN[0]), read_image(KITTI / "training" / "image_2" / "uu_000000.jpg")[:370, :1001]]
    t = load(tiny_ckpt, backend="torch")
    o = load(tiny_ckpt, backend="onnxruntime", onnx=exported)
    diff = max(float(np.abs(t.predict(f).prob - o.predict(f).prob).max()) for f in frames)
    assert diff < 2e-3, diff  # at scale 0.25 the resized frame goes into the graph rounded to uint8
    t, o = (load(tiny_ckpt, backend=b, onnx=x, scale=1.0) for b, x in (("torch", None), ("onnxruntime", exported)))
    same = frames[0][:352, :1216]  # at the frame's own size, a multiple of 32: the same bytes go in
    assert float(np.abs(t.predict(same).prob - o.predict(same).prob).max()) < 1e-4
    diff = float(np.abs(t.predict(frames[1]).prob - o.predict(frames[1]).prob).max())
    assert diff < 1e-3, diff  # padded: VGG16's mean colour rounded to uint8 (within 0.5 of 0 after normalisation)


def test_top_crop_rides_in_the_graph_and_runs_on_onnxruntime(tiny_ckpt):
    """A model trained with data.top_crop: its ONNX graph's metadata carries the fraction (a bare .onnx file then
    crops as its checkpoint does), and ONNX Runtime gives torch's probabilities, 0 above the cut (112 of 375 rows).
    The same weights without the crop, already in the cache, are a different graph: the cache key covers the config."""
    from roadseg.optimize.cache import optimized_model
    from roadseg.optimize.runtime import read_meta

    plain, _ = optimized_model(load_checkpoint(tiny_ckpt), "fp32")
    ckpt = load_checkpoint(tiny_ckpt)
    ckpt["config"]["data"]["top_crop"] = 0.3
    path, _ = optimized_model(ckpt, "fp32")
    assert path != plain and read_meta(plain)["top_crop"] == 0.0 and read_meta(path)["top_crop"] == 0.3
    frame = read_image(KITTI / "training" / "image_2" / "um_000000.jpg")
    ref = load(ckpt, backend="torch").predict(frame).prob
    for pred in (load(ckpt, backend="onnxruntime", precision="fp32"), load(path)):
        assert pred.settings.top_crop == 0.3 and pred.input_size(375, 1242) == (66, 310)
        prob = pred.predict(frame).prob
        assert not prob[:112].any() and float(np.abs(prob - ref).max()) < 1e-3


def test_fusion_folds_relu_into_conv(exported, tmp_path):
    ort_session(exported, save_optimized=tmp_path / "opt.onnx")
    before, after = op_counts(exported), op_counts(tmp_path / "opt.onnx")
    assert before["Relu"] == 15 and before["Conv"] == 19  # 18 + the last upsampling as conv + pixel shuffle
    assert after.get("Relu", 0) == 0 and sum(after.values()) < sum(before.values())


def test_int8_agrees_with_fp32_on_real_frames(shipped_ckpt, tmp_path):
    model, cfg = model_from_checkpoint(shipped_ckpt)
    fp32 = export_onnx(model, tmp_path / "m.onnx", meta={"scale": cfg.data.scale})
    int8 = quantize_int8(fp32, tmp_path / "m_int8.onnx", [str(p) for p in TRAIN[:200]], count=8)
    ops = op_counts(int8)  # the last upsampling is exported as conv + pixel shuffle (DepthToSpace), kept in float
    assert ops.get("QuantizeLinear", 0) > 0 and ops["ConvTranspose"] == 2 and ops["DepthToSpace"] == 1
    assert ops["Sub"] == 1  # VGG16's per-channel mean: its normalisation stays in float (no exact uint8 form)
    val = [read_image(KITTI / "training" / "image_2" / f"{n}.jpg") for n in ("um_000075", "umm_000077", "uu_000079")]
    ref = [load(shipped_ckpt, backend="torch").predict(f).prob for f in val]
    q = [load(shipped_ckpt, backend="onnxruntime", onnx=int8).predict(f).prob for f in val]
    assert label_agreement(ref, q) >= 0.985  # full-size VGG16 file: 0.986-0.992 by calibration frames


def test_quantize_never_overwrites_and_checks_calibration(exported, tmp_path):
    before = exported.read_bytes()
    with pytest.raises(RoadsegError, match="refusing to overwrite"):
        quantize_int8(exported, exported, [str(TRAIN[0])])
    assert exported.read_bytes() == before
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="calibration set"):
        quantize_int8(exported, tmp_path / "q.onnx", str(empty))
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "a.png").write_text("not an image")
    with pytest.raises(DataError, match="calibration set has unreadable images.*a.png"):
        quantize_int8(exported, tmp_path / "q.onnx", str(tmp_path / "fake"))
    assert not (tmp_path / "q.onnx").exists()


def test_onnx_of_another_model_is_refused(tmp_path, tiny_ckpt):
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(g), str(path))
    with pytest.raises(WeightsError, match="not a roadseg model.*got inputs: x"):
        load(tiny_ckpt, backend="onnxruntime", onnx=path)
    assert main(["predict", str(TRAIN[0]), "--checkpoint", str(tiny_ckpt), "--backend", "onnxruntime",
                 "--onnx", str(path), "--out", str(tmp_path / "o")]) == 2


def test_precision_the_hardware_cannot_run_is_a_clear_error(tiny_ckpt, monkeypatch):
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    with pytest.raises(PrecisionError, match="precision bf16 needs a CPU with AVX-512 BF16"):
        load(tiny_ckpt, precision="bf16", backend="torch")
    with pytest.raises(PrecisionError, match="precision fp16 on backend torch is for GPUs"):
        load(tiny_ckpt, precision="fp16", backend="torch")
    with pytest.raises(PrecisionError, match="precision int8 does not run on backend torch.*roadseg quantize"):
        load(tiny_ckpt, precision="int8", backend="torch")


def test_device_auto_is_resolved_before_the_precision_check():
    """`--device auto` is CUDA where torch sees a GPU: fp16 on torch is then allowed (it was refused, checked
    against the CPU), and refused with the CPU's reason where there is none. What CUDA says is injected."""
    from roadseg.inference.settings import resolve, resolve_device
    from roadseg.models.checkpoint import ModelInfo

    info = ModelInfo(0.5, 375, None, {})
    st = resolve(info, backend="torch", precision="fp16", device="auto", cuda_available=True)
    assert (st.device, st.backend, st.precision) == ("cuda", "torch", "fp16")
    with pytest.raises(PrecisionError, match="precision fp16 on backend torch is for GPUs"):
        resolve(info, backend="torch", precision="fp16", device="auto", cuda_available=False)
    assert resolve_device("auto", cuda_available=False) == "cpu" and resolve_device("cuda") == "cuda"
    with pytest.raises(RoadsegError, match="device 'gpu': choose from cpu, cuda, auto"):
        resolve_device("gpu")


def test_fp16_copy_keeps_its_io_types(exported, tmp_path):
    m = onnx.load(str(to_fp16(exported, tmp_path / "h.onnx")))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    conv_w = {n.input[1] for n in m.graph.node if n.op_type == "Conv"}
    assert all(t.data_type == TensorProto.FLOAT16 for t in m.graph.initializer if t.name in conv_w)


def test_compiled_torch_matches_eager(tiny_ckpt):
    img = read_image(TRAIN[3])[:200, :300]
    a = load(tiny_ckpt, backend="torch").predict(img).prob
    b = load(tiny_ckpt, precision="compiled", backend="torch").predict(img).prob
    assert np.abs(a - b).max() < 1e-4


def test_lite_model_exports_fuses_and_quantizes(lite_ckpt, tmp_path):
    """The EfficientNet-Lite FCN through the same path: ONNX parity with torch, batch norms folded into the
    convolutions at export and ReLU6 (Clip) fused by ONNX Runtime, and an INT8 graph (QDQ) that runs."""
    model, cfg = model_from_checkpoint(lite_ckpt)
    fp32 = export_onnx(model, tmp_path / "lite.onnx", meta={"scale": cfg.data.scale})
    frames = [read_image(TRAIN[0]), read_image(KITTI / "training" / "image_2" / "uu_000000.jpg")[:370, :1001]]
    t = load(lite_ckpt, backend="torch")
    o = load(lite_ckpt, backend="onnxruntime", onnx=fp32)
    assert max(float(np.abs(t.predict(f).prob - o.predict(f).prob).max()) for f in frames) < 1e-4
    ort_session(fp32, save_optimized=tmp_path / "opt.onnx")
    before, after = op_counts(fp32), op_counts(tmp_path / "opt.onnx")
    assert "BatchNormalization" not in before and before["Clip"] == 33 and before["ConvTranspose"] == 3
    assert before["DepthToSpace"] == 1  # the last upsampling: conv + pixel shuffle (ShuffleUp)
    assert "Clip" not in after and before["Pad"] == 5 and sum(after.values()) < sum(before.values()) / 3  # 5: stride 2
    int8 = quantize_int8(fp32, tmp_path / "lite_int8.onnx", [str(p) for p in TRAIN[:50]], count=4)
    assert op_counts(int8).get("QuantizeLinear", 0) > 0
    q = load(lite_ckpt, backend="onnxruntime", precision="int8", onnx=int8)
    assert q.predict(frames[0]).prob.shape == frames[0].shape[:2]


def test_benchmark_writes_a_table_with_accuracy_against_fp32(lite_ckpt, kitti_root, tmp_path, capsys):
    import json

    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file")
    for name in ("inference.json", "inference.md"):  # planted links are replaced, never written through
        (tmp_path / name).symlink_to(victim)
    rc = main(["benchmark", "--model", str(lite_ckpt), "--data", str(kitti_root), "--only", "torch:fp32,onnxruntime:int8",
               "--quick", "--out", str(tmp_path)])
    assert rc == 0
    assert victim.read_text() == "the user's own file"
    assert not any((tmp_path / n).is_symlink() for n in ("inference.json", "inference.md"))
    res = json.loads((tmp_path / "inference.json").read_text())
    rows = {(r["backend"], r["precision"]): r for r in res["rows"]}
    assert set(rows) == {("torch", "fp32"), ("onnxruntime", "int8")}
    assert all("error" not in r and r["net_ms"] > 0 and r["p50_ms"] > 0 for r in rows.values())  # no timing ratios: load varies
    assert rows["torch", "fp32"]["net_input"] == [94, 310]  # 375x1242 at the checkpoint's scale 0.25
    assert 0 <= rows["onnxruntime", "int8"]["MaxF"] <= 1 and res["meta"]["cpu_flags"] is not None
    md = (tmp_path / "inference.md").read_text()
    assert "| onnxruntime | int8 |" in md and "flags:" in md and md in capsys.readouterr().out


def test_benchmark_far_zoom_times_and_counts_both_passes(lite_ckpt, kitti_root, tmp_path):
    """benchmark --far-zoom: each row runs the far band's second pass too; its input (the 262 rows under 70% of the
    375, at twice the scale 0.25: 131x621) is recorded, its multiply-adds are added to the first pass's, and the
    table says so."""
    import json

    rc = main(["benchmark", "--model", str(lite_ckpt), "--data", str(kitti_root), "--only", "onnxruntime:int8",
               "--quick", "--out", str(tmp_path / "plain")])
    assert rc == 0 and main(["benchmark", "--model", str(lite_ckpt), "--data", str(kitti_root), "--only",
                             "onnxruntime:int8", "--quick", "--far-zoom", "--out", str(tmp_path / "zoom")]) == 0
    plain, zoom = (json.loads((tmp_path / d / "inference.json").read_text()) for d in ("plain", "zoom"))
    p, z = plain["rows"][0], zoom["rows"][0]
    assert p["far_zoom_input"] is None and z["far_zoom_input"] == [131, 621] and z["net_input"] == p["net_input"]
    assert z["macs"] > 2 * p["macs"]  # the band at twice the scale: 2.8 times the first pass's pixels
    assert zoom["meta"]["far_zoom"] == 2.0 and "far zoom 2 (a second pass" in (tmp_path / "zoom" / "inference.md").read_text()


def test_session_without_spinning_gives_the_same_output(exported):
    a, b = ort_session(exported), ort_session(exported, spinning=False)
    assert b.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    x = np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3)).astype(np.uint8)
    assert np.array_equal(a.run(None, {"image": x})[0], b.run(None, {"image": x})[0])


def test_released_file_carries_its_calibration_frames_so_int8_works_anywhere(tiny_ckpt, tmp_path, monkeypatch):
    import roadseg
    from roadseg.models.checkpoint import atomic_save, load_checkpoint, release
    from roadseg.optimize import cache

    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    frames = sorted((KITTI / "training" / "image_2").glob("uu_00000*.jpg"))[:3]
    rel = release(tiny_ckpt, tmp_path / "rel.pt", calibration=frames)
    ck = load_checkpoint(rel)
    assert len(ck["calibration"]) == 3 and ck["calibration"][0][:2].tolist() == [0xFF, 0xD8]  # JPEG bytes
    ck["config"]["data"]["root"] = str(tmp_path / "gone")  # as when the file is used far from its data
    atomic_save(ck, tmp_path / "moved.pt")
    monkeypatch.chdir(tmp_path)
    pred = roadseg.load(str(tmp_path / "moved.pt"))  # auto: ONNX Runtime INT8, calibrated on the stored frames
    assert (pred.backend, pred.precision, pred.model) == ("onnxruntime", "int8", None)  # no torch model built
    assert pred.predict(np.zeros((40, 120, 3), np.uint8)).prob.shape == (40, 120)

    bare = load_checkpoint(tmp_path / "moved.pt")
    del bare["calibration"]
    atomic_save(bare, tmp_path / "bare.pt")
    with pytest.raises(WeightsError, match="no calibration frames.*--precision fp32"):
        cache.optimized_model(tmp_path / "bare.pt", "int8")
    with pytest.raises(WeightsError, match="is the checkpoint being released"):
        release(tmp_path / "bare.pt", tmp_path / "bare.pt")


def test_load_reads_the_checkpoint_once(tiny_ckpt, tmp_path, monkeypatch):
    import roadseg
    from roadseg.models import checkpoint as ck_mod

    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    reads = []
    real = ck_mod.Path.read_bytes

    def counting(self):
        if self == tiny_ckpt:
            reads.append(self)
        return real(self)

    monkeypatch.setattr(ck_mod.Path, "read_bytes", counting)
    pred = roadseg.load(tiny_ckpt, backend="onnxruntime", precision="fp32")
    assert len(reads) == 1 and pred.model is None and pred.scale == 0.25
    reads.clear()
    pred = roadseg.load(tiny_ckpt, backend="torch")
    assert len(reads) == 1 and pred.model is not None


@pytest.mark.parametrize("factor", [2, 4, 8, 32])
def test_shuffle_upsampling_is_the_transposed_convolution(factor):
    import torch

    from roadseg.models.fcn import ShuffleUp

    ct = torch.nn.ConvTranspose2d(2, 2, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    torch.nn.init.normal_(ct.weight, generator=torch.Generator().manual_seed(factor))
    x = torch.randn(2, 2, 5, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ct(x), ShuffleUp.from_transposed(ct)(x)
    assert got.shape == want.shape == (2, 2, 5 * factor, 7 * factor)
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="not an FCN upsampling"):
        ShuffleUp.from_transposed(torch.nn.ConvTranspose2d(2, 2, 3, stride=2))


def test_uniform_normalisation_becomes_the_first_layers_exact_input_quantization(lite_ckpt, tmp_path):
    """Lite0's (x - 127) / 128: the uint8 frame is the stem's quantized input (scale 1/128, zero point 127), so the
    INT8 graph has no float normalisation and no calibrated QuantizeLinear at its input."""
    model, _ = model_from_checkpoint(lite_ckpt)
    fp32 = export_onnx(model, tmp_path / "lite.onnx")
    int8 = quantize_int8(fp32, tmp_path / "lite_int8.onnx", [str(p) for p in TRAIN[:4]], count=4)
    m = onnx.load(str(int8))
    assert not [n for n in m.graph.node if n.op_type in ("Cast", "Mul", "Sub")]
    by_output = {n.output[0]: n for n in m.graph.node}
    first = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in by_output
                 and by_output[n.input[0]].input[0] == "image")  # image -> Transpose -> this DequantizeLinear
    init = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    assert float(init[first.input[1]]) == pytest.approx(1 / 128) and int(init[first.input[2]]) == 127
    frame = read_image(TRAIN[0])[:128, :256]
    ref = load(lite_ckpt, backend="torch").predict(frame).prob
    q = load(str(int8)).predict(frame).prob
    assert float(np.abs(ref - q).mean()) < 0.05


def test_others_share_is_the_cpu_other_processes_took(monkeypatch):
    import os

    from roadseg.benchmark import others_share

    hz = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    # 1 s on 2 CPUs: the machine ran 0.6 s of CPU time, this process 0.1 s of it -> others took 0.5 of 2 CPU-seconds
    assert others_share((0, 0), (round(0.6 * hz), round(0.1 * hz)), 1.0) == pytest.approx(0.25)
    assert others_share((0, 0), (10, 10), 1.0) == 0.0  # only this process
    assert others_share(None, (1, 1), 1.0) is None


def test_pad_frames_fills_only_the_margins_with_the_rounded_colour():
    from roadseg.optimize.runtime import pad_frames

    x = np.random.default_rng(0).integers(0, 256, (2, 375, 1242, 3)).astype(np.uint8)
    y = pad_frames(x, [123.68, 116.78, 103.94])  # VGG16's mean colour: rounded to uint8
    assert y.shape == (2, 384, 1248, 3) and np.array_equal(y[:, :375, :1242], x)
    assert (y[:, 375:] == [124, 117, 104]).all() and (y[:, :375, 1242:] == [124, 117, 104]).all()
    same = x[:, :352, :1216]
    assert np.array_equal(pad_frames(same, [127.0] * 3), same)  # already a multiple of 32


def test_resize_frame_matches_torchs_antialiased_resize_within_a_grey_level():
    import torch

    from roadseg.data.transforms import resize_image
    from roadseg.inference.processing import resize_frame

    frame = read_image(TRAIN[0])[:375, :1242]
    ours = resize_frame(frame, (281, 932)).astype(int)
    ref = resize_image(torch.from_numpy(frame).permute(2, 0, 1), (281, 932)).round().permute(1, 2, 0).numpy().astype(int)
    assert ours.shape == (281, 932, 3) and np.abs(ours - ref).max() <= 1 and np.abs(ours - ref).mean() < 0.25
    flat = np.full((100, 200, 3), 77, np.uint8)
    assert (resize_frame(flat, (50, 100)) == 77).all() and (resize_frame(flat, (150, 300)) == 77).all()
    n = torch.get_num_threads()  # on one thread inside (no spinning workers beside ONNX Runtime's), restored after
    assert torch.get_num_threads() == n
