"""The README and docs/ say only what works.

- The README opens with exactly the two commands `make demo` and `make test`.
- Its Python examples (a frame, a video) and those of docs/python-api.md (a frame, files, a video, evaluation,
  training) run as written, in order, from a folder laid out like the checkout (configs/ beside ../shared/data).
- Its quick start runs: predict on the sample frame shipped with the package.
- Every command in a bash block of README.md and docs/*.md, and every inline `roadseg ...` command, parses with the
  real parser (for `train`, its config and overrides load too); `make` targets exist; scripts exist and take the
  options given; nothing else is run from the pages but pip."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, ROOT
from roadseg.cli import build_parser, main
from roadseg.cli.common import UsageError
from roadseg.data.samples import FRAME

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SAMPLE = '"$(python -m roadseg.data.samples)"'


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


def checkout(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(DATA)
    monkeypatch.chdir(root)
    return root


def run_blocks(blocks: list[str], name: str) -> dict:
    ns: dict = {}
    for block in blocks:
        exec(compile(block, name, "exec"), ns)
    return ns


def test_readme_opens_with_the_two_make_commands():
    first = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert [line.split("#")[0].strip() for line in first.splitlines()] == ["make demo", "make test"]


def test_readme_python_examples_run_as_written(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(ROOT / "README.md")
    assert [b.splitlines()[0].split(":")[0] for b in blocks] == ["# one frame", "# a video"]
    root = checkout(tmp_path, monkeypatch)
    ns = run_blocks(blocks, "README.md")
    r = ns["r"]
    assert r.prob.shape == (375, 1242) and r.prob.dtype == np.float32 and 0.05 < r.mask.mean() < 0.6
    assert r.threshold == 0.537 and (root / "api_out" / "um_000000_overlay.png").is_file()
    assert ns["summary"].frames == 221 and (root / "api_out" / "road.mp4").stat().st_size > 10_000


def test_api_page_examples_run_as_written(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(ROOT / "docs" / "python-api.md")
    assert [b.splitlines()[0].split(":")[0] for b in blocks] == \
        ["# one frame", "# files", "# a video", "# evaluation", "# training"]
    root = checkout(tmp_path, monkeypatch)
    ns = run_blocks(blocks, "docs/python-api.md")
    r = ns["r"]
    assert r.prob.shape == (375, 1242) and r.threshold == 0.537 and ns["overlay"].shape == (375, 1242, 3)
    assert len(ns["result"]["written"]) == 10 and (root / "api_out" / "frames" / "um_road_000000.png").is_file()
    assert ns["summary"].frames == 221
    assert re.search(r"^all\s+\d+\.\d\d", capsys.readouterr().out, re.M)  # the devkit table's last row
    run = Path(ns["run"])
    assert (run / "last.pt").is_file() and run.is_relative_to(root / "api_out" / "runs")


def test_quick_start_predicts_on_the_shipped_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = next(c for c in commands(ROOT / "README.md") if str(FRAME) in c)  # the page's "$(python -m ...)"
    assert main(shlex.split(line)[1:]) == 0
    out = tmp_path / "quickstart"
    assert (out / "um_000000_overlay.png").is_file() and (out / "um_000000_mask.png").is_file()


def commands(page: Path) -> list[str]:
    """Each command line of the page's bash blocks (comments dropped, `a && b` split, the sample's path given)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():  # a line continued with a backslash is one command
            if SAMPLE in line:
                line = line.replace(SAMPLE, str(FRAME))
            words, part = shlex.split(line, comments=True), []
            for w in [*words, "&&"]:
                if w == "&&":
                    out += [shlex.join(part)] if part else []
                    part = []
                else:
                    part.append(w)
    return out


def inline_commands(page: Path) -> list[str]:
    """`roadseg ... --option ...` in backticks outside code blocks, without placeholders ([...], a|b, ...)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [c for c in re.findall(r"`(roadseg [^`]+)`", text)
            if " --" in c and not re.search(r"\[|\||\.\.\.|\bCOMMAND\b", c)]


def roadseg_args(words: list[str]) -> list[str] | None:
    """The roadseg arguments of `roadseg ...`, `python -m roadseg ...` or `torchrun ... -m roadseg ...`."""
    if words[0] == "roadseg":
        return words[1:]
    if "-m" in words and words[words.index("-m") + 1] == "roadseg":
        return words[words.index("-m") + 2:]
    return None


def check_roadseg(args: list[str]) -> None:
    try:
        a = build_parser().parse_args(args)
    except UsageError as exc:
        raise AssertionError(f"roadseg {shlex.join(args)}: {exc}") from None
    if a.command == "train":
        from roadseg.config import load_config

        load_config(str(ROOT / a.config), a.overrides)  # the keys and values the page gives are valid


def check_other(words: list[str], makefile: str) -> None:
    if words[0] == "make":
        assert all(re.search(rf"^{t}:", makefile, re.M) for t in words[1:]), words
    elif words[0] == "python" and words[1].endswith(".py"):
        script = (ROOT / words[1]).read_text()
        assert all(f'"{w}"' in script or f"'{w}'" in script or f"[{w}]" in script
                   for w in words[2:] if w.startswith("--")), words
    else:
        assert words[0] in ("pip", "cd", "zip", "export"), f"a command the test does not know: {shlex.join(words)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_on_the_page_parses(page, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    makefile = (ROOT / "Makefile").read_text()
    lines = commands(page) + inline_commands(page)
    for line in lines:
        words = shlex.split(line)
        args = roadseg_args(words)
        if args is not None:
            check_roadseg(args)
        else:
            check_other(words, makefile)
    if page.name not in ("cli.md", "architecture.md", "errors.md", "python-api.md"):
        assert lines, f"{page.name} shows no command"
