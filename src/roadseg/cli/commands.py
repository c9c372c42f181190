"""The subcommands: each turns parsed arguments into one library call, prints the outcome and returns the exit
code. Each command's arguments are declared beside it (NAME_arguments); COMMANDS lists them for the parser."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from roadseg.benchmark import add_arguments as add_benchmark_arguments
from roadseg.cli.common import (
    add_backend,
    add_model_arg,
    check_outputs,
    default_checkpoint,
    folder_values,
    make_predictor,
    positive,
    settings_kwargs,
    tqdm_progress,
)
from roadseg.errors import DataError, RoadsegError
from roadseg.models.weights import SOURCES


def weights_arguments(s) -> None:
    s.add_argument("action", choices=["fetch"])
    s.add_argument("source", choices=list(SOURCES))
    s.add_argument("--path", help="use this local file instead of downloading (still verified)")


def cmd_weights(a) -> int:
    from roadseg.models.weights import fetch

    path = fetch(a.source, a.path)
    print(f"{a.source}: verified and cached at {path}")
    return 0


def train_arguments(s) -> None:
    s.add_argument("--config", required=True, help="YAML config (configs/kitti-lite0.yaml, configs/kitti-fcn8s-vgg16-stage1.yaml)")
    s.add_argument("--resume", help="continue from a last.pt checkpoint")
    s.add_argument("--overwrite", action="store_true", help="start over in a run directory that already holds a run")
    s.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.epochs=5")


def cmd_train(a) -> int:
    from roadseg.config import load_config
    from roadseg.engine.train import fit

    cfg = load_config(a.config, a.overrides)
    run_dir = fit(cfg, resume=a.resume, progress=tqdm_progress, overwrite=a.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {run_dir}")
    return 0


def eval_arguments(s) -> None:
    add_model_arg(s)
    s.add_argument("--data", help="dataset root (default: the checkpoint's)")
    s.add_argument("--dataset", choices=["kitti", "camvid", "folder"], help="dataset layout (default: the checkpoint's)")
    s.add_argument("--road-value", metavar="ID|R,G,B", help="folder datasets: the mask value of road, a grey id or a "
                   "colour, e.g. 255,0,255 (default: the checkpoint's data.road_value)")
    s.add_argument("--ignore-value", metavar="ID|R,G,B", help="folder datasets: the mask value left out of the scores "
                   "(default: the checkpoint's data.ignore_value)")
    s.add_argument("--split", default="val", help="train | val | all (camvid: train | val)")
    s.add_argument("--save-probs", help="write 8-bit probability PNGs here (um_road_000000.png for KITTI frames, NAME_prob.png otherwise)")
    s.add_argument("--out", default="runs/eval", help="folder for metrics.json")
    s.add_argument("--no-report", action="store_true", help="skip the HTML report (report.html next to metrics.json)")
    s.add_argument("--bev", action=argparse.BooleanOptionalAction, default=None,
                   help="also the bird's-eye-view measures KITTI's server scores (default: when the frames have "
                   "calibration files, KITTI's training/calib/NAME.txt); --no-bev: perspective only")
    s.add_argument("--skip-bad", action="store_true", help="leave out unreadable frames or masks (listed, and in "
                   "metrics.json) instead of stopping")
    add_backend(s, default_auto=True)


def cmd_eval(a) -> int:
    from roadseg.engine.evaluate import evaluate_model, format_at_threshold, format_bev, format_distance, format_table

    check_outputs((a.save_probs, True, "--save-probs folder"), (a.out, True, "metrics folder (--out)"))  # before any work
    data = {"root": a.data, "dataset": a.dataset, **folder_values(a)}
    run = evaluate_model(default_checkpoint(a.checkpoint), split=a.split, data=data, out=a.out,
                         save_probs=a.save_probs, skip_bad=a.skip_bad, progress=tqdm_progress, bev=a.bev,
                         **settings_kwargs(a))
    if run.rank:
        return 0
    if run.seen and not getattr(a, "quiet", False):  # -q: errors only
        print(f"note: {run.seen}", file=sys.stderr)
    for _name, reason in run.skipped:
        print(f"skipped: {reason}")
    print(format_table(run.metrics["results"]))
    if line := format_at_threshold(run.metrics):
        print(line)
    if table := format_bev(run.metrics):
        print(table)
        if line := format_at_threshold(run.metrics["bev"] | {"threshold_used": run.metrics["threshold_used"]}):
            print(line)
        if table := format_distance(run.metrics):
            print(table)
    print(f"metrics: {run.path}" + (f" ({len(run.dataset)} frames, {len(run.skipped)} unreadable left out)"
                                    if run.skipped else ""))
    if not a.no_report:
        from roadseg.report import write_report

        print(f"report: {write_report(a.out, predictor=run.predictor, data=run.dataset)}")
    return 0


def fleet_arguments(s, item: str, units: str, exts: str) -> None:
    """--manifest, --ray and --ray-actors: a job over an archive, on a Ray cluster (roadseg[ray])."""
    s.add_argument("--manifest", metavar="LIST|DIR", help=f"also every {item} a manifest names: a text file with "
                   f"one path per line (# comments; relative paths from the file's folder), or a folder tree (every "
                   f"{exts} file in it)")
    s.add_argument("--ray", metavar="auto|ADDRESS", help=f"run on Ray (pip install 'roadseg[ray]'): auto starts one on "
                   f"this machine (or joins the one `ray start` made), ADDRESS joins a cluster (HOST:6379, "
                   f"ray://HOST:10001); one model per actor, {units} as units of work; a rerun skips inputs whose "
                   f"outputs are complete, failed inputs go to OUT/failures.tsv and the rest complete")
    s.add_argument("--ray-actors", type=positive(int), metavar="N",
                   help="Ray actors, one model each (default: one per CPU of the cluster, one per GPU with --device cuda)")


def predict_arguments(s) -> None:
    s.add_argument("inputs", nargs="*", help="image files, folders or globs")
    add_model_arg(s)
    out = s.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="output folder")
    out.add_argument("--kitti-submission", metavar="DIR", help="write what KITTI's road server takes instead: one "
                     "bird's-eye-view 8-bit probability map per frame (um_road_000000.png, ...), from each frame's "
                     "calibration file (testing/calib/NAME.txt)")
    s.add_argument("--probs", action="store_true", help="also write 8-bit probability PNGs (um_road_000000.png for KITTI frames, NAME_prob.png otherwise)")
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable images (listed) instead of stopping "
                   "(with --ray they always are, in OUT/failures.tsv)")
    fleet_arguments(s, "image", "batches of frames", "image")
    add_backend(s, default_auto=True)


def cmd_predict(a) -> int:
    import torch

    from roadseg.engine import distributed as dist
    from roadseg.inference.fleet import image_inputs
    from roadseg.inference.pipeline import predict_images, submission_frames

    out = a.out or a.kitti_submission
    check_outputs((out, True, "output folder (--out)" if a.out else "submission folder (--kitti-submission)"))
    if not a.inputs and not a.manifest:
        raise RoadsegError("predict: give image files, folders or globs, or --manifest")
    ckpt = default_checkpoint(a.checkpoint)  # all checked before the model (or its INT8 cache) is built
    paths, uncalibrated = image_inputs(a.inputs, a.manifest), []
    if a.kitti_submission:
        paths, uncalibrated = submission_frames(paths, a.skip_bad or bool(a.ray))
    if a.ray:
        return _predict_ray(a, ckpt, paths, uncalibrated, out)
    rank, world = dist.setup(torch.device("cpu") if a.device != "cuda" else torch.device("cuda"))
    try:  # under torchrun each rank takes every world-th frame; results are gathered on rank 0
        pred = make_predictor(a, ckpt)
        res = predict_images(pred, dist.shard(paths), out, probs=a.probs, skip_bad=a.skip_bad,
                             progress=tqdm_progress if rank == 0 else None, submission=bool(a.kitti_submission))
        parts = dist.all_gather_objects(res)
    finally:
        dist.teardown()
    if rank:
        return 0
    written = [w for p in parts for w in p["written"]]
    skipped = uncalibrated + [s for p in parts for s in p["skipped"]]
    for _path, reason in skipped:
        print(f"skipped: {reason}")
    what = "bird's-eye-view probability maps" if a.kitti_submission else "frames"
    print(f"{len(written)} {what} -> {out} ({pred.settings.label()}{f', {world} processes' if world > 1 else ''}; "
          f"road where p >= {pred.threshold:.3g}: {pred.threshold_source})")
    return 1 if skipped and not written else 0


def _fleet_report(run, pred, out, what: str) -> None:
    """What a Ray job did, on stdout: each failure, then one line of counts."""
    for path, error in run.failed:
        print(f"failed: {error}" if Path(path).name in error else f"failed: {path}: {error}")
    before = f", {len(run.done_before)} complete already (skipped)" if run.done_before else ""
    actors = f"{run.actors} Ray actor{'s' if run.actors != 1 else ''}"
    print(f"{len(run.written)} {what} -> {out}{before}, {len(run.failed)} failed (listed in {run.failures_file}); "
          f"{pred.settings.label()}, {actors}; road where p >= {pred.threshold:.3g} "
          f"({pred.threshold_source})")


def _predict_ray(a, ckpt: str, paths, uncalibrated, out) -> int:
    """cmd_predict on a Ray cluster (inference.fleet): settings resolved here once, then one model per actor."""
    from roadseg.inference.fleet import RaySession, predict_fleet

    session = RaySession(a.ray)
    try:
        pred = make_predictor(a, ckpt, threads=1)  # one thread per actor; builds the ONNX cache before the actors
        run = predict_fleet(session, ckpt, pred.settings, paths, out, probs=a.probs, submission=bool(a.kitti_submission),
                            actors=a.ray_actors, progress=tqdm_progress)
    finally:
        session.close()
    for _path, reason in uncalibrated:
        print(f"skipped: {reason}")
    _fleet_report(run, pred, out, "bird's-eye-view probability maps" if a.kitti_submission else "frames")
    return 1 if (run.failed or uncalibrated) and not (run.written or run.done_before) else 0


def video_arguments(s) -> None:
    s.add_argument("input", nargs="?", help="a video file, a folder of images (played in name order), or a live "
                   "stream: rtsp://, rtmp://, tcp://, udp://, http(s)://, srt:// URLs or a V4L2 camera /dev/videoN")
    s.add_argument("--out", required=True, help="output video: .mp4, .mkv or .avi (the extension picks the container); "
                   "with --ray, a folder that gets NAME.mp4 per clip")
    add_model_arg(s)
    s.add_argument("--side-by-side", action="store_true", help="original and overlay side by side")
    s.add_argument("--smooth", type=float, default=None, metavar="S",
                   help="steadier masks: moving average of the road probabilities, S in [0, 1) the weight of the past "
                        "frames (0, the default: each frame's own mask; 0.5 halves the flicker and trails by about S/(1-S) frames)")
    s.add_argument("--no-legend", action="store_true", help="no legend box on the overlay")
    s.add_argument("--summary", help="write the timing summary as JSON here")
    s.add_argument("--realtime", action="store_true", help="live streams: run only the newest frame each time the model "
                   "is free, dropping the rest (the summary counts them, with the latency from arrival to mask)")
    s.add_argument("--fps", type=positive(float), help="the frame rate of an image folder (default 10)")
    from roadseg.inference.sources import STALL_TIMEOUT_S

    s.add_argument("--stall-timeout", type=positive(float), default=STALL_TIMEOUT_S,
                   help="live streams: seconds without data after which the stream has ended")
    s.add_argument("--max-frames", type=positive(int), help="stop after this many frames (of each clip)")
    fleet_arguments(s, "clip", "clips", "video (.mp4, .mkv, .avi, .mov, .webm, .m4v, .ts)")
    add_backend(s, default_auto=True)


def cmd_video(a) -> int:
    from roadseg.inference.sources import check_source
    from roadseg.inference.video import check_video_options, process_video

    if a.ray or a.manifest:
        return _video_ray(a)
    if not a.input:
        raise RoadsegError("video: give an input (a video file, an image folder or a stream), or --manifest with --ray")
    check_video_options(a.out, a.smooth)  # a bad extension, --smooth or a missing input fail before the model loads
    check_source(a.input)
    check_outputs((a.out, False, "video (--out)"), (a.summary, False, "summary (--summary)"))  # before the clip runs
    pred = make_predictor(a, default_checkpoint(a.checkpoint), spinning=False)  # encoding runs beside it
    s = process_video(pred, a.input, a.out, side_by_side=a.side_by_side, progress=tqdm_progress, smooth=a.smooth,
                      legend=not a.no_legend, realtime=a.realtime, fps=a.fps, stall_timeout=a.stall_timeout,
                      max_frames=a.max_frames or 0)
    print(f"{a.out}: {s.text()}; {pred.settings.label()}; road where p >= {pred.threshold:.3g} ({pred.threshold_source})")
    if a.summary:
        _write_json(a.summary, {**s.to_dict(), **pred.settings.record()})
    return 0


def _write_json(path, value) -> None:
    from roadseg.data.io import atomic_write

    text = json.dumps(value, indent=1)
    atomic_write(path, lambda f: f.write(text), text=True)


def _video_ray(a) -> int:
    """cmd_video over clips on a Ray cluster (inference.fleet): one task per clip, OUT/NAME.mp4 each; --summary
    gets the list of the clips' summaries."""
    from roadseg.inference.fleet import CLIP_EXTS, RaySession, manifest_entries, video_fleet
    from roadseg.inference.sources import check_source, is_live
    from roadseg.inference.video import check_video_options

    if not a.ray:
        raise RoadsegError("video --manifest runs the clips on Ray: add --ray auto (this machine) or --ray ADDRESS")
    if a.realtime:
        raise RoadsegError("video --ray: --realtime is for one live stream, not for a job over clips")
    clips = ([a.input] if a.input else []) + (manifest_entries(a.manifest, CLIP_EXTS) if a.manifest else [])
    if not clips:
        raise RoadsegError("video --ray: give a clip or --manifest")
    _, smooth = check_video_options("clip.mp4", a.smooth)
    for clip in clips:
        if is_live(clip):
            raise RoadsegError(f"{clip}: a live stream runs without --ray (it has no end to wait for)")
        check_source(clip)
    check_outputs((a.out, True, "output folder (--out)"), (a.summary, False, "summary (--summary)"))
    ckpt = default_checkpoint(a.checkpoint)
    session = RaySession(a.ray)
    try:
        pred = make_predictor(a, ckpt, spinning=False, threads=1)  # encoding runs beside it
        run = video_fleet(session, ckpt, pred.settings, clips, a.out, actors=a.ray_actors, progress=tqdm_progress,
                          side_by_side=a.side_by_side, smooth=smooth, legend=not a.no_legend, fps=a.fps,
                          max_frames=a.max_frames or 0)
    finally:
        session.close()
    _fleet_report(run, pred, a.out, "clip" if len(run.written) == 1 else "clips")
    if a.summary:
        _write_json(a.summary, [{**s, **pred.settings.record()} for s in run.summaries])
    return 1 if run.failed and not (run.written or run.done_before) else 0


