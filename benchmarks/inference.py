"""Inference benchmark: every backend x precision on KITTI frames at native size (375x1242), in one run.

For each configuration (each in its own process, so peak memory is its own): end-to-end latency p50/p90 at
batch 1 (resize in, network, upsample out), throughput at the best batch, peak RSS, model file size, and
MaxF/AP/IoU on the validation frames next to the fp32 model's. Also the network's multiply-accumulates
and the achieved MAC/s against this machine's peak, measured in the same run with a GEMM of each precision.

    python benchmarks/inference.py --data ../shared/data/kitti_road [--checkpoint models/...pt] [--quick]

Writes benchmarks/results/inference.json and inference.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [("torch", "fp32"), ("torch", "bf16"), ("torch", "compiled"), ("onnxruntime", "fp32-noopt"),
           ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("onnxruntime", "int8-headfloat"), ("onnxruntime", "fp16"),
           ("torch", "fp16")]


def conv_macs(model, h: int, w: int) -> int:
    """Multiply-accumulates of all (transposed) convolutions for one (3, h, w) input."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        if isinstance(m, torch.nn.ConvTranspose2d):
            total += inp[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1] // inp[0].shape[0]
        else:
            total += out[0].numel() * k

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        model(torch.zeros(1, 3, h, w))
    for x in hs:
        x.remove()
    return total


def gemm_peak(kind: str, n: int = 1536, reps: int = 8) -> float:
    """Peak multiply-accumulates per second of an n x n x n GEMM: int8 (u8 x s8) in ORT; fp32 the better of
    PyTorch (MKL) and ORT (MLAS), which differ a lot on AMD CPUs; bf16 in PyTorch."""
    if kind == "fp32":
        return max(gemm_peak("fp32-torch", n, reps), gemm_peak("fp32-ort", n, reps))
    if kind == "fp32-ort":
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        b = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "g",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
                              [numpy_helper.from_array(b, "b")])
        sess = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
        a = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)

        def run():
            sess.run(None, {"a": a})
    elif kind == "int8":
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper

        b = np.random.default_rng(0).integers(-128, 127, (n, n)).astype(np.int8)
        g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "g",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
                              [onnx.numpy_helper.from_array(b, "b")])
        sess = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
        a = np.random.default_rng(1).integers(0, 255, (n, n)).astype(np.uint8)

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


