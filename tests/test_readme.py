"""The README's Python examples run as written: one block per task (a frame, files, a video, evaluation, training),
executed in order in one namespace from a folder laid out like the checkout (configs/ beside ../shared/data)."""

import re
from pathlib import Path

import numpy as np

from conftest import DATA, ROOT


def readme_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_python_examples_run_as_written(tmp_path, monkeypatch, capsys):
    blocks = readme_blocks()
    assert len(blocks) == 5 and [b.splitlines()[0].split(":")[0] for b in blocks] == \
        ["# one frame", "# files", "# a video", "# evaluation", "# training"]
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(DATA)
    monkeypatch.chdir(checkout)
    ns: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), ns)
    r = ns["r"]
    assert r.prob.shape == (375, 1242) and r.prob.dtype == np.float32 and 0.05 < r.mask.mean() < 0.6
    assert r.threshold == 0.533 and ns["overlay"].shape == (375, 1242, 3)
    assert len(ns["result"]["written"]) == 10 and (checkout / "api_out" / "frames" / "um_road_000000.png").is_file()
    assert ns["summary"].frames == 221 and (checkout / "api_out" / "road.mp4").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert re.search(r"^all\s+\d+\.\d\d", out, re.M)  # the devkit table's last row
    run = Path(ns["run"])
    assert (run / "last.pt").is_file() and run.is_relative_to(checkout / "api_out" / "runs")