def export_arguments(s) -> None:
    s.add_argument("checkpoint", metavar="NAME|CKPT", help="a shipped model's name or a checkpoint path")
    s.add_argument("--out", required=True, help="output .onnx")
    s.add_argument("--optimized", help="also save ONNX Runtime's fused/optimized graph here")
    s.add_argument("--fp16", help="also save an fp16 copy here (for GPUs)")


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
        ort_session(out, save_optimized=a.optimized)  # written atomically: a planted link is replaced
        c = op_counts(a.optimized)
        print(f"{a.optimized}: ONNX Runtime graph optimizations (fusion, constant folding) -> nodes {sum(c.values())} {c}")
    if a.fp16:
        from roadseg.optimize.runtime import to_fp16

        print(f"{to_fp16(out, a.fp16)}: fp16 copy for GPUs")
    return 0


def release_arguments(s) -> None:
    s.add_argument("checkpoint")
    s.add_argument("--out", required=True, help="the shippable checkpoint to write")
    s.add_argument("--fp32", action="store_true", help="keep fp32 weights")
    s.add_argument("--threshold", type=float, help="operating threshold stored in the file (default: the checkpoint's "
                   "last validation MaxF threshold, if any)")
    s.add_argument("--calib", help="images (folder or glob) stored in the file for INT8 calibration "
                   "(default: 16 of the checkpoint's training frames)")
    s.add_argument("--top-crop", type=float, metavar="FRACTION", help="top fraction of each frame's rows the file's "
                   "users skip (probability 0 there; default: what training cut, data.top_crop)")


