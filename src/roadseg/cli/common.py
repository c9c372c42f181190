"""What the subcommands share: the raising ArgumentParser, progress bars, --model and backend/precision arguments,
the default-checkpoint lookup, and the Predictor those arguments describe."""

from __future__ import annotations

import argparse
import sys

BACKENDS = ["torch", "onnxruntime"]
PRECISIONS = ["fp32", "bf16", "fp16", "int8", "compiled"]


class UsageError(Exception):
    pass


class _DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it has none or the help already names it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and "default" not in text and action.option_strings
                and not isinstance(action.default, list)):
            text += " (default: %(default)s)"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() returns 2 with a one-line message; every --help shows
    the defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def tqdm_progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False, dynamic_ncols=True)


def default_checkpoint(value: str | None) -> str:
    """--model NAME|PATH (None: the default shipped model) -> the checkpoint path."""
    from roadseg.models.shipped import locate

    return str(locate(value))


def add_model_arg(s, help_extra: str = "") -> None:
    from roadseg.models.shipped import DEFAULT, SHIPPED

    s.add_argument("--model", "--checkpoint", dest="checkpoint", metavar="NAME|CKPT",
                   help=f"a shipped model ({', '.join(SHIPPED)}; default {DEFAULT}) or a checkpoint file{help_extra}")


def add_backend(s, default_auto: bool) -> None:
    """--backend, --precision, --onnx, --scale, --device, --tta. default_auto: backend and precision default to
    'auto' (the fastest path within the accuracy budget, see make_predictor); otherwise to torch fp32."""
    if default_auto:
        s.add_argument("--backend", default="auto", choices=["auto", *BACKENDS],
                       help="auto (default) = the fastest path within the accuracy budget: onnxruntime int8")
        s.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS],
                       help="auto (default): int8 for backend auto, fp32 otherwise")
    else:
        s.add_argument("--backend", default="torch", choices=BACKENDS)
        s.add_argument("--precision", default="fp32", choices=PRECISIONS)
    s.add_argument("--onnx", help="the .onnx file for --backend onnxruntime")
    s.add_argument("--scale", type=positive(float), help="network input scale, for every frame (default: see --size)")
    s.add_argument("--threshold", type=float, help="road where probability >= this (default: the model's validation "
                   "operating point, stored in the file; 0.5 for files without one)")
    s.add_argument("--size", type=_size, default="auto",
                   help="network input height in pixels, the width following the frame (default auto: frames within "
                        "15%% of the height the model was trained on run at its stored scale, others are resized to "
                        "that height, e.g. 375 for the KITTI models)")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where the network runs")
    s.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average with the mirrored frame (about 2x the time)")


def positive(kind):
    """An argparse type: a number > 0 (`--batch-size 0`, `--scale -1` are usage errors, not a silent no-op)."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _size(text: str):
    if text == "auto":
        return text
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a height in pixels or 'auto', got {text!r}") from None
    if not 32 <= v <= 8192:
        raise argparse.ArgumentTypeError(f"{v}: the network input height must be 32-8192 pixels")
    return v


def make_predictor(a, checkpoint: str | dict, spinning: bool = True):
    """--model/--backend/--precision/... -> Predictor, through roadseg.load (the one factory)."""
    from roadseg.inference.predictor import load

    return load(checkpoint, backend=a.backend, precision=a.precision, scale=a.scale, size=a.size, device=a.device,
                onnx=a.onnx, threshold=getattr(a, "threshold", None),
                tta=getattr(a, "tta", False), spinning=spinning)
