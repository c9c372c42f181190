"""Inference benchmark: speed and accuracy of shipped models x backend x precision (x network input scale).

For each configuration, in its own process (so peak memory and threads are its own), on KITTI frames at native
size (375x1242 in, full-resolution road probabilities out):
  end to end   frame (uint8 RGB) -> probabilities: resize/pad, network, upsampling, softmax; p50 and p90, batch 1
  network      the network alone on an input already at its size (torch module / ONNX Runtime session.run)
  accuracy     MaxF / AP / IoU on the validation frames (never trained on), and the change against torch fp32
plus the network's multiply-accumulates and the achieved MAC/s against this machine's GEMM peak of that precision.
INT8 graphs are calibrated on 16 training frames of the checkpoint's own training split.

    roadseg benchmark [--model kitti-lite0 --model kitti-fcn8s-vgg16] [--scales 0.5,0.75,1.0] [--quick]
    roadseg benchmark --device cuda [--batch-sizes 1,8]     # torch and TensorRT rows on an NVIDIA GPU

Writes inference.json and inference.md in --out (default benchmarks/results). Timings are only meaningful on an
otherwise idle machine: nothing else (training, tests) should run meanwhile; the last column says how much of
the CPUs other processes took while each row was timed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIGS = [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
FULL = [("torch", "compiled"), ("onnxruntime", "fp32-noopt"), ("onnxruntime", "int8-floatio"),
        ("onnxruntime", "int8-u8weights"), ("onnxruntime", "fp16"), ("torch", "fp16")]
# Comparison graphs (--full, or --only): fp32-noopt, ONNX Runtime without its graph optimizations; int8-floatio, the
# INT8 graph in the earlier layout ((N, 3, H, W) float in, logits out; optimize.runtime), what uint8 input and a
# probability output buy; int8-u8weights, uint8 weights with a zero point instead of symmetric int8 ones, what the
# quantization format buys (optimize.quantize)
VARIANTS = {"int8-floatio": {"layout": "float_nchw"}, "int8-u8weights": {"signed_weights": False}}
# on an NVIDIA GPU (--device cuda): torch eager and TensorRT engines (built from the exported graph, cached)
CUDA_CONFIGS = [("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16"), ("tensorrt", "fp32"), ("tensorrt", "fp16"),
                ("tensorrt", "int8")]
GRAPH_FILES = {"fp32-noopt": "fp32", **{v: v for v in VARIANTS}}


def conv_macs(model, h: int, w: int) -> int:
    """Multiply-accumulates of all (transposed) convolutions for one (3, h, w) input."""
    import torch  # here, not at import: the CLI builds its parser from this module

    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, torch.nn.ConvTranspose2d):
            total += inp[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1] // inp[0].shape[0]
        else:
            total += out[0].numel() * m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        model(torch.zeros(1, 3, h, w))
    for x in hs:
        x.remove()
    return total


def gemm_peak(kind: str, n: int = 1536, reps: int = 8) -> float:
    """Peak multiply-accumulates per second of an n x n x n GEMM: int8 (u8 x s8) in ORT; fp32 the better of
    PyTorch (MKL) and ORT (MLAS), which differ a lot on AMD CPUs; bf16 in PyTorch."""
    import torch  # here, not at import: the CLI builds its parser from this module

    if kind == "fp32":
        return max(gemm_peak("fp32-torch", n, reps), gemm_peak("fp32-ort", n, reps))
    if kind in ("fp32-ort", "int8"):
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper

        rng = np.random.default_rng(0)
        if kind == "int8":
            b, a = rng.integers(-128, 127, (n, n)).astype(np.int8), rng.integers(0, 255, (n, n)).astype(np.uint8)
            op, tin, tout = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
        else:
            b, a = rng.standard_normal((n, n)).astype(np.float32), rng.standard_normal((n, n)).astype(np.float32)
            op, tin, tout = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
        g = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], "g", [helper.make_tensor_value_info("a", tin, [n, n])],
                              [helper.make_tensor_value_info("y", tout, [n, n])], [onnx.numpy_helper.from_array(b, "b")])
        sess = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())

        def run():
            sess.run(None, {"a": a})
    else:
        dtype = torch.float32 if kind == "fp32-torch" else torch.bfloat16
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)

        def run():
            torch.mm(a, b)
    run()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t)
    return n**3 / min(ts)


def cuda_peak(kind: str, n: int = 8192, reps: int = 10) -> float | None:
    """Peak multiply-accumulates per second of an n x n x n GEMM on the GPU: fp32 (TF32 off), fp16, int8 (torch's
    _int_mm); None where torch has no such kernel."""
    import torch

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.int8}[kind]
    if kind == "int8":
        if not hasattr(torch, "_int_mm"):
            return None
        a = torch.randint(-128, 127, (n, n), dtype=dtype, device="cuda")
        b = torch.randint(-128, 127, (n, n), dtype=dtype, device="cuda")

        def run():
            torch._int_mm(a, b)
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        a, b = torch.randn(n, n, dtype=dtype, device="cuda"), torch.randn(n, n, dtype=dtype, device="cuda")

        def run():
            torch.mm(a, b)
    try:
        run()
    except RuntimeError:
        return None
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        run()
    torch.cuda.synchronize()
    return n**3 * reps / (time.perf_counter() - t)


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec,
    so a child started by a big parent would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _busy_jiffies() -> tuple[int, int] | None:
    """(CPU time every process used, CPU time this process used), in clock ticks; None where /proc is missing."""
    import os

    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:8]]
    except OSError:
        return None
    t = os.times()
    return v[0] + v[1] + v[2] + v[5] + v[6], round((t.user + t.system) * os.sysconf("SC_CLK_TCK"))


def others_share(before, after, seconds: float) -> float | None:
    """The fraction of the machine's CPUs that other processes used between two _busy_jiffies readings: what says
    whether a timing was taken on an idle machine (timings are only meaningful when it is near 0)."""
    import os

    if before is None or after is None or seconds <= 0:
        return None
    other = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, other / (seconds * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)))


OTHERS = []  # others_share of each timed() call of this process


def timed(fn, reps: int) -> list[float]:
    out, before, t0 = [], _busy_jiffies(), time.perf_counter()
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    OTHERS.append(others_share(before, _busy_jiffies(), time.perf_counter() - t0))
    return out


def run_one(model_path: str, scale: float, backend: str, precision: str, workdir: Path, data: str, quick: bool,
            device: str = "cpu", batch: int = 1, far_zoom: float = 0.0) -> dict:
    """One configuration, in this process. With batch > 1 the times are per frame of a batch of that many. far_zoom:
    the far band's second pass (inference.settings), timed and counted with the first."""
    from roadseg.config import from_dict
    from roadseg.inference.predictor import load
    from roadseg.models.checkpoint import load_checkpoint, model_from_checkpoint
    from roadseg.optimize.runtime import ort_session

    ckpt = load_checkpoint(model_path)
    cfg = from_dict(ckpt["config"])
    onnx_path, size = None, Path(model_path).stat().st_size
    if backend == "onnxruntime":
        onnx_path = workdir / f"{GRAPH_FILES.get(precision, precision)}.onnx"
        size = onnx_path.stat().st_size
    prec = "int8" if precision in VARIANTS else {"fp32-noopt": "fp32"}.get(precision, precision)
    pred = load(ckpt, backend=backend, precision=prec, onnx=onnx_path, scale=scale, device=device, batch_size=batch,
                far_zoom=far_zoom)
    if precision == "fp32-noopt":  # ONNX Runtime with its graph optimizations (fusion, folding) turned off
        pred.runtime.session = ort_session(pred.runtime.graph, optimize=False)
    frames = [timing_frame(ckpt, data)] * batch
    lat, net, hws = _timings(pred, frames, 5 if quick else 20, device == "cuda")
    res, seen, nval = _accuracy(pred, cfg, data, quick)
    model, _ = model_from_checkpoint(ckpt)
    hw = hws[0]
    return {"backend": backend, "precision": precision, "scale": scale, "device": device, "batch": batch,
            "p50_ms": 1000 * float(np.median(lat)) / batch, "p90_ms": 1000 * float(np.percentile(lat, 90)) / batch,
            "net_ms": 1000 * float(np.median(net)) / batch, "peak_rss_mb": peak_rss_mb(), "model_mb": size / 1e6,
            "MaxF": res["MaxF"], "AP": res["AP"], "IoU": res["IoU"], "val_frames": nval, "seen": seen,
            "macs": sum(conv_macs(model, *x) for x in hws), "net_input": list(hw),
            "far_zoom_input": list(hws[1]) if far_zoom else None,
            "others_cpu": max((o for o in OTHERS if o is not None), default=None)}


