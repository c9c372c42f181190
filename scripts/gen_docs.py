"""docs/cli.md, generated from the command line's own parsers so that it cannot drift from them.

    python scripts/cli_docs.py            # rewrite docs/cli.md (also `make docs`)
    python scripts/cli_docs.py --check    # exit 1 if docs/cli.md is not what the parsers say (tests/test_docs.py)

Each section is `roadseg COMMAND --help` as the parser prints it, at a fixed width of 100 columns."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"
WIDTH = "100"

HEADER = """# Command-line reference

Generated from the parsers by `python scripts/cli_docs.py` (or `make docs`); `tests/test_docs.py` fails when this
page differs from what the parsers print, so it describes the installed `roadseg` exactly. Every option's default
is in its help; `roadseg COMMAND --help` prints the same text.

`--model` takes a shipped model's name (`kitti-lite0`, the default; `kitti-fcn8s-vgg16`; `camvid-lite0`) or a
checkpoint path. Exit codes: 0 done, 2 an expected failure (one line `error: <file>: <problem>`) or a usage error,
1 an unexpected exception (a bug: one line and the file holding the traceback), 130 Ctrl-C, 143 SIGTERM.
"""


def render() -> str:
    os.environ["COLUMNS"] = WIDTH  # argparse wraps at the terminal's width; fix it so the page is reproducible
    from roadseg.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    texts = {a.dest: a.help for a in sub._choices_actions}
    parts = [HEADER, "## Commands\n", "| command | what it does |", "|---|---|"]
    parts += [f"| [`{name}`](#roadseg-{name}) | {texts[name]} |" for name in sub.choices]
    parts += ["", "## roadseg", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, sp in sub.choices.items():
        parts += [f"## roadseg {name}", "", texts[name][0].upper() + texts[name][1:] + ".", "", "```text",
                  sp.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write docs/cli.md from the parsers")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when docs/cli.md is out of date")
    a = p.parse_args(argv)
    text = render()
    if a.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python scripts/cli_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_name(OUT.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(OUT)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