def cmd_release(a) -> int:
    from roadseg.data.io import expand_inputs
    from roadseg.models.checkpoint import release

    check_outputs((a.out, False, "checkpoint (--out)"))
    calib = expand_inputs([a.calib]) if a.calib else None
    out = release(a.checkpoint, a.out, half=not a.fp32, calibration=calib, threshold=a.threshold, top_crop=a.top_crop)
    n = len(calib) if calib else "16 training"
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB ({'fp32' if a.fp32 else 'fp16'} weights, no training state, "
          f"{n} INT8 calibration frames)")
    return 0


def quantize_arguments(s) -> None:
    s.add_argument("model", help="the fp32 .onnx from roadseg export")
    s.add_argument("--calib", required=True, help="folder or glob of real frames for calibration")
    s.add_argument("--out", required=True, help="output .onnx (never the input)")
    s.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"], help="calibration method")
    s.add_argument("--frames", type=int, default=16, help="number of calibration frames")
    s.add_argument("--ops", default="Conv,ConvTranspose,Clip", help="op types to quantize (comma-separated)")
    s.add_argument("--full-range", action="store_true",
                   help="8-bit weights even on CPUs without VNNI (default there: 7-bit, see README)")
    s.add_argument("--keep-float", default="", help="node-name parts to leave in float, e.g. fc6,fc7,score")


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