def timing_frame(ckpt: dict, data: str) -> np.ndarray:
    """The frame timed: the first um frame of the KITTI folder, or without data the first calibration frame the
    model file carries (a KITTI frame), cut to 375x1242."""
    from roadseg.data import read_image

    if data:
        return read_image(sorted((Path(data) / "training" / "image_2").glob("um_*"))[0])[:375, :1242]
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(ckpt["calibration"][0].numpy().tobytes())).convert("RGB"))[:375, :1242]


def _timings(pred, frames: list, reps: int, cuda: bool):
    """(end-to-end times, network times, the network input hw of each pass) of the predictor on a batch of frames:
    one pass, or two with far_zoom (the network time is both). On a GPU each timing waits for the GPU (the end to
    end does already: the probabilities come back to the host)."""
    from roadseg.inference.processing import passes, preprocess

    sync = _cuda_sync if cuda else (lambda: None)
    for _ in range(3):
        pred.probabilities(frames)  # warm-up (and compilation, engine building)
    lat = timed(lambda: pred.probabilities(frames), reps)
    xs = [preprocess(f, s, pred.runtime.input_kind) for f, s in passes(frames, pred.settings)]
    hws = [tuple(x.shape[1:3]) if pred.runtime.input_kind == "uint8" else tuple(x.shape[-2:]) for x in xs]
    if pred.backend == "onnxruntime":  # the session alone, on inputs already padded to a multiple of 32
        feeds = [pred.runtime.feed(x) for x in xs]
        net = timed(lambda: [pred.runtime.session.run(None, f) for f in feeds], reps)
    elif pred.backend == "tensorrt":  # the engine alone, on batches already on the GPU
        from roadseg.inference.runtimes.tensorrt_runtime import frames_to_batch

        rt = pred.runtime
        xbs = [frames_to_batch(x, rt.device, rt.meta["pad_value"], rt.meta["multiple"]) for x in xs]
        net = timed(lambda: ([rt.run(xb) for xb in xbs], sync()), reps)
    else:
        xs = [x.to("cuda") for x in xs] if cuda else xs
        net = timed(lambda: ([pred.logits(x) for x in xs], sync()), reps)
    return lat, net, hws


