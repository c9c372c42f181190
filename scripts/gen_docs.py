"""The generated parts of docs/, so that they cannot drift from what they describe.

    python scripts/gen_docs.py            # rewrite them (also `make docs`)
    python scripts/gen_docs.py --check    # exit 1 if any is out of date (tests/test_docs.py)

docs/cli.md: each section is `roadseg COMMAND --help` as the parser prints it, at a fixed width of 100 columns.
docs/optimization.md: the block between the BENCHMARK markers is benchmarks/results/inference.md, the table that
`roadseg benchmark` (python benchmarks/inference.py) last wrote."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"
WIDTH = "100"
OPTIMIZATION = ROOT / "docs" / "optimization.md"
BENCHMARK = ROOT / "benchmarks" / "results" / "inference.md"
BEGIN, END = "<!-- BENCHMARK: benchmarks/results/inference.md, copied by make docs -->", "<!-- END BENCHMARK -->"

HEADER = """# Command-line reference

Generated from the parsers by `python scripts/gen_docs.py` (or `make docs`); `tests/test_docs.py` fails when this
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


def with_benchmark(text: str) -> str:
    """`text` (docs/optimization.md) with the block between the markers replaced by the benchmark's table."""
    head, _, rest = text.partition(BEGIN + "\n")
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{BENCHMARK.read_text().rstrip()}\n{END}{tail}"


def write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    print(f"wrote {path.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write the generated parts of docs/")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when a page is out of date")
    a = p.parse_args(argv)
    pages = {OUT: render(), OPTIMIZATION: with_benchmark(OPTIMIZATION.read_text())}
    stale = [path for path, text in pages.items() if not path.is_file() or path.read_text() != text]
    if a.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run python scripts/gen_docs.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        write(path, pages[path])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
