"""What the subcommands share: the raising ArgumentParser, progress bars, --model and backend/precision arguments,
the default-checkpoint lookup, and the Predictor those arguments describe."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

from roadseg.config import FAR_ZOOM
from roadseg.inference.settings import BACKENDS, DEVICES, PRECISIONS, far_zoom_factor


class UsageError(Exception):
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every cleanup that handles an interrupt (temporary files removed by
    data.io.atomic_write, worker threads joined) runs for it too."""


class Signals:
    """SIGTERM (kill, docker stop, a job scheduler) and SIGINT (Ctrl-C) while a command runs: raised in the main
    thread as Terminated / KeyboardInterrupt, so cleanups run instead of the process ending on the spot with hidden
    temporary files left behind. Which signal arrived is recorded: a library that turns the exception raised inside
    its callback into its own error (torch.save makes it a RuntimeError) still ends as the interrupt it was."""

    def __init__(self):
        self.received: int | None = None

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum, frame):
            self.received = signum
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, handler)}
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # an ignored SIGINT (nohup) stays ignored
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            for signum, h in previous.items():
                signal.signal(signum, h)


def exit_code(exc: BaseException, signals: Signals | None = None) -> int:
    """The one place a command's exception becomes its message (one line on stderr) and exit code: an interrupt
    130 (SIGINT) or 143 (SIGTERM); an expected failure (RoadsegError, an OSError naming its file, memory) 2 as
    `error: <file>: <problem>`; anything else is a bug: 1, one line, the traceback in a file (crash_report)."""
    from roadseg.errors import RoadsegError

    received = signals.received if signals else None
    if received == signal.SIGTERM or isinstance(exc, Terminated):
        msg, code = "terminated (SIGTERM)", 128 + signal.SIGTERM
    elif received == signal.SIGINT or isinstance(exc, KeyboardInterrupt):
        msg, code = "interrupted", 130
    elif isinstance(exc, RoadsegError):
        msg, code = f"error: {exc}", 2
    elif isinstance(exc, OSError) and exc.filename:  # the environment, not a bug: a file no check could foresee
        msg, code = f"error: {exc.filename}: {exc.strerror or exc}", 2
    elif isinstance(exc, MemoryError):
        msg, code = "error: out of memory (try a smaller --size, --batch-size or image)", 2
    else:
        msg, code = crash_report(exc), 1
    print(msg, file=sys.stderr)
    return code