def _cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()


def _accuracy(pred, cfg, data: str, quick: bool):
    """(MaxF/AP/IoU of "all", whether the file trained on these frames, frames) on the validation split."""
    if not data:
        return {"MaxF": None, "AP": None, "IoU": None}, False, 0
    from roadseg.data import build_dataset
    from roadseg.data.datasets import validation_config
    from roadseg.engine.evaluate import evaluate

    dcfg, seen = validation_config(cfg.data)
    dcfg.root = data
    val = build_dataset(dcfg, "val")
    if quick:
        val.samples = val.samples[:: max(1, len(val) // 9)]
    return evaluate(pred, val).results()["all"], seen, len(val)


def prepare(model_path: str, workdir: Path, data: str, cuda: bool, variants: tuple[str, ...] = ()) -> None:
    """Export fp32 ONNX and INT8, calibrated as `--backend auto` does: on the training frames the file carries (or,
    for a training checkpoint, 16 of its training frames; never validation ones); and the comparison graphs
    `variants` (VARIANTS' names)."""
    from roadseg.data.datasets import kitti_samples, split_samples
    from roadseg.models.checkpoint import ModelInfo, load_checkpoint, model_from_checkpoint
    from roadseg.optimize.cache import calibration_files
    from roadseg.optimize.quantize import quantize_int8
    from roadseg.optimize.runtime import export_onnx, to_fp16

    ckpt = load_checkpoint(model_path)
    model, cfg = model_from_checkpoint(ckpt)
    meta = ModelInfo.from_checkpoint(ckpt, model_path).to_meta()
    export_onnx(model, workdir / "fp32.onnx", meta=meta)
    if ckpt.get("calibration") or not data:
        frames = calibration_files(ckpt, model_path, workdir)
    else:
        frames = [s.image for s in split_samples(kitti_samples(data), "train", cfg.data.val_last_n)]
    frames = [str(f) for f in frames]
    quantize_int8(workdir / "fp32.onnx", workdir / "int8.onnx", frames, method="minmax", count=16)
    for name in variants:
        opts = dict(VARIANTS[name])
        src = workdir / "fp32.onnx"
        if "layout" in opts:
            src = export_onnx(model, workdir / f"fp32-{name}.onnx", meta=meta, layout=opts.pop("layout"))
        quantize_int8(src, workdir / f"{name}.onnx", frames, method="minmax", count=16, **opts)
    if cuda:
        to_fp16(workdir / "fp32.onnx", workdir / "fp16.onnx")


def markdown(rows: list[dict], meta: dict) -> str:
    gpu = meta.get("device") == "cuda"
    where = (f"{meta['gpu']} (TensorRT {meta.get('tensorrt') or 'not installed'}), host {meta['cpu']}" if gpu else
             f"{meta['cpu']} ({meta['cores']} cores; flags: {meta['cpu_flags']})")
    lines = [f"Measured {meta['date'][:10]} on {where}, torch "
             f"{meta['torch']}, onnxruntime {meta['onnxruntime']}; frames 375x1242 in, full-resolution probabilities out; "
             + (f"far zoom {meta['far_zoom']:g} (a second pass over the far road, in every time and MaxF); "
                if meta.get("far_zoom") else "")
             + (f"MaxF on {meta['val_frames']} validation frames." if meta["val_frames"] else
                "no accuracy: no KITTI data here (pass --data DIR); timed on a frame stored in each model file."),
             "Peak GEMM (same run): " + ", ".join(f"{k} {v:.0f} GMAC/s" for k, v in meta["peak_gmacs"].items() if v) + ".",
             "", f"| model | scale | backend | precision |{' batch | ' if gpu else ' '}end-to-end p50 ms (fps) | p90 ms "
             "| network ms (fps) | GMAC/s (% of peak) | peak RSS MB | file MB | MaxF | AP | IoU | dMaxF | others' CPU |",
             "|---|---|---|---|" + ("---|" if gpu else "") + "---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['model']} | {r.get('scale', '')} | {r['backend']} | {r['precision']} " + (
            f"| {r.get('batch', 1)} " if gpu else "")
        if "error" in r:
            lines.append(head + f"| – | – | – | – | – | – | – | – | – | {r['error']} | – |")
            continue
        lines.append(head + _cells(r, rows, meta))
    if gpu:
        lines += ["", "Times per frame (a batch's time divided by its frames); end to end includes the copies to and from "
                  "the GPU."]
    if any(r.get("seen") for r in rows):
        lines += ["", "† not a validation number: the file was retrained on every frame, these included (its model card "
                  "gives the held-out score of the same recipe); the column still shows what each backend and scale costs."]
    return "\n".join(lines) + "\n"


def _cells(r: dict, rows: list[dict], meta: dict) -> str:
    """A measured row's cells after its configuration: times, compute against the peak, memory, accuracy."""
    ref = next((q for q in rows if q["model"] == r["model"] and q.get("scale") == r["scale"] and "error" not in q
                and (q["backend"], q["precision"]) == ("torch", "fp32")), None)
    gmacs = r["macs"] / (r["net_ms"] / 1000) / 1e9
    p = r["precision"]
    kind = "int8" if p.startswith("int8") else p if p in ("bf16", "fp16") else "fp32"
    kind = "fp16" if kind == "bf16" and meta.get("device") == "cuda" else kind
    peak = meta["peak_gmacs"].get(kind) or meta["peak_gmacs"]["fp32"]
    dm = f"{100 * (r['MaxF'] - ref['MaxF']):+.2f}" if ref and r["MaxF"] is not None else "–"
    acc = [f"{100 * r[k]:.2f}" if r[k] is not None else "–" for k in ("MaxF", "AP", "IoU")]
    return (f"| {r['p50_ms']:.1f} ({1000 / r['p50_ms']:.1f}) | {r['p90_ms']:.1f} | {r['net_ms']:.1f} "
            f"({1000 / r['net_ms']:.1f}) | {gmacs:.0f} ({100 * gmacs / peak:.0f}%) | {r['peak_rss_mb']:.0f} "
            f"| {r['model_mb']:.1f} | {acc[0]}{mark(r)} | {acc[1]} | {acc[2]} | {dm} | {others(r)} |")


def others(row: dict) -> str:
    """The share of the CPUs other processes used while the row was timed (the most of its timings)."""
    o = row.get("others_cpu")
    return "–" if o is None else f"{100 * o:.0f}%"


def mark(row: dict) -> str:
    return " †" if row.get("seen") else ""


DEFAULT_DATA = "../shared/data/kitti_road"


def _batch_sizes(text: str) -> str:
    try:
        ok = all(int(b) > 0 for b in text.split(","))
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"expected frames per call as whole numbers > 0, e.g. 1,8; got {text!r}")
    return text


def add_arguments(p) -> None:
    """The benchmark's options (shared by `roadseg benchmark` and `python -m roadseg.benchmark`)."""
    p.add_argument("--model", "--checkpoint", dest="models", action="append", metavar="NAME|CKPT",
                   help="shipped model name or checkpoint (repeatable; default: the shipped KITTI models)")
    p.add_argument("--data", help=f"KITTI road folder for accuracy (default: {DEFAULT_DATA} if present; without data "
                   "only speed is measured)")
    p.add_argument("--out", default="benchmarks/results", help="folder for inference.json and inference.md")
    p.add_argument("--scales", help="network input scales, e.g. 0.5,0.75,1.0 (default: each model's own)")
    p.add_argument("--only", help="backend:precision[,..] to run, e.g. onnxruntime:int8")
    p.add_argument("--full", action="store_true", help="also torch.compile, ORT without graph optimizations, fp16 (GPU)")
    p.add_argument("--quick", action="store_true", help="fewer repetitions and validation frames")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cpu: torch and ONNX Runtime rows; cuda: torch and TensorRT rows on the GPU")
    p.add_argument("--batch-sizes", default="1", type=_batch_sizes, help="frames per call, e.g. 1,8 (times are per frame)")
    from roadseg.config import FAR_ZOOM
    from roadseg.inference.settings import far_zoom_factor

    p.add_argument("--far-zoom", type=far_zoom_factor, nargs="?", const=FAR_ZOOM, metavar="FACTOR",
                   help="every row with a second pass over the far road at FACTOR times the scale (in (1, 4], 2 without it; "
                        "as eval --far-zoom): both passes timed")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="roadseg benchmark", description=__doc__.splitlines()[0])
    add_arguments(p)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.one:  # one configuration, in the child process run() starts: its row as JSON on stdout
        model, scale, backend, precision, device, batch, zoom = args.one.split("|")
        print(json.dumps(run_one(model, float(scale), backend, precision, Path(args.workdir), args.data, args.quick,
                                 device, int(batch), float(zoom))))
        return 0
    print(run(args, argv, say=lambda m: print(m, file=sys.stderr)))
    return 0


def _quiet(_msg: str) -> None:
    pass


def run(args, argv=None, say=_quiet) -> str:
    """Every configuration of args (add_arguments' options), each in its own process; writes inference.json and
    inference.md in args.out and returns the markdown table. `say` gets a line per configuration as it finishes."""
    from roadseg.errors import DataError, PrecisionError
    from roadseg.models.shipped import SHIPPED, locate

    data = args.data or DEFAULT_DATA
    if not (Path(data) / "training" / "image_2").is_dir():
        if args.data:
            raise DataError(f"{args.data}: not a KITTI road folder (expected training/image_2)")
        say(f"no KITTI data at {DEFAULT_DATA}: timing only, on a frame stored in each model file "
            "(pass --data DIR for accuracy)")
        data = ""
    args.data = data
    device = getattr(args, "device", "cpu") or "cpu"
    if device == "cuda" and not _cuda_available():
        raise PrecisionError("benchmark --device cuda: torch sees no CUDA GPU here (no NVIDIA GPU or driver, or a "
                             "CPU-only torch build)")
    names = args.models or [n for n in SHIPPED if n.startswith("kitti-")]
    models = [(n, locate(n)) for n in names]
    rows = [row for name, path in models for row in _model_rows(args, name, path, device, say)]
    meta = _meta(args, argv, rows, models, device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from roadseg.data.io import atomic_write

    md = markdown(rows, meta)
    for name, text in (("inference.json", json.dumps({"meta": meta, "rows": rows}, indent=1)), ("inference.md", md)):
        atomic_write(out / name, lambda f, text=text: f.write(text), text=True)  # a planted link is replaced
    return md


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _model_rows(args, name: str, path, device: str, say) -> list[dict]:
    """The rows of one model: every wanted configuration x scale x batch size, each timed in its own process."""
    from roadseg.config import from_dict
    from roadseg.models.checkpoint import load_checkpoint

    cuda = device == "cuda"
    configs = CUDA_CONFIGS if cuda else CONFIGS + (FULL if args.full else [])
    wanted = set(args.only.split(",")) if args.only else None
    configs = [c for c in configs if not wanted or f"{c[0]}:{c[1]}" in wanted]
    cfg = from_dict(load_checkpoint(path)["config"])
    scales = [float(s) for s in args.scales.split(",")] if args.scales else [cfg.inference_scale]
    batches = [int(b) for b in (getattr(args, "batch_sizes", None) or "1").split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as wd:
        if not cuda:  # the ONNX Runtime graphs (TensorRT's come from the model cache, as `predict` makes them)
            t0 = time.time()
            prepare(str(path), Path(wd), args.data, False, variants=tuple(p for _, p in configs if p in VARIANTS))
            say(f"{name}: exported and quantized in {time.time() - t0:.0f} s")
        for scale in scales:
            for batch in batches:
                for backend, precision in configs:
                    row = {"model": name, "scale": scale, "backend": backend, "precision": precision, "batch": batch}
                    rows.append({**row, **_measure(args, path, row, device, wd)})
                    got = rows[-1]
                    maxf = f"{100 * got['MaxF']:.2f}" if got.get("MaxF") is not None else "-"
                    done = f"{got['p50_ms']:.1f} ms, MaxF {maxf}" if "p50_ms" in got else got["error"]
                    say(f"{name} x{scale} batch {batch} {backend} {precision} on {device}: {done}")
    return rows


def _measure(args, path, row: dict, device: str, workdir: str) -> dict:
    """One row's measurements from its own process, or {"error": ...} (a precision this machine lacks, a failure)."""
    from roadseg.device import cpu_supports_bf16

    if device == "cpu" and row["precision"] == "fp16":
        return {"error": "needs a GPU (benchmark --device cuda)"}
    if device == "cpu" and row["precision"] == "bf16" and not cpu_supports_bf16():
        return {"error": "CPU lacks AVX-512 BF16/AMX"}
    one = f"{path}|{row['scale']}|{row['backend']}|{row['precision']}|{device}|{row['batch']}|{args.far_zoom or 0}"
    cmd = [sys.executable, "-m", "roadseg.benchmark", "--one", one, "--data", args.data, "--workdir", workdir]
    r = subprocess.run(cmd + (["--quick"] if args.quick else []), capture_output=True, text=True)
    if r.returncode:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _meta(args, argv, rows: list[dict], models, device: str) -> dict:
    """What the table was measured on: date, CPU and its flags, versions, the GEMM peaks of the same run (the GPU's
    too, with its name, for --device cuda)."""
    import onnxruntime
    import torch

    from roadseg.device import cpu_cores, cpu_name, cpu_supports_bf16, key_flags

    ok = [r for r in rows if "error" not in r]
    meta = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "cpu": cpu_name(), "cpu_flags": key_flags(),
            "cores": cpu_cores(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "val_frames": ok[0]["val_frames"] if ok else 0, "device": device,
            "models": {n: str(p) for n, p in models}, "quick": args.quick, "far_zoom": args.far_zoom or 0.0,
            "command": " ".join(["roadseg benchmark", *(argv if argv is not None else sys.argv[1:][1:])])}
    if device == "cuda":
        from roadseg.inference.settings import probe

        gpu = probe()
        peaks = {k: cuda_peak(k) for k in ("fp32", "fp16", "int8")}
        return {**meta, "gpu": gpu.gpu_text(), "tensorrt": gpu.tensorrt,
                "peak_gmacs": {k: v / 1e9 if v else None for k, v in peaks.items()}}
    return {**meta, "peak_gmacs": {"fp32": gemm_peak("fp32") / 1e9, "int8": gemm_peak("int8") / 1e9,
                                   "bf16": gemm_peak("bf16") / 1e9 if cpu_supports_bf16() else None}}


if __name__ == "__main__":
    sys.exit(main())