def benchmark_arguments(s) -> None:
    add_benchmark_arguments(s)


def cmd_benchmark(a) -> int:
    from roadseg.benchmark import run

    check_outputs((getattr(a, "out", None), True, "results folder (--out)"))  # before the first timing
    print(run(a, say=lambda m: print(m, file=sys.stderr)))
    return 0


def report_arguments(s) -> None:
    s.add_argument("run_dir")
    s.add_argument("--model", "--checkpoint", dest="checkpoint", metavar="NAME|CKPT",
                   help="with --data: render the gallery of error maps with this model")
    s.add_argument("--data", help="dataset root, for the gallery of frames (default: the frames eval scored, as "
                   "metrics.json records them)")
    s.add_argument("--dataset", choices=["kitti", "camvid", "folder"], help="dataset layout (default: as recorded)")
    s.add_argument("--road-value", metavar="ID|R,G,B", help="folder datasets: the mask value of road (default: as "
                   "recorded, else the checkpoint's data.road_value)")
    s.add_argument("--ignore-value", metavar="ID|R,G,B", help="folder datasets: the mask value left out of the scores")
    s.add_argument("--split", help="the split the gallery's frames come from (default: the one eval scored)")


def cmd_report(a) -> int:
    from roadseg.report import read_inputs, write_report

    run_dir = Path(a.run_dir)
    # a missing or corrupt metrics.json / video.json / gallery.json (unless rendered again) is named first
    metrics = read_inputs(run_dir, gallery=not a.checkpoint)[0]
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


