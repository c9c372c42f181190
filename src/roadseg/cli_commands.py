"""CLI subcommands for inference, optimization, reports and the demo (registered by cli.build_parser)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from roadseg.errors import RoadsegError

log = logging.getLogger("roadseg")


def _cli():
    from roadseg import cli

    return cli


def make_predictor(a, checkpoint: str, spinning: bool = True):
    """--backend/--precision -> Predictor. 'auto' is the fastest path within the accuracy budget (ORT INT8,
    see README's benchmark), built from the checkpoint and cached; ORT fp32 when no calibration frames exist."""
    from roadseg.inference.predictor import Predictor
    from roadseg.optimize.cache import optimized_model

    backend, precision = a.backend, a.precision
    if backend == "auto":
        backend, precision = "onnxruntime", ("int8" if precision == "auto" else precision)
    elif precision == "auto":
        precision = "fp32"
    onnx = a.onnx
    if backend == "onnxruntime" and onnx is None:
        onnx, precision = optimized_model(checkpoint, precision)
    return Predictor(checkpoint, backend=backend, precision=precision, scale=a.scale, device=a.device, onnx_path=onnx,
                     tta=getattr(a, "tta", False), spinning=spinning)


def cmd_predict(a) -> int:
    import torch

    from roadseg.data.io import expand_inputs
    from roadseg.engine import distributed as dist
    from roadseg.inference.pipeline import predict_images

    cli = _cli()
    ckpt = cli._default_checkpoint(a.checkpoint)
    paths = expand_inputs(a.inputs)
    rank, world = dist.setup(torch.device("cpu") if a.device != "cuda" else torch.device("cuda"))
    try:  # under torchrun each rank takes every world-th frame; results are gathered on rank 0
        pred = make_predictor(a, ckpt)
        res = predict_images(pred, dist.shard(paths), a.out, probs=a.probs, skip_bad=a.skip_bad,
                             batch_size=a.batch_size, progress=cli.tqdm_progress if rank == 0 else None)
        parts = dist.all_gather_objects(res)
    finally:
        dist.teardown()
    if rank:
        return 0
    written = [w for p in parts for w in p["written"]]
    skipped = [s for p in parts for s in p["skipped"]]
    for _path, reason in skipped:
        print(f"skipped: {reason}")
    print(f"{len(written)} frames -> {a.out} ({pred.backend} {pred.precision}{f', {world} processes' if world > 1 else ''})")
    return 1 if skipped and not written else 0


def cmd_video(a) -> int:
    from roadseg.inference.pipeline import process_video

    cli = _cli()
    pred = make_predictor(a, cli._default_checkpoint(a.checkpoint), spinning=False)  # encoding runs beside it
    s = process_video(pred, a.input, a.out, side_by_side=a.side_by_side, batch_size=a.batch_size,
                      progress=cli.tqdm_progress)
    print(f"{a.out}: {s.text()}")
    if a.summary:
        Path(a.summary).write_text(json.dumps({**s.to_dict(), "backend": pred.backend, "precision": pred.precision}, indent=1))
    return 0


def cmd_export(a) -> int:
    from roadseg.engine.checkpoint import model_from_checkpoint
    from roadseg.optimize.runtime import export_onnx, op_counts, ort_session

    model, cfg = model_from_checkpoint(a.checkpoint)
    out = export_onnx(model, a.out, meta={"scale": cfg.train.val_scale or cfg.data.scale, "checkpoint": str(a.checkpoint)})
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB, nodes {sum(op_counts(out).values())} {op_counts(out)}")
    if a.optimized:
        ort_session(out, save_optimized=a.optimized)
        c = op_counts(a.optimized)
        print(f"{a.optimized}: ONNX Runtime graph optimizations (fusion, constant folding) -> nodes {sum(c.values())} {c}")
    if a.fp16:
        from roadseg.optimize.runtime import to_fp16

        print(f"{to_fp16(out, a.fp16)}: fp16 copy for GPUs")
    return 0


def cmd_release(a) -> int:
    from roadseg.engine.checkpoint import release

    out = release(a.checkpoint, a.out, half=not a.fp32)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB ({'fp32' if a.fp32 else 'fp16'} weights, no training state)")
    return 0


def cmd_quantize(a) -> int:
    from roadseg.optimize.quantize import quantize_int8

    ops = tuple(a.ops.split(","))
    keep = tuple(k for k in a.keep_float.split(",") if k)
    out = quantize_int8(a.model, a.out, a.calib, method=a.method, count=a.frames, ops=ops, keep_float=keep,
                        reduce_range=False if a.full_range else None)
    print(f"{out}: INT8 (QDQ, per-channel, {a.method} calibration on {a.frames} frames, ops {','.join(ops)}), "
          f"{out.stat().st_size / 1e6:.1f} MB")
    return 0


def cmd_benchmark(a) -> int:
    from roadseg.benchmark import run

    return run(a)


def cmd_report(a) -> int:
    from roadseg.report import write_report

    data = None
    if a.checkpoint and a.data:
        from roadseg.config import from_dict
        from roadseg.data import build_dataset
        from roadseg.engine.checkpoint import load_checkpoint

        cfg = from_dict(load_checkpoint(a.checkpoint)["config"]).data
        cfg.root = a.data
        data = build_dataset(cfg, a.split)
    print(f"report: {write_report(a.run_dir, checkpoint=a.checkpoint, data=data)}")
    return 0


def cmd_demo(a) -> int:
    """Shipped model on the 30 KITTI test frames, the dash-cam video, and the validation frames; then the report."""
    from PIL import Image

    from roadseg.config import from_dict
    from roadseg.data import build_dataset
    from roadseg.data.datasets import SEEN_NOTE, kitti_samples, validation_config
    from roadseg.engine.checkpoint import load_checkpoint
    from roadseg.engine.evaluate import evaluate, format_table, write_metrics
    from roadseg.inference.pipeline import overlay, predict_images, process_video
    from roadseg.report import write_report

    cli = _cli()
    t0 = time.time()
    data = Path(a.data)
    kitti, video = data / "kitti_road", data / "video" / "solidWhiteRight.mp4"
    for p in (kitti, video):
        if not p.exists():
            raise RoadsegError(f"{p}: demo data not found (pass --data pointing at shared/data)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = cli._default_checkpoint(a.checkpoint)
    print(f"model: {ckpt_path}")
    pred = make_predictor(a, ckpt_path)
    print(f"backend: {pred.backend} {pred.precision}, network input scale {pred.scale}")

    test = [s.image for s in kitti_samples(kitti, labelled=False)]
    r = predict_images(pred, test, out / "test_frames", probs=True, progress=cli.tqdm_progress)
    print(f"[{time.time() - t0:5.1f}s] {len(r['written'])} KITTI test frames -> {out / 'test_frames'}")

    s = process_video(pred, video, out / "solidWhiteRight_road.mp4", progress=cli.tqdm_progress)
    (out / "video.json").write_text(json.dumps({**s.to_dict(), "backend": pred.backend, "precision": pred.precision}, indent=1))
    import av

    with av.open(str(out / "solidWhiteRight_road.mp4")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == 60:
                f.to_image().save(out / "video_frame.png")
                break
    print(f"[{time.time() - t0:5.1f}s] video -> {s.output}: {s.text()}")

    ckpt = load_checkpoint(ckpt_path)
    dcfg, seen = validation_config(from_dict(ckpt["config"]).data)
    dcfg.root = str(kitti)
    val = build_dataset(dcfg, "val")
    if seen:
        print(f"note: {SEEN_NOTE}")
    ev = evaluate(pred, val, progress=cli.tqdm_progress)
    write_metrics(ev, out / "metrics.json", {"checkpoint": str(ckpt_path), "split": f"val (last {dcfg.val_last_n} per category)",
                                             "frames": len(val), "scale": pred.scale, "backend": pred.backend,
                                             "precision": pred.precision, "seen_in_training": seen})
    print(format_table(ev.results()))
    from roadseg.report import render_gallery

    render_gallery(out, json.loads((out / "metrics.json").read_text()), pred, val)
    first = val[0]["image"].permute(1, 2, 0).numpy()
    Image.fromarray(overlay(first, pred.predict(first))).save(out / "val_example.png")
    report = write_report(out, title="roadseg demo: shipped KITTI model")
    print(f"[{time.time() - t0:5.1f}s] report: {report}")
    return 0


def register(sub, add_backend) -> None:
    cli = _cli()
    def backend_auto(s):
        add_backend(s)
        s.set_defaults(backend="auto", precision="auto")
        for act in s._actions:
            if act.dest == "backend":
                act.choices = ["auto", "torch", "onnxruntime"]
                act.help = "auto (default) = the fastest path within the accuracy budget: onnxruntime int8"
            if act.dest == "precision":
                act.choices = ["auto", *act.choices]
                act.help = "auto (default): int8 for backend auto, fp32 otherwise"

    s = sub.add_parser("predict", help="road overlays, masks and probability maps for images")
    s.add_argument("inputs", nargs="+", help="image files, folders or globs")
    cli.add_model_arg(s)
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--probs", action="store_true", help="also write 8-bit probability PNGs (KITTI naming)")
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable images (listed) instead of stopping")
    s.add_argument("--batch-size", type=int, default=4)
    backend_auto(s)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("video", help="annotate a dash-cam video (H.264 out)")
    s.add_argument("input")
    s.add_argument("--out", required=True, help="output .mp4")
    cli.add_model_arg(s)
    s.add_argument("--side-by-side", action="store_true", help="original and overlay side by side")
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--summary", help="write the timing summary as JSON here")
    backend_auto(s)
    s.set_defaults(func=cmd_video)

    s = sub.add_parser("export", help="export a checkpoint to ONNX (+ optimized graph, fp16 copy)")
    s.add_argument("checkpoint")
    s.add_argument("--out", required=True, help="output .onnx")
    s.add_argument("--optimized", help="also save ONNX Runtime's fused/optimized graph here")
    s.add_argument("--fp16", help="also save an fp16 copy here (for GPUs)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("release", help="a shippable checkpoint: fp16 weights, config, metrics; no optimizer state")
    s.add_argument("checkpoint")
    s.add_argument("--out", required=True)
    s.add_argument("--fp32", action="store_true", help="keep fp32 weights")
    s.set_defaults(func=cmd_release)

    s = sub.add_parser("quantize", help="INT8 static quantization of an exported model (ONNX Runtime, QDQ)")
    s.add_argument("model", help="the fp32 .onnx from roadseg export")
    s.add_argument("--calib", required=True, help="folder or glob of real frames for calibration")
    s.add_argument("--out", required=True, help="output .onnx (never the input)")
    s.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    s.add_argument("--frames", type=int, default=16, help="number of calibration frames")
    s.add_argument("--ops", default="Conv,ConvTranspose,Clip", help="op types to quantize (comma-separated)")
    s.add_argument("--full-range", action="store_true",
                   help="8-bit weights even on CPUs without VNNI (default there: 7-bit, see README)")
    s.add_argument("--keep-float", default="", help="node-name parts to leave in float, e.g. fc6,fc7,score")
    s.set_defaults(func=cmd_quantize)

    s = sub.add_parser("benchmark", help="speed and accuracy of each model x backend x precision (JSON + markdown table)")
    from roadseg.benchmark import add_arguments

    add_arguments(s)
    s.set_defaults(func=cmd_benchmark)

    s = sub.add_parser("report", help="write report.html for an eval/demo folder")
    s.add_argument("run_dir")
    s.add_argument("--checkpoint", help="with --data: render the best/worst overlay gallery")
    s.add_argument("--data")
    s.add_argument("--split", default="val")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("demo", help="the shipped model on KITTI test frames, the dash-cam video, and validation")
    s.add_argument("--data", default="../shared/data")
    s.add_argument("--out", default="runs/demo")
    cli.add_model_arg(s)
    backend_auto(s)
    s.set_defaults(func=cmd_demo)
