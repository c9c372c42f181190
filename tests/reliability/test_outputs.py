"""Reliability: outputs that cannot be written; inputs stay untouched."""

import errno
import hashlib

import numpy as np
import pytest

from conftest import KITTI
from roadseg.cli import main
from roadseg.errors import RoadsegError
from roadseg.inference.pipeline import predict_images
from roadseg.inference.predictor import load

FRAME = KITTI / "training" / "image_2" / "um_000001.jpg"


def digest(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_output_folder_that_cannot_be_created(tiny_ckpt, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    before = digest(FRAME)
    rc = main(["predict", str(FRAME), "--checkpoint", str(tiny_ckpt), "--backend", "torch", "--out", str(blocker / "sub")])
    assert rc == 2 and "cannot write the output folder (--out) here" in capsys.readouterr().err
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
        predict_images(load(tiny_ckpt, backend="torch"), [FRAME], tmp_path / "out")
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
    assert f"{gt}: is a dataset's label folder" in capsys.readouterr().err  # um_road_000000.png is a mask it reads
    assert {p.name: digest(p) for p in gt.iterdir()} == before


def test_predict_output_onto_an_input_is_refused(tiny_ckpt, tmp_path, capsys):
    from conftest import write_png

    frame = write_png(tmp_path / "a_mask.png", np.zeros((40, 60, 3), np.uint8))
    other = write_png(tmp_path / "a.png", np.full((40, 60, 3), 90, np.uint8))
    before = digest(frame)
    rc = main(["predict", str(other), str(frame), "--out", str(tmp_path), "--checkpoint", str(tiny_ckpt), "--backend", "torch"])
    # a.png -> a_mask.png would replace an input; any output folder holding an input is refused (outputs beside
    # the inputs would be read as inputs by the next run on that folder)
    assert rc == 2 and "holds the input" in capsys.readouterr().err
    assert digest(frame) == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_mask.png"]


@pytest.mark.parametrize("ext,codec", [("mkv", "libx264"), ("webm", "libvpx-vp9")])
def test_video_without_a_frame_count_runs_with_a_progress_bar(tiny_ckpt, tmp_path, ext, codec):
    """MKV/WebM streams carry no frame count: the progress bar must cope with an unknown total (it crashed)."""
    import io

    import av
    from tqdm import tqdm

    from roadseg.inference.video import process_video

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

    s = process_video(load(tiny_ckpt, backend="torch"), src, tmp_path / "out.mp4", progress=progress)
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


def test_exif_rotated_photo_is_read_upright(tmp_path):
    from PIL import Image

    from roadseg.data import read_image

    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.fromarray(img).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    up = read_image(tmp_path / "phone.jpg")
    assert up.shape == (40, 20, 3) and up[:18].mean() > 200 and up[22:].mean() < 50  # white on top, as viewers show it


def test_same_file_names_in_two_folders_are_refused_before_writing(tiny_ckpt, tmp_path):
    import shutil

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(FRAME, tmp_path / d / "x.png")
    with pytest.raises(RoadsegError, match="two inputs would write this same output"):
        predict_images(load(tiny_ckpt, backend="torch"), [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_onnx_as_checkpoint_and_nan_weights_are_named_for_what_they_are(tiny_ckpt, tmp_path):
    import torch

    from roadseg.models.checkpoint import atomic_save, load_checkpoint, model_from_checkpoint
    from roadseg.optimize.runtime import export_onnx

    onnx_file = export_onnx(model_from_checkpoint(tiny_ckpt)[0], tmp_path / "m.onnx")
    disguised = tmp_path / "m.pt"
    disguised.write_bytes(onnx_file.read_bytes())
    for f in (onnx_file, disguised):
        with pytest.raises(RoadsegError, match="is an ONNX model.*--backend onnxruntime --onnx"):
            load_checkpoint(f)
    ck = load_checkpoint(tiny_ckpt)
    ck["model"]["score_fr.weight"] = torch.full_like(ck["model"]["score_fr.weight"], float("nan"))
    atomic_save(ck, tmp_path / "nan.pt")
    with pytest.raises(RoadsegError, match="1 weight tensors hold NaN or inf \\(first: score_fr.weight\\)"):
        load(tmp_path / "nan.pt", backend="torch")