def crash_report(exc: BaseException) -> str:
    """An unexpected exception (a bug, not bad input) -> one line for the user, the full traceback in a file under
    the temporary folder (the cache folder may be the thing that is broken)."""
    import tempfile
    import traceback

    from roadseg import __version__

    first = (str(exc).strip().splitlines() or [""])[0][:200]
    what = f"unexpected {type(exc).__name__}" + (f": {first}" if first else "")
    try:
        fd, path = tempfile.mkstemp(prefix="roadseg-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"roadseg {__version__}, python {sys.version.split()[0]}\nargv: {sys.argv}\n\n")
            f.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return f"error: {what} (a bug in roadseg; the full traceback is in {path})"
    except OSError as err:
        return f"error: {what} (a bug in roadseg; the traceback could not be saved: {err.strerror})"


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


def add_backend(s, default_auto: bool = True) -> None:
    """The inference settings as flags (--backend, --precision, --onnx, --scale, --size, --threshold, --device, --tta,
    --batch-size, --top-crop, --far-zoom); `settings_kwargs` maps them onto roadseg.load's arguments. default_auto: backend and precision
    default to 'auto' (ONNX Runtime INT8); otherwise to torch fp32."""
    auto = "auto" if default_auto else None
    s.add_argument("--backend", default=auto or "torch", choices=[*(["auto"] if auto else []), *BACKENDS],
                   help="auto = the fastest path within the accuracy budget: tensorrt fp16 (or torch fp16) on a CUDA "
                        "GPU, onnxruntime int8 on the CPU" if auto else None)
    s.add_argument("--precision", default=auto or "fp32", choices=[*(["auto"] if auto else []), *PRECISIONS],
                   help="auto: int8 for backend auto, fp32 for a named backend, the file's own for --onnx" if auto else None)
    s.add_argument("--onnx", help="an .onnx file to run (backend onnxruntime)")
    s.add_argument("--scale", type=positive(float), help="network input scale (default: the model's); with --size auto "
                   "it applies at the height the model was trained on")
    s.add_argument("--threshold", type=float, help="road where probability >= this, strictly between 0 and 1 (default: "
                   "the model's validation operating point, stored in the file; 0.5 for files without one)")
    s.add_argument("--size", type=_size, default="auto",
                   help="network input height: auto (frames within 15%% of the height the model was trained on run at "
                        "its scale, others are first brought to that height), a height in pixels (then --scale does not "
                        "apply), or native (--scale times each frame's own size)")
    s.add_argument("--device", default="auto", choices=list(DEVICES),
                   help="where the network runs: auto = the GPU where torch sees one and the backend runs there")
    s.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average with the mirrored frame (about 2x the time)")
    s.add_argument("--batch-size", type=positive(int), default=4, help="frames per network call")
    s.add_argument("--top-crop", type=float, metavar="FRACTION",
                   help="the top fraction of each frame's rows the network does not see (road probability 0 there); "
                        "default: the model's (its training data never has road there); 0: whole frames, for a camera "
                        "whose road reaches higher in the frame")
    s.add_argument("--far-zoom", type=far_zoom_factor, nargs="?", const=FAR_ZOOM, metavar="FACTOR",
                   help="a second pass over the far road (the rows between the top crop and 70%% of the frame height) "
                        "at FACTOR times the scale (FACTOR in (1, 4], 2 without it), averaged with the first pass "
                        "there: finer far road for more work (on KITTI frames the second pass has 2.2 times the "
                        "first's pixels); a KITTI camera prior")


def settings_kwargs(a, **fixed) -> dict:
    """The parsed inference flags as roadseg.load's keyword arguments (what the command does not take: defaults)."""
    kw = {"backend": a.backend, "precision": a.precision, "device": a.device, "scale": a.scale, "size": a.size,
          "threshold": a.threshold, "tta": a.tta, "batch_size": a.batch_size, "onnx": a.onnx, "top_crop": a.top_crop,
          "far_zoom": a.far_zoom}
    return {**kw, **fixed}


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
    if text in ("auto", "native"):
        return text
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a height in pixels, 'auto' or 'native', got {text!r}") from None
    if not 32 <= v <= 8192:
        raise argparse.ArgumentTypeError(f"{v}: the network input height must be 32-8192 pixels")
    return v


def check_outputs(*items) -> None:
    """(path, is_folder, what) for each output a command will write, checked before any long work (loading a model,
    building the INT8 cache, reading a dataset, processing a clip), so an unwritable path fails at once with a
    one-line error instead of after the run. None paths (options not given) are skipped."""
    from roadseg.data.io import check_writable
    from roadseg.errors import RoadsegError

    seen: dict[str, tuple[str, bool]] = {}  # two outputs on one path: one would replace the other (two folders may share)
    for path, folder, what in items:
        if path:
            check_writable(path, folder=folder, what=what)
            key = os.path.realpath(path)
            if key in seen and not (folder and seen[key][1]):
                raise RoadsegError(f"{path}: named both as the {seen[key][0]} and as the {what}; give each its own path")
            seen[key] = (what, folder)


def folder_values(a, data_cfg=None) -> dict:
    """--road-value / --ignore-value: a folder dataset's mask values (a grey id or an R,G,B colour), checked now
    rather than after the model is loaded. Returns them as data-config keys; with `data_cfg`, also set there (refused
    for a dataset that is not a folder)."""
    from roadseg.data.datasets import parse_value
    from roadseg.errors import ConfigError

    out = {}
    for key in ("road_value", "ignore_value"):
        value = getattr(a, key, None)
        if value is None:
            continue
        opt = "--" + key.replace("_", "-")
        if data_cfg is not None and data_cfg.dataset != "folder":
            raise ConfigError(f"{opt}: applies to folder datasets (--dataset folder), not to {data_cfg.dataset}")
        parse_value(value, opt)
        out[key] = value
        if data_cfg is not None:
            setattr(data_cfg, key, value)
    return out


def make_predictor(a, checkpoint: str | dict, **fixed):
    """The parsed flags -> a Predictor, through roadseg.load (the one factory; settings resolved there, once)."""
    from roadseg.inference.predictor import load

    pred = load(checkpoint, **settings_kwargs(a, **fixed))
    if pred.settings.chosen:
        print(pred.settings.chosen, file=sys.stderr)
    return pred
