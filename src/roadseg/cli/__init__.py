"""The command line: the only place that parses argv, prints, or exits. common.py holds what the subcommands share,
commands.py the subcommands themselves; this module declares every argument and runs one command.

    roadseg weights fetch {hed,keras,torchvision,efficientnet-lite0,efficientnet-lite2} [--path FILE]
    roadseg train --config configs/kitti-lite0.yaml [key=value ...] [--resume last.pt]
    roadseg eval [--model NAME|CKPT] [--data DIR] [--split val] [--save-probs DIR] [--skip-bad]
    roadseg predict INPUT... --out DIR [--model NAME|CKPT] [--probs] [--skip-bad]
    roadseg video IN.mp4 --out OUT.mp4 [--model NAME|CKPT] [--side-by-side]
    roadseg export CKPT --out model.onnx
    roadseg release RUN/last.pt --out model.pt [--calib FRAMES]
    roadseg quantize model.onnx --calib DIR --out model_int8.onnx [--method minmax|entropy|percentile]
    roadseg benchmark [--model NAME|CKPT ...] [--data DIR] [--quick]
    roadseg report RUN_DIR
    roadseg demo [--data DIR] [--out runs/demo]
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys

from roadseg import __version__
from roadseg.cli import commands
from roadseg.cli.common import ArgumentParser, Signals, UsageError, exit_code

__all__ = ["ArgumentParser", "UsageError", "build_parser", "main"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="roadseg", description="Drivable-road segmentation (FCNs on EfficientNet-Lite0 or VGG16) for dash-cam images and video.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("-q", "--quiet", action="store_true", help="log errors only (training logs its epochs otherwise)")
    p.add_argument("--version", action="version", version=f"roadseg {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)

    for name, text, arguments, func in commands.COMMANDS:
        s = sub.add_parser(name, help=text)
        arguments(s)
        s.set_defaults(func=func)
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