def demo_arguments(s) -> None:
    s.add_argument("--data", help="folder holding kitti_road/ (KITTI road) and video/solidWhiteRight.mp4 (default: "
                   "$ROADSEG_DATA, else ../shared/data)")
    s.add_argument("--out", default="runs/demo", help="output folder (report.html, overlays, video)")
    add_model_arg(s)
    add_backend(s, default_auto=True)


def cmd_demo(a) -> int:
    """The shipped model on the KITTI test frames, the dash-cam video and the validation frames; then the report."""
    from roadseg.demo import run_demo

    check_outputs((a.out, True, "output folder (--out)"))
    run_demo(a.data, a.out, default_checkpoint(a.checkpoint), progress=tqdm_progress, say=print, **settings_kwargs(a))
    return 0


# name, help, its arguments, the command: what build_parser makes of each
COMMANDS = [
    ("weights", "fetch and verify pretrained encoder weights", weights_arguments, cmd_weights),
    ("train", "train an FCN (also under torchrun for DDP)", train_arguments, cmd_train),
    ("eval", "KITTI devkit measures (MaxF, AP, PRE, REC, FPR, FNR, IoU)", eval_arguments, cmd_eval),
    ("predict", "road overlays, masks and probability maps for images", predict_arguments, cmd_predict),
    ("video", "annotate a dash-cam video, an image sequence or a live stream (H.264 out)", video_arguments, cmd_video),
    ("export", "export a checkpoint to ONNX (+ optimized graph, fp16 copy)", export_arguments, cmd_export),
    ("release", "a shippable checkpoint: fp16 weights, config, metrics; no optimizer state", release_arguments, cmd_release),
    ("quantize", "INT8 static quantization of an exported model (ONNX Runtime, QDQ)", quantize_arguments, cmd_quantize),
    ("benchmark", "speed and accuracy of each model x backend x precision (JSON + markdown table)", benchmark_arguments, cmd_benchmark),
    ("report", "write report.html for an eval/demo folder", report_arguments, cmd_report),
    ("demo", "the shipped model on KITTI test frames, the dash-cam video, and validation", demo_arguments, cmd_demo),
]
