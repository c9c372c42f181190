"""Reliability: no output lands among a dataset's files. Probability maps, metrics and predictions written into
(or below) a folder a dataset reads from (its frames, masks or calibration files), by any path, would be read as
frames by the next run ("frames without mask: 000002_10_prob.png"); they are refused with one line naming the
folder, before anything is written."""

import hashlib

import numpy as np
import pytest

from conftest import make_kitti, write_png
from roadseg.cli import main


def snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def folder_dataset(root):
    rng = np.random.default_rng(0)
    for i in range(3):
        write_png(root / "images" / f"00000{i}_10.png", rng.integers(0, 255, (40, 96, 3), dtype=np.uint8))
        mask = np.zeros((40, 96, 3), np.uint8)
        mask[20:] = (255, 0, 255)
        write_png(root / "masks" / f"00000{i}_10.png", mask)
    return root


def camvid_dataset(root):
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for i in range(2):
            write_png(root / split / f"{split}_{i}.png", rng.integers(0, 255, (40, 96, 3), dtype=np.uint8))
            mask = np.full((40, 96), 2, np.uint8)
            mask[20:] = 3  # road
            write_png(root / f"{split}annot" / f"{split}_{i}.png", mask)
    return root


def kitti_dataset(root):
    make_kitti(root, names=("um_000000", "um_000001", "uu_000000", "uu_000001"))
    (root / "training" / "calib").mkdir()
    return root


LAYOUTS = {  # layout -> (make it, eval's dataset arguments, split, {kind: the folder it reads})
    "folder": (folder_dataset, ["--dataset", "folder", "--road-value", "255,0,255"], "all",
               {"image": "images", "label": "masks"}),
    "kitti": (kitti_dataset, ["--dataset", "kitti"], "val",
              {"image": "training/image_2", "label": "training/gt_image_2", "calibration": "training/calib"}),
    "camvid": (camvid_dataset, ["--dataset", "camvid"], "val", {"image": "val", "label": "valannot"}),
}
CASES = [(layout, kind) for layout, spec in LAYOUTS.items() for kind in spec[3]]


def eval_argv(ckpt, root, layout, tmp_path, **outs):
    make, args, split, _ = LAYOUTS[layout]
    argv = ["eval", "--model", str(ckpt), "--backend", "torch", "--data", str(root), "--split", split, *args,
            "--no-report"]
    for opt, path in {"out": tmp_path / "metrics", **outs}.items():
        argv += [f"--{opt.replace('_', '-')}", str(path)]
    return argv


def one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("layout,kind", CASES)
def test_eval_save_probs_refused_in_a_dataset_folder(layout, kind, tiny_ckpt, tmp_path, capsys):
    root = LAYOUTS[layout][0](tmp_path / "data")
    folder = root / LAYOUTS[layout][3][kind]
    before = snapshot(root)
    assert main(eval_argv(tiny_ckpt, root, layout, tmp_path, save_probs=folder)) == 2
    assert one_line(capsys) == f"error: {folder}: is a dataset's {kind} folder; write outputs elsewhere"
    assert snapshot(root) == before and not (tmp_path / "metrics").exists()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_eval_outputs_refused_in_the_image_folder_by_any_path(layout, tiny_ckpt, tmp_path, capsys, monkeypatch):
    root = LAYOUTS[layout][0](tmp_path / "data")
    images = root / LAYOUTS[layout][3]["image"]
    (tmp_path / "link").symlink_to(images)
    monkeypatch.chdir(images)
    before = snapshot(root)
    for opt, path, named in [
        ("save_probs", tmp_path / "link", images),  # through a symlink
        ("save_probs", images / ".." / images.name, images),  # through ..
        ("save_probs", ".", images),  # relative, from inside
        ("save_probs", images / "probs", images),  # a new folder below it
        ("out", tmp_path / "link" / "eval", images),  # metrics.json (and the report) below it
    ]:
        argv = eval_argv(tiny_ckpt, root, layout, tmp_path, **{opt: path})
        assert main(argv) == 2, (opt, path)
        line = one_line(capsys)
        assert line.endswith(f" {named}, a dataset's image folder; write outputs elsewhere"), line
    assert snapshot(root) == before and not (tmp_path / "metrics").exists()


def test_eval_save_probs_beside_the_dataset_is_fine(tiny_ckpt, tmp_path):
    root = folder_dataset(tmp_path / "data")
    before = snapshot(root)
    assert main(eval_argv(tiny_ckpt, root, "folder", tmp_path, save_probs=root / "probs")) == 0
    assert sorted(p.name for p in (root / "probs").iterdir()) == [f"00000{i}_10_prob.png" for i in range(3)]
    assert snapshot(root / "images") == {k.split("/", 1)[1]: v for k, v in before.items() if k.startswith("images/")}
    assert main(eval_argv(tiny_ckpt, root, "folder", tmp_path / "again")) == 0  # the dataset still reads


@pytest.mark.parametrize("layout,kind", CASES)
def test_predict_refused_into_a_dataset_folder_by_its_layout(layout, kind, tiny_ckpt, tmp_path, capsys):
    """predict knows no dataset: its outputs are kept out of any folder laid out as one (KITTI's image_2,
    gt_image_2 and calib, CamVid's <split> and <split>annot, a folder dataset's images and masks)."""
    root = LAYOUTS[layout][0](tmp_path / "data")
    folder = root / LAYOUTS[layout][3][kind]
    frame = tmp_path / "frame.png"
    write_png(frame, np.zeros((40, 96, 3), np.uint8))
    before = snapshot(root)
    for out in (folder, folder / "pred"):
        assert main(["predict", str(frame), "--probs", "--out", str(out), "--model", str(tiny_ckpt),
                     "--backend", "torch"]) == 2
        where = "is" if out == folder else f"lies inside {folder},"
        assert one_line(capsys) == f"error: {out}: {where} a dataset's {kind} folder; write outputs elsewhere"
    assert snapshot(root) == before
