"""The command line: the only place that parses argv, prints, or exits. common.py holds what the subcommands share,
commands.py the subcommands themselves; this module declares every argument and runs one command.

    roadseg weights fetch {hed,keras,torchvision,efficientnet-lite0,efficientnet-lite2} [--path FILE]
    roadseg train --config configs/kitti_lite0.yaml [key=value ...] [--resume last.pt]
    roadseg eval [--model NAME|CKPT] [--data DIR] [--split val] [--save-probs DIR] [--skip-bad]
    roadseg predict INPUT... --out DIR [--model NAME|CKPT] [--probs] [--skip-bad]
    roadseg video IN.mp4 --out OUT.mp4 [--model NAME|CKPT] [--side-by-side]
    roadseg export CKPT --out model.onnx
    roadseg release RUN/last.pt --out model.pt [--calib FRAMES]
    roadseg quantize model.onnx --calib DIR --out model_int8.onnx [--method minmax|entropy|percentile]
    roadseg benchmark [--model NAME|CKPT ...] [--data DIR] [--quick]
    roadseg report RUN_DIR
    roadseg demo [--data ../shared/data] [--out runs/demo]
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys

from roadseg import __version__
from roadseg.benchmark import add_arguments as add_benchmark_arguments
from roadseg.cli.commands import (
    cmd_benchmark,
    cmd_demo,
    cmd_eval,
    cmd_export,
    cmd_predict,
    cmd_quantize,
    cmd_release,
    cmd_report,
    cmd_train,
    cmd_video,
    cmd_weights,
)
from roadseg.cli.common import ArgumentParser, Signals, UsageError, add_backend, add_model_arg, exit_code, positive
from roadseg.models.weights import SOURCES

__all__ = ["ArgumentParser", "UsageError", "build_parser", "main"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="roadseg", description="Drivable-road segmentation (FCNs on EfficientNet-Lite0 or VGG16) for dash-cam images and video.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("-q", "--quiet", action="store_true", help="log errors only (training logs its epochs otherwise)")
    p.add_argument("--version", action="version", version=f"roadseg {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)

    s = sub.add_parser("weights", help="fetch and verify pretrained encoder weights")
    s.add_argument("action", choices=["fetch"])
    s.add_argument("source", choices=list(SOURCES))
    s.add_argument("--path", help="use this local file instead of downloading (still verified)")
    s.set_defaults(func=cmd_weights)

    s = sub.add_parser("train", help="train an FCN (also under torchrun for DDP)")
    s.add_argument("--config", required=True, help="YAML config (configs/kitti_lite0.yaml, configs/kitti_fcn8s.yaml)")
    s.add_argument("--resume", help="continue from a last.pt checkpoint")
    s.add_argument("--overwrite", action="store_true", help="start over in a run directory that already holds a run")
    s.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.epochs=5")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="KITTI devkit measures (MaxF, AP, PRE, REC, FPR, FNR, IoU)")
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
    s.add_argument("--skip-bad", action="store_true", help="leave out unreadable frames or masks (listed, and in "
                   "metrics.json) instead of stopping")
    add_backend(s, default_auto=True)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("predict", help="road overlays, masks and probability maps for images")
    s.add_argument("inputs", nargs="+", help="image files, folders or globs")
    add_model_arg(s)
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--probs", action="store_true", help="also write 8-bit probability PNGs (um_road_000000.png for KITTI frames, NAME_prob.png otherwise)")
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable images (listed) instead of stopping")
    add_backend(s, default_auto=True)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("video", help="annotate a dash-cam video, an image sequence or a live stream (H.264 out)")
    s.add_argument("input", help="a video file, a folder of images (played in name order), or a live stream: "
                   "rtsp://, rtmp://, tcp://, udp://, http(s)://, srt:// URLs or a V4L2 camera /dev/videoN")
    s.add_argument("--out", required=True, help="output video: .mp4, .mkv or .avi (the extension picks the container)")
    add_model_arg(s)
    s.add_argument("--side-by-side", action="store_true", help="original and overlay side by side")
    s.add_argument("--smooth", type=float, default=None, metavar="S",
                   help="steadier masks: moving average of the road probabilities, S in [0, 1) the weight of the past "
                        "frames (0, the default: each frame's own mask; 0.5 halves the flicker and trails by about S/(1-S) frames)")
    s.add_argument("--no-legend", action="store_true", help="no legend box on the overlay")
    s.add_argument("--summary", help="write the timing summary as JSON here")
    s.add_argument("--realtime", action="store_true", help="live streams: drop frames when the model falls behind "
                   "(reports dropped frames and the latency from decoding to mask)")
    s.add_argument("--fps", type=positive(float), help="the frame rate of an image folder (default 10)")
    s.add_argument("--stall-timeout", type=positive(float), default=10.0,
                   help="live streams: seconds without data after which the stream has ended")
    s.add_argument("--max-frames", type=positive(int), help="stop after this many frames")
    add_backend(s, default_auto=True)
    s.set_defaults(func=cmd_video)

    s = sub.add_parser("export", help="export a checkpoint to ONNX (+ optimized graph, fp16 copy)")
    s.add_argument("checkpoint", metavar="NAME|CKPT", help="a shipped model's name or a checkpoint path")
    s.add_argument("--out", required=True, help="output .onnx")
    s.add_argument("--optimized", help="also save ONNX Runtime's fused/optimized graph here")
    s.add_argument("--fp16", help="also save an fp16 copy here (for GPUs)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("release", help="a shippable checkpoint: fp16 weights, config, metrics; no optimizer state")
    s.add_argument("checkpoint")
    s.add_argument("--out", required=True, help="the shippable checkpoint to write")
    s.add_argument("--fp32", action="store_true", help="keep fp32 weights")
    s.add_argument("--threshold", type=float, help="operating threshold stored in the file (default: the checkpoint's "
                   "last validation MaxF threshold, if any)")
    s.add_argument("--calib", help="images (folder or glob) stored in the file for INT8 calibration "
                   "(default: 16 of the checkpoint's training frames)")
    s.set_defaults(func=cmd_release)

    s = sub.add_parser("quantize", help="INT8 static quantization of an exported model (ONNX Runtime, QDQ)")
    s.add_argument("model", help="the fp32 .onnx from roadseg export")
    s.add_argument("--calib", required=True, help="folder or glob of real frames for calibration")
    s.add_argument("--out", required=True, help="output .onnx (never the input)")
    s.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"], help="calibration method")
    s.add_argument("--frames", type=int, default=16, help="number of calibration frames")
    s.add_argument("--ops", default="Conv,ConvTranspose,Clip", help="op types to quantize (comma-separated)")
    s.add_argument("--full-range", action="store_true",
                   help="8-bit weights even on CPUs without VNNI (default there: 7-bit, see README)")
    s.add_argument("--keep-float", default="", help="node-name parts to leave in float, e.g. fc6,fc7,score")
    s.set_defaults(func=cmd_quantize)

    s = sub.add_parser("benchmark", help="speed and accuracy of each model x backend x precision (JSON + markdown table)")
    add_benchmark_arguments(s)
    s.set_defaults(func=cmd_benchmark)

    s = sub.add_parser("report", help="write report.html for an eval/demo folder")
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
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("demo", help="the shipped model on KITTI test frames, the dash-cam video, and validation")
    s.add_argument("--data", default="../shared/data", help="folder holding kitti_road/ and video/")
    s.add_argument("--out", default="runs/demo", help="output folder (report.html, overlays, video)")
    add_model_arg(s)
    add_backend(s, default_auto=True)
    s.set_defaults(func=cmd_demo)
    for sp in sub.choices.values():  # the same two flags after the subcommand (`roadseg eval -v`); SUPPRESS keeps
        # the subparser from resetting a flag given before the subcommand
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress details")
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="log errors only")
    return p


def _commands(parser: ArgumentParser) -> list[str]:
    return [c for a in parser._subparsers._group_actions for c in a.choices]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
    except UsageError as exc:  # one line, pointing at the help of the command given
        words = sys.argv[1:] if argv is None else argv
        cmd = next((w for w in words if w in _commands(parser)), None)
        msg = str(exc)
        if cmd and msg.startswith("roadseg: "):
            msg = f"roadseg {cmd}: " + msg[len("roadseg: "):]
        elif not cmd and any(not w.startswith("-") for w in words):
            word = next(w for w in words if not w.startswith("-"))
            close = difflib.get_close_matches(word, _commands(parser), n=1)
            msg = f"roadseg: unknown command '{word}'" + (f" (did you mean '{close[0]}'?)" if close else "")
        print(f"error: {msg} (see roadseg {cmd + ' ' if cmd else ''}--help)", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if a.verbose and a.quiet:
        print("error: roadseg: -v/--verbose and -q/--quiet exclude each other", file=sys.stderr)
        return 2
    level = logging.ERROR if a.quiet else logging.INFO if a.verbose or a.command == "train" else logging.WARNING
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if not a.command:
        print(f"error: roadseg: a command is required: {', '.join(_commands(parser))} (see roadseg --help)",
              file=sys.stderr)
        return 2
    signals = Signals()
    try:
        with signals.installed():  # SIGTERM cleans up like Ctrl-C (no temporary files left behind)
            return a.func(a)
    except (Exception, KeyboardInterrupt) as exc:  # one line and an exit code (cli/common.exit_code)
        return exit_code(exc, signals)
