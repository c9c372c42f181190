"""Reliability: outputs that cannot be written; inputs stay untouched."""

import errno
import hashlib

import numpy as np
import pytest

from conftest import KITTI
from roadseg.cli import main
from roadseg.errors import RoadsegError
from roadseg.inference.pipeline import predict_images
from roadseg.inference.predictor import Predictor

FRAME = KITTI / "training" / "image_2" / "um_000001.jpg"


def digest(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_output_folder_that_cannot_be_created(tiny_ckpt, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    before = digest(FRAME)
    rc = main(["predict", str(FRAME), "--checkpoint", str(tiny_ckpt), "--backend", "torch", "--out", str(blocker / "sub")])
    assert rc == 2 and "cannot create output folder" in capsys.readouterr().err
    assert digest(FRAME) == before and blocker.read_text() == "x"


def test_disk_full_is_a_clear_error_and_leaves_no_partial_file(tiny_ckpt, tmp_path, monkeypatch):
    from PIL import Image

    real = Image.Image.save
    calls = {"n": 0}

    def full(self, fp, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            if hasattr(fp, "write"):  # an open temporary file
                fp.write(b"\x89PNG partial")
            else:
                with open(fp, "wb") as f:
                    f.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, fp, *a, **kw)

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(RoadsegError, match="cannot write output.*No space left on device"):
        predict_images(Predictor(tiny_ckpt), [FRAME], tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["um_000001_overlay.png"]  # the finished file; no temporary or half-written mask
    assert np.asarray(__import__("PIL.Image", fromlist=["x"]).open(tmp_path / "out" / names[0])).shape[2] == 3


# ------------------------------------------------------------------ inputs are never overwritten

def test_video_output_onto_its_input_is_refused(tiny_ckpt, tmp_path, monkeypatch, capsys):
    import shutil

    from conftest import DATA

    clip = tmp_path / "in.mp4"
    shutil.copy(DATA / "video" / "solidWhiteRight.mp4", clip)
    before = digest(clip)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    for out in ("in.mp4", "sub/../in.mp4", str(clip)):  # the same file through other paths
        assert main(["video", str(clip), "--out", out, "--checkpoint", str(tiny_ckpt), "--backend", "torch"]) == 2
        assert "output would overwrite the input video" in capsys.readouterr().err
    assert digest(clip) == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "sub"]


def test_probabilities_never_written_into_a_label_folder(tiny_ckpt, tmp_path, capsys):
    from conftest import make_kitti

    root = make_kitti(tmp_path / "kitti", names=("um_000000", "um_000001", "uu_000000", "uu_000001"))
    gt = root / "training" / "gt_image_2"
    before = {p.name: digest(p) for p in gt.iterdir()}
    frame = root / "training" / "image_2" / "um_000000.png"
    assert main(["predict", str(frame), "--probs", "--out", str(gt), "--checkpoint", str(tiny_ckpt), "--backend", "torch"]) == 2
    assert "label folder" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tiny_ckpt), "--data", str(root), "--split", "val", "--backend", "torch",
                 "--save-probs", str(gt), "--out", str(tmp_path / "e"), "--no-report"]) == 2
    assert "output would overwrite the input" in capsys.readouterr().err  # um_road_000000.png is a mask it reads
    assert {p.name: digest(p) for p in gt.iterdir()} == before


def test_predict_output_onto_an_input_is_refused(tiny_ckpt, tmp_path, capsys):
    from conftest import write_png

    frame = write_png(tmp_path / "a_mask.png", np.zeros((40, 60, 3), np.uint8))
    other = write_png(tmp_path / "a.png", np.full((40, 60, 3), 90, np.uint8))
    before = digest(frame)
    rc = main(["predict", str(other), str(frame), "--out", str(tmp_path), "--checkpoint", str(tiny_ckpt), "--backend", "torch"])
    assert rc == 2 and "output would overwrite the input" in capsys.readouterr().err  # a.png -> a_mask.png
    assert digest(frame) == before


@pytest.mark.parametrize("ext,codec", [("mkv", "libx264"), ("webm", "libvpx-vp9")])
def test_video_without_a_frame_count_runs_with_a_progress_bar(tiny_ckpt, tmp_path, ext, codec):
    """MKV/WebM streams carry no frame count: the progress bar must cope with an unknown total (it crashed)."""
    import io

    import av
    from tqdm import tqdm

    from roadseg.inference.pipeline import process_video

    src = tmp_path / f"clip.{ext}"
    with av.open(str(src), "w") as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 128, 64, "yuv420p"
        for i in range(4):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((64, 128, 3), 50 * i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(str(src)) as c:
        assert not c.streams.video[0].frames  # the case: no count in the header
    bars = []

    def progress(total, desc):  # an enabled bar, as on a terminal
        bars.append(tqdm(total=total, desc=desc, file=io.StringIO(), disable=False))
        return bars[-1]

    s = process_video(Predictor(tiny_ckpt), src, tmp_path / "out.mp4", progress=progress)
    assert s.frames == 4 and bars and bars[0].total is None and bars[0].n == 4


def test_undefined_scores_are_null_in_strict_json_and_n_a_in_the_table(tmp_path):
    import json

    from roadseg.engine.evaluate import format_table, write_metrics
    from roadseg.metrics import Evaluator

    ev = Evaluator()
    ev.add("um_000000", "um", np.full((4, 6), 200, np.uint8), np.full((4, 6), 255, np.uint8))  # every pixel ignored
    write_metrics(ev, tmp_path / "metrics.json")
    res = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert res["results"]["all"]["MaxF"] is None
    assert "n/a" in format_table(ev.results()) and "nan" not in format_table(ev.results())


def test_yaml_alias_bomb_is_a_short_config_error(tmp_path):
    import time

    from roadseg.config import load_config
    from roadseg.errors import ConfigError

    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]")
    lines.append("train:\n  epochs: *i")  # 10^9 elements if expanded
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    t = time.time()
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "bomb.yaml")
    assert time.time() - t < 10 and len(str(e.value)) < 400
