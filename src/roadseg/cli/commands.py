"""The subcommands: each turns parsed arguments into one library call, prints the outcome and returns the exit
code. Their arguments are declared in roadseg.cli.build_parser."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from roadseg.cli.common import (
    check_outputs,
    default_checkpoint,
    folder_values,
    make_predictor,
    settings_kwargs,
    tqdm_progress,
)
from roadseg.errors import DataError


def cmd_weights(a) -> int:
    from roadseg.models.weights import fetch

    path = fetch(a.source, a.path)
    print(f"{a.source}: verified and cached at {path}")
    return 0


def cmd_train(a) -> int:
    from roadseg.config import load_config
    from roadseg.engine.train import fit

    cfg = load_config(a.config, a.overrides)
    run_dir = fit(cfg, resume=a.resume, progress=tqdm_progress, overwrite=a.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {run_dir}")
    return 0


def cmd_eval(a) -> int:
    from roadseg.engine.evaluate import evaluate_model, format_at_threshold, format_table

    check_outputs((a.save_probs, True, "--save-probs folder"), (a.out, True, "metrics folder (--out)"))  # before any work
    data = {"root": a.data, "dataset": a.dataset, **folder_values(a)}
    run = evaluate_model(default_checkpoint(a.checkpoint), split=a.split, data=data, out=a.out,
                         save_probs=a.save_probs, skip_bad=a.skip_bad, progress=tqdm_progress, **settings_kwargs(a))
    if run.rank:
        return 0
    if run.seen and not getattr(a, "quiet", False):  # -q: errors only
        print(f"note: {run.seen}", file=sys.stderr)
    for _name, reason in run.skipped:
        print(f"skipped: {reason}")
    print(format_table(run.metrics["results"]))
    if line := format_at_threshold(run.metrics):
        print(line)
    print(f"metrics: {run.path}" + (f" ({len(run.dataset)} frames, {len(run.skipped)} unreadable left out)"
                                    if run.skipped else ""))
    if not a.no_report:
        from roadseg.report import write_report

        print(f"report: {write_report(a.out, predictor=run.predictor, data=run.dataset)}")
    return 0


def cmd_predict(a) -> int:
    import torch

    from roadseg.data.io import expand_inputs
    from roadseg.engine import distributed as dist
    from roadseg.inference.pipeline import predict_images

    check_outputs((a.out, True, "output folder (--out)"))  # before the model (or its INT8 cache) is built
    ckpt = default_checkpoint(a.checkpoint)
    paths = expand_inputs(a.inputs)
    rank, world = dist.setup(torch.device("cpu") if a.device != "cuda" else torch.device("cuda"))
    try:  # under torchrun each rank takes every world-th frame; results are gathered on rank 0
        pred = make_predictor(a, ckpt)
        res = predict_images(pred, dist.shard(paths), a.out, probs=a.probs, skip_bad=a.skip_bad,
                             progress=tqdm_progress if rank == 0 else None)
        parts = dist.all_gather_objects(res)
    finally:
        dist.teardown()
    if rank:
        return 0
    written = [w for p in parts for w in p["written"]]
    skipped = [s for p in parts for s in p["skipped"]]
    for _path, reason in skipped:
        print(f"skipped: {reason}")
    print(f"{len(written)} frames -> {a.out} ({pred.backend} {pred.precision}{f', {world} processes' if world > 1 else ''}; "
          f"road where p >= {pred.threshold:.3g}: {pred.threshold_source})")
    return 1 if skipped and not written else 0


def cmd_video(a) -> int:
    from roadseg.inference.video import check_video_options, process_video

    check_video_options(a.out, a.smooth)  # a bad extension or --smooth fails before the model loads
    check_outputs((a.out, False, "video (--out)"), (a.summary, False, "summary (--summary)"))  # before the clip runs
    pred = make_predictor(a, default_checkpoint(a.checkpoint), spinning=False)  # encoding runs beside it
    s = process_video(pred, a.input, a.out, side_by_side=a.side_by_side, progress=tqdm_progress, smooth=a.smooth,
                      legend=not a.no_legend, realtime=a.realtime, fps=a.fps, stall_timeout=a.stall_timeout,
                      max_frames=a.max_frames or 0)
    print(f"{a.out}: {s.text()}; road where p >= {pred.threshold:.3g} ({pred.threshold_source})")
    if a.summary:
        from roadseg.data.io import atomic_write

        summary = json.dumps({**s.to_dict(), "backend": pred.backend, "precision": pred.precision}, indent=1)
        atomic_write(a.summary, lambda f: f.write(summary), text=True)
    return 0


def cmd_export(a) -> int:
    from roadseg.models.checkpoint import model_from_checkpoint
    from roadseg.optimize.runtime import export_onnx, op_counts, ort_session

    for path, opt in ((a.out, "--out"), (a.optimized, "--optimized"), (a.fp16, "--fp16")):
        if path and not Path(path).is_dir() and Path(path).suffix.lower() != ".onnx":
            raise DataError(f"{path}: {opt} writes an ONNX model; name it .onnx")
    check_outputs((a.out, False, "ONNX file (--out)"), (a.optimized, False, "optimized graph (--optimized)"),
                  (a.fp16, False, "fp16 copy (--fp16)"))
    from roadseg.models.checkpoint import ModelInfo, load_checkpoint

    ckpt = load_checkpoint(default_checkpoint(a.checkpoint))
    model, _ = model_from_checkpoint(ckpt, str(a.checkpoint))
    meta = {**ModelInfo.from_checkpoint(ckpt, str(a.checkpoint)).to_meta(), "checkpoint": str(a.checkpoint)}
    out = export_onnx(model, a.out, meta=meta)
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
    from roadseg.data.io import expand_inputs
    from roadseg.models.checkpoint import release

    check_outputs((a.out, False, "checkpoint (--out)"))
    calib = expand_inputs([a.calib]) if a.calib else None
    out = release(a.checkpoint, a.out, half=not a.fp32, calibration=calib, threshold=a.threshold)
    n = len(calib) if calib else "16 training"
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB ({'fp32' if a.fp32 else 'fp16'} weights, no training state, "
          f"{n} INT8 calibration frames)")
    return 0


def cmd_quantize(a) -> int:
    from roadseg.optimize.quantize import quantize_int8

    check_outputs((a.out, False, "INT8 model (--out)"))  # before calibration
    ops = tuple(a.ops.split(","))
    keep = tuple(k for k in a.keep_float.split(",") if k)
    out = quantize_int8(a.model, a.out, a.calib, method=a.method, count=a.frames, ops=ops, keep_float=keep,
                        reduce_range=False if a.full_range else None)
    print(f"{out}: INT8 (QDQ, per-channel, {a.method} calibration on {a.frames} frames, ops {','.join(ops)}), "
          f"{out.stat().st_size / 1e6:.1f} MB")
    return 0


def cmd_benchmark(a) -> int:
    from roadseg.benchmark import run

    check_outputs((getattr(a, "out", None), True, "results folder (--out)"))  # before the first timing
    print(run(a, say=lambda m: print(m, file=sys.stderr)))
    return 0


def cmd_report(a) -> int:
    from roadseg.report import read_inputs, write_report

    run_dir = Path(a.run_dir)
    metrics = read_inputs(run_dir)[0]  # a missing or corrupt metrics.json / video.json / gallery.json is named first
    recorded = metrics.get("data") if isinstance(metrics.get("data"), dict) else None
    data_given = a.data or a.dataset or a.road_value or a.ignore_value
    if data_given and not a.checkpoint:
        raise DataError("report: --data, --dataset, --road-value and --ignore-value choose the gallery's frames; "
                        "give --model too")
    if a.checkpoint and not (a.data or recorded):
        raise DataError(f"report: --model and --data go together ({run_dir / 'metrics.json'} does not record "
                        f"which frames eval scored)")
    check_outputs((run_dir / "report.html", False, "report"))
    data = ckpt = None
    if a.checkpoint:
        from roadseg.config import from_dict
        from roadseg.data import build_dataset
        from roadseg.data.datasets import validation_config
        from roadseg.models.checkpoint import load_checkpoint

        ckpt = default_checkpoint(a.checkpoint)
        rec_split = metrics.get("split")
        split = a.split or (rec_split if isinstance(rec_split, str) and " " not in rec_split else "val")
        if recorded:  # the frames eval scored, with their road / ignore values
            from roadseg.errors import ConfigError

            try:
                cfg = from_dict({"data": recorded}).data
            except ConfigError as exc:
                raise DataError(f"{run_dir / 'metrics.json'}: its 'data' record is not a data config ({exc}); "
                                f"give --data") from None
        else:  # the model's own data; its held-out frames for val, as eval scores them
            cfg = from_dict(load_checkpoint(ckpt)["config"]).data
            cfg = validation_config(cfg)[0] if split == "val" else cfg
        cfg.root = a.data or cfg.root
        cfg.dataset = a.dataset or cfg.dataset
        folder_values(a, cfg)
        data = build_dataset(cfg, split, check_sizes=False)  # only the gallery's frames are read (eval may have skipped some)
    print(f"report: {write_report(a.run_dir, checkpoint=ckpt, data=data)}")
    return 0


def cmd_demo(a) -> int:
    """The shipped model on the KITTI test frames, the dash-cam video and the validation frames; then the report."""
    from roadseg.demo import run_demo

    check_outputs((a.out, True, "output folder (--out)"))
    run_demo(a.data, a.out, default_checkpoint(a.checkpoint), progress=tqdm_progress, say=print, **settings_kwargs(a))
    return 0
