"""Reliability: the model cache heals. An entry truncated, emptied or overwritten (a killed process, a full disk)
is rebuilt with one warning line and the run gives the same answer; two processes building one entry at once both
end with the good file."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import KITTI, ROOT
from roadseg.cli import main

FRAME = KITTI / "training" / "image_2" / "um_000000.jpg"


def damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random, same size":  # only the digest can tell
        path.write_bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif how == "no record":
        os.unlink(str(path) + ".json")


def predict(ckpt, precision, out):
    rc = main(["predict", str(FRAME), "--model", str(ckpt), "--backend", "onnxruntime", "--precision", precision,
               "--out", str(out)])
    assert rc == 0
    return np.array(Image.open(out / "um_000000_mask.png"))


@pytest.mark.parametrize("precision,how", [
    ("fp32", "truncated"), ("fp32", "random, same size"), ("fp32", "no record"), ("int8", "truncated"),
    ("int8", "empty"),
])
def test_damaged_cache_entry_is_rebuilt_with_one_warning(precision, how, tiny_ckpt, tmp_path, monkeypatch, caplog):
    from roadseg.optimize.cache import entry_problem

    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    want = predict(tiny_ckpt, precision, tmp_path / "a")
    (entry,) = (tmp_path / "cache" / "onnx").glob(f"*_{precision}.onnx")
    assert entry_problem(entry) is None
    record = json.loads((entry.parent / (entry.name + ".json")).read_text())
    assert record["size"] == entry.stat().st_size
    damage(entry, how)
    assert entry_problem(entry) is not None
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        got = predict(tiny_ckpt, precision, tmp_path / "b")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert warnings[0].startswith(f"{entry}: damaged model cache entry (") and "rebuilding it" in warnings[0]
    assert entry_problem(entry) is None
    assert np.array_equal(got, want)
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # healed: the next run says nothing
        predict(tiny_ckpt, precision, tmp_path / "c")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_entry_problem_names_what_is_wrong(tmp_path):
    from roadseg.optimize.cache import entry_problem, record_entry

    f = tmp_path / "x_fp32.onnx"
    assert entry_problem(f) == "missing"
    f.write_bytes(b"0123456789")
    assert entry_problem(f).startswith("no build record")
    record_entry(f)
    assert entry_problem(f) is None
    f.write_bytes(b"01234")
    assert entry_problem(f) == "5 bytes, 10 when built"
    f.write_bytes(b"0123456780")
    assert entry_problem(f) == "its content differs from when it was built (SHA-256)"
    (tmp_path / "x_fp32.onnx.json").write_text("{garbage")
    assert entry_problem(f) == "its build record x_fp32.onnx.json is unreadable"


BUILD = """
import sys
from roadseg.optimize.cache import optimized_model
path, prec = optimized_model(sys.argv[1], "fp32")
print(path)
"""


def test_graph_key_follows_what_the_graph_is_made_of(tiny_ckpt, tmp_path):
    """The same file read from another folder shares its graphs; a config or threshold changed in memory does not
    (each is written into the graph)."""
    import shutil

    from roadseg.models.checkpoint import load_checkpoint
    from roadseg.optimize.cache import graph_key

    (tmp_path / "elsewhere").mkdir()
    moved = shutil.copy(tiny_ckpt, tmp_path / "elsewhere" / "m.pt")
    base = graph_key(load_checkpoint(tiny_ckpt))
    assert graph_key(load_checkpoint(moved)) == base
    cropped, sure = load_checkpoint(tiny_ckpt), load_checkpoint(tiny_ckpt)
    cropped["config"]["data"]["top_crop"] = 0.25
    sure["threshold"] = 0.7
    keys = {base, graph_key(cropped), graph_key(sure)}
    assert len(keys) == 3 and all(k.startswith(base[:16]) for k in keys)


def test_two_processes_building_one_entry_both_end_with_the_good_file(tiny_ckpt, tmp_path):
    import onnx

    from roadseg.optimize.cache import entry_problem

    env = {**os.environ, "ROADSEG_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(tiny_ckpt)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1
    (path,) = paths
    assert entry_problem(Path(path)) is None
    onnx.checker.check_model(onnx.load(path))
    names = sorted(p.name for p in (tmp_path / "cache" / "onnx").iterdir())
    key = names[0][1:].removesuffix(".lock")
    assert names == [f".{key}.lock", f"{key}_fp32.onnx", f"{key}_fp32.onnx.json"]  # no temporary file left
