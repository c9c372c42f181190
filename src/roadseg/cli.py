"""The command line: the only place that parses argv, prints, or exits.

    roadseg weights fetch {hed,keras,torchvision,efficientnet-lite0,efficientnet-lite2} [--path FILE]
    roadseg train --config configs/kitti_fcn8s.yaml [key=value ...] [--resume last.pt]
    roadseg eval [--model NAME|CKPT] --data DIR [--split val] [--save-probs DIR]
    roadseg predict INPUT... [--model NAME|CKPT] --out DIR [--probs] [--skip-bad]
    roadseg video IN.mp4 --out OUT.mp4 [--model NAME|CKPT] [--side-by-side]
    roadseg export CKPT --out model.onnx
    roadseg optimize model.onnx --calib DIR [--method minmax|entropy|percentile]
    roadseg benchmark [--model NAME|CKPT ...] --data DIR
    roadseg report RUN_DIR
    roadseg demo [--data ../shared/data] [--out runs/demo]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from roadseg.errors import RoadsegError
from roadseg.models.weights import SOURCES


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() returns 2 with a one-line message."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


class UsageError(Exception):
    pass


def tqdm_progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False, dynamic_ncols=True)


def _default_checkpoint(value: str | None) -> str:
    """--model NAME|PATH (None: the default shipped model) -> the checkpoint path."""
    from roadseg.models.shipped import locate

    return str(locate(value))


def add_model_arg(s, help_extra: str = "") -> None:
    from roadseg.models.shipped import DEFAULT, SHIPPED

    s.add_argument("--model", "--checkpoint", dest="checkpoint", metavar="NAME|CKPT",
                   help=f"a shipped model ({', '.join(SHIPPED)}; default {DEFAULT}) or a checkpoint file{help_extra}")


# ------------------------------------------------------------------ subcommands

def cmd_weights(a) -> int:
    from roadseg.models.weights import fetch

    path = fetch(a.source, a.path)
    print(f"{a.source}: verified and cached at {path}")
    return 0


def cmd_train(a) -> int:
    from roadseg.config import load_config
    from roadseg.engine.train import fit

    cfg = load_config(a.config, a.overrides)
    run_dir = fit(cfg, resume=a.resume, progress=tqdm_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {run_dir}")
    return 0


def cmd_eval(a) -> int:
    from roadseg.config import from_dict
    from roadseg.data import build_dataset
    from roadseg.data.datasets import SEEN_NOTE, validation_config
    from roadseg.engine import distributed as dist
    from roadseg.engine.checkpoint import load_checkpoint
    from roadseg.engine.evaluate import evaluate, format_table, write_metrics
    ckpt_path = _default_checkpoint(a.checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    data_cfg, seen = from_dict(ckpt["config"]).data, False
    if a.split == "val":
        data_cfg, seen = validation_config(data_cfg)
        if seen:
            print(f"note: {SEEN_NOTE}", file=sys.stderr)
    if a.data:
        data_cfg.root = a.data
    if a.dataset:
        data_cfg.dataset = a.dataset
    ds = build_dataset(data_cfg, a.split)
    import torch

    from roadseg.cli_commands import make_predictor

    pred = make_predictor(a, ckpt_path)

    rank, _ = dist.setup(torch.device("cpu") if a.device != "cuda" else torch.device("cuda"))
    try:
        ev = evaluate(pred, ds, save_probs=a.save_probs, task=data_cfg.task, progress=tqdm_progress if rank == 0 else None)
        if rank == 0:
            out = Path(a.out)
            out.mkdir(parents=True, exist_ok=True)
            res = write_metrics(ev, out / "metrics.json", {"checkpoint": str(ckpt_path), "split": a.split,
                                                            "scale": pred.scale, "backend": a.backend,
                                                            "precision": a.precision, "frames": len(ds),
                                                            "seen_in_training": seen})
            print(format_table(res["results"]))
            print(f"metrics: {out / 'metrics.json'}")
            if not a.no_report:
                from roadseg.report import write_report

                print(f"report: {write_report(out, predictor=pred, data=ds)}")
    finally:
        dist.teardown()
    return 0


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="roadseg", description="Drivable-road segmentation (FCNs on EfficientNet-Lite0 or VGG16) for dash-cam images and video.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)

    s = sub.add_parser("weights", help="fetch and verify pretrained encoder weights")
    s.add_argument("action", choices=["fetch"])
    s.add_argument("source", choices=list(SOURCES))
    s.add_argument("--path", help="use this local file instead of downloading (still verified)")
    s.set_defaults(func=cmd_weights)

    s = sub.add_parser("train", help="train an FCN (also under torchrun for DDP)")
    s.add_argument("--config", required=True, help="YAML config (configs/kitti_lite0.yaml, configs/kitti_fcn8s.yaml)")
    s.add_argument("--resume", help="continue from a last.pt checkpoint")
    s.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.epochs=5")
    s.set_defaults(func=cmd_train)

    def add_backend(s):
        s.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
        s.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "int8", "compiled"])
        s.add_argument("--onnx", help="the .onnx file for --backend onnxruntime")
        s.add_argument("--scale", type=float, help="network input scale (default: the checkpoint's)")
        s.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
        s.add_argument("--tta", action="store_true",
                       help="test-time augmentation: average with the mirrored frame (about 2x the time)")

    s = sub.add_parser("eval", help="KITTI devkit measures (MaxF, AP, PRE, REC, FPR, FNR, IoU)")
    add_model_arg(s)
    s.add_argument("--data", help="dataset root (default: the checkpoint's)")
    s.add_argument("--dataset", choices=["kitti", "camvid", "folder"])
    s.add_argument("--split", default="val", help="train | val | all (camvid: train | val)")
    s.add_argument("--save-probs", help="write 8-bit probability PNGs in KITTI naming here")
    s.add_argument("--out", default="runs/eval", help="folder for metrics.json")
    s.add_argument("--no-report", action="store_true", help="skip the HTML report (report.html next to metrics.json)")
    add_backend(s)
    s.set_defaults(func=cmd_eval)

    _add_inference_commands(sub, add_backend)
    return p


def _add_inference_commands(sub, add_backend) -> None:
    """predict / video / export / release / quantize / benchmark / report / demo (in cli_commands.py)."""
    from roadseg import cli_commands

    cli_commands.register(sub, add_backend)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}\n(see roadseg --help)", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO if a.verbose or a.command == "train" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if not a.command:
        parser.print_usage(sys.stderr)
        print("error: a command is required", file=sys.stderr)
        return 2
    try:
        return a.func(a)
    except RoadsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