def run_one(backend: str, precision: str, args) -> dict:
    """One configuration, in this process."""
    from roadseg.config import from_dict
    from roadseg.data import build_dataset, read_image
    from roadseg.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from roadseg.engine.evaluate import evaluate
    from roadseg.inference.predictor import Predictor
    from roadseg.optimize.runtime import ort_session

    ckpt = load_checkpoint(args.checkpoint)
    cfg = from_dict(ckpt["config"])
    onnx_path, size = None, Path(args.checkpoint).stat().st_size
    if backend == "onnxruntime":
        onnx_path = Path(args.workdir) / {"fp32-noopt": "fp32", "fp32": "fp32", "int8": "int8", "int8-headfloat": "int8_headfloat",
                                          "fp16": "fp16"}[precision]
        onnx_path = onnx_path.with_suffix(".onnx")
        size = onnx_path.stat().st_size
    prec = {"fp32-noopt": "fp32", "int8-headfloat": "int8"}.get(precision, precision)
    pred = Predictor(ckpt, backend=backend, precision=prec, onnx_path=onnx_path)
    if precision == "fp32-noopt":  # ONNX Runtime with its graph optimizations (fusion, folding) turned off
        pred.session = ort_session(onnx_path, optimize=False)
    dcfg = cfg.data
    dcfg.root = args.data
    val = build_dataset(dcfg, "val")
    frame = read_image(sorted((Path(args.data) / "training" / "image_2").glob("um_*"))[0])
    frame = frame[:375, :1242] if frame.shape[:2] != (375, 1242) else frame
    reps = 3 if args.quick else 10
    for _ in range(2):
        pred.predict(frame)  # warm-up (and compilation)
    lat = []
    for _ in range(reps):
        t = time.perf_counter()
        pred.predict(frame)
        lat.append(time.perf_counter() - t)
    # network-only time at batch 1 (for MAC/s)
    x = pred.prepare(frame)[None]
    net = []
    for _ in range(reps):
        t = time.perf_counter()
        pred._logits(x)
        net.append(time.perf_counter() - t)
    best_tp, best_b = 0.0, 1
    for b in (1, 2, 4):
        batch = [frame] * b
        pred.predict_batch(batch)
        t = time.perf_counter()
        for _ in range(max(1, reps // b)):
            pred.predict_batch(batch)
        tp = b * max(1, reps // b) / (time.perf_counter() - t)
        if tp > best_tp:
            best_tp, best_b = tp, b
    if args.quick:
        val.samples = val.samples[:: max(1, len(val) // 9)]
    res = evaluate(pred, val).results()["all"]
    model, _ = model_from_checkpoint(ckpt)
    macs = conv_macs(model, *x.shape[-2:])
    return {"backend": backend, "precision": precision, "p50_ms": 1000 * float(np.median(lat)),
            "p90_ms": 1000 * float(np.percentile(lat, 90)), "net_ms": 1000 * float(np.median(net)),
            "throughput_fps": best_tp, "best_batch": best_b, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "model_mb": size / 1e6, "MaxF": res["MaxF"], "AP": res["AP"], "IoU": res["IoU"], "val_frames": len(val),
            "macs": macs, "net_input": list(x.shape[-2:])}


def prepare(args) -> None:
    """Export fp32 ONNX, INT8 (calibrated on training frames, never validation ones) and an fp16 copy."""
    from roadseg.data.datasets import kitti_samples, split_samples
    from roadseg.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from roadseg.optimize.quantize import quantize_int8
    from roadseg.optimize.runtime import export_onnx, to_fp16

    ckpt = load_checkpoint(args.checkpoint)
    model, cfg = model_from_checkpoint(ckpt)
    w = Path(args.workdir)
    export_onnx(model, w / "fp32.onnx", meta={"scale": cfg.train.val_scale or cfg.data.scale})
    train = split_samples(kitti_samples(args.data), "train", cfg.data.val_last_n)
    frames = [str(s.image) for s in train]
    quantize_int8(w / "fp32.onnx", w / "int8.onnx", frames, method=args.calib, count=16)
    # the alternative: the head (fc6, fc7, score layers) left in float, to justify quantizing everything
    quantize_int8(w / "fp32.onnx", w / "int8_headfloat.onnx", frames, method=args.calib, count=16,
                  keep_float=("fc6", "fc7", "score"))
    to_fp16(w / "fp32.onnx", w / "fp16.onnx")


def markdown(rows: list[dict], meta: dict) -> str:
    ref = next((r for r in rows if r.get("backend") == "torch" and r.get("precision") == "fp32" and "error" not in r), None)
    lines = [f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores), torch {meta['torch']}, onnxruntime "
             f"{meta['onnxruntime']}; frames 375x1242, network input {meta['net_input']}, {meta['val_frames']} validation frames.",
             f"Peak GEMM (same run): fp32 {meta['peak_gmacs']['fp32']:.1f} GMAC/s, int8 {meta['peak_gmacs']['int8']:.1f} GMAC/s"
             + (f", bf16 {meta['peak_gmacs']['bf16']:.1f} GMAC/s" if meta["peak_gmacs"].get("bf16") else "") + ".", "",
             "| backend | precision | p50 ms | p90 ms | throughput fps (batch) | speed-up | net GMAC/s | % of peak | peak RSS MB | model MB | MaxF | AP | IoU | dMaxF |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['precision']} | – | – | – | – | – | – | – | – | – | – | – | {r['error']} |")
            continue
        gmacs = r["macs"] / (r["net_ms"] / 1000) / 1e9
        peak = meta["peak_gmacs"]["int8" if r["precision"].startswith("int8") else "fp32"]
        sp = r["throughput_fps"] / ref["throughput_fps"] if ref else float("nan")
        dm = 100 * (r["MaxF"] - ref["MaxF"]) if ref else float("nan")
        lines.append(f"| {r['backend']} | {r['precision']} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f} | {r['throughput_fps']:.2f} ({r['best_batch']}) "
                     f"| {sp:.2f}x | {gmacs:.1f} | {100 * gmacs / peak:.0f}% | {r['peak_rss_mb']:.0f} | {r['model_mb']:.1f} "
                     f"| {100 * r['MaxF']:.2f} | {100 * r['AP']:.2f} | {100 * r['IoU']:.2f} | {dm:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(ROOT / "models" / "roadseg_kitti_fcn8s.pt"))
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kitti_road"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--calib", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", help="backend:precision[,..] to run")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        backend, precision = args.one.split(":")
        print(json.dumps(run_one(backend, precision, args)))
        return 0
    import onnxruntime

    from roadseg.inference.predictor import cpu_name, cpu_supports_bf16

    with tempfile.TemporaryDirectory() as wd:
        args.workdir = wd
        t0 = time.time()
        prepare(args)
        print(f"exported and quantized in {time.time() - t0:.0f} s", file=sys.stderr)
        rows = []
        cuda = torch.cuda.is_available()
        wanted = set(args.only.split(",")) if args.only else None
        for backend, precision in CONFIGS:
            if wanted and f"{backend}:{precision}" not in wanted:
                continue
            if precision == "fp16" and not cuda:
                rows.append({"backend": backend, "precision": precision, "error": "needs a GPU (none here)"})
                continue
            if precision == "bf16" and not cpu_supports_bf16() and not cuda:
                rows.append({"backend": backend, "precision": precision, "error": "CPU lacks AVX-512 BF16/AMX"})
                continue
            cmd = [sys.executable, __file__, "--one", f"{backend}:{precision}", "--checkpoint", args.checkpoint,
                   "--data", args.data, "--workdir", wd] + (["--quick"] if args.quick else [])
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                rows.append({"backend": backend, "precision": precision,
                             "error": (r.stderr.strip().splitlines() or ["failed"])[-1][:120]})
            else:
                rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(f"{backend} {precision}: {rows[-1].get('p50_ms', rows[-1].get('error'))}", file=sys.stderr)
    ok = [r for r in rows if "error" not in r]
    meta = {"date": datetime.date.today().isoformat(), "cpu": cpu_name(), "cores": os.cpu_count(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "net_input": "x".join(map(str, ok[0]["net_input"])) if ok else "?", "val_frames": ok[0]["val_frames"] if ok else 0,
            "peak_gmacs": {"fp32": gemm_peak("fp32") / 1e9, "int8": gemm_peak("int8") / 1e9,
                           "bf16": gemm_peak("bf16") / 1e9 if cpu_supports_bf16() else None},
            "checkpoint": args.checkpoint, "quick": args.quick}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    md = markdown(rows, meta)
    (out / "inference.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
