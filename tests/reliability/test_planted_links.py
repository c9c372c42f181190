"""Reliability: no output is written through a planted symbolic link. Each command is run once into an empty
folder to learn every file it writes (its own output list, read from the folder: nothing listed by hand); then,
in a second folder, a link to a victim file of someone else's is planted at each of those names and the command run
again: every victim must be unchanged and every name a fresh regular file (the link replaced, never followed).
Folders are left as made: only file names are planted."""

import hashlib

import pytest

from conftest import KITTI, make_clip
from roadseg.cli import main

FRAME = KITTI / "training" / "image_2" / "um_000000.jpg"


def snapshot(root):
    """{name: (inode, digest)} of the files under root: a file written again (renamed over) gets a new inode."""
    return {str(p.relative_to(root)): (p.stat().st_ino, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def train_argv(r, ext):
    (ext / "t.txt").write_text("um_000000\num_000010\n")
    (ext / "v.txt").write_text("uu_000020\n")
    (ext / "c.yaml").write_text("{}\n")
    return ["train", "--config", str(ext / "c.yaml"), "--overwrite", f"data.root={KITTI}",
            f"data.train_list={ext / 't.txt'}", f"data.val_list={ext / 'v.txt'}", "data.scale=0.125",
            "data.crop=[32, 96]", "model.fc_width=16", "model.weights=none", "train.epochs=1", "train.batch_size=2",
            "train.precision=fp32", "train.threads=1", f"train.out_dir={r}", "train.name=run"]


def eval_argv(r, ext, ckpt):
    return ["eval", "--model", ckpt, "--backend", "torch", "--save-probs", str(r / "probs"), "--out", str(r / "eval")]


# command -> (argv for output root r, prerequisites folder ext and the tiny checkpoint; setup of r before the run)
CASES = {
    "train": (lambda r, ext, ck: train_argv(r, ext), None),
    "eval": (eval_argv, None),
    "report": (lambda r, ext, ck: ["report", str(r / "eval"), "--model", ck], lambda r, ext, ck: main(eval_argv(r, ext, ck))),
    "predict": (lambda r, ext, ck: ["predict", str(FRAME), "--probs", "--out", str(r / "pred"), "--model", ck,
                                    "--backend", "torch"], None),
    "video": (lambda r, ext, ck: ["video", str(ext / "clip.mp4"), "--out", str(r / "v.mp4"), "--summary",
                                  str(r / "v.json"), "--model", ck, "--backend", "torch"], None),
    "export": (lambda r, ext, ck: ["export", ck, "--out", str(r / "m.onnx"), "--fp16", str(r / "m16.onnx"),
                                   "--optimized", str(r / "mopt.onnx")], None),
    "release": (lambda r, ext, ck: ["release", ck, "--out", str(r / "rel.pt")], None),
    "quantize": (lambda r, ext, ck: ["quantize", str(ext / "m.onnx"), "--calib", str(FRAME), "--frames", "1",
                                     "--out", str(r / "q.onnx")], None),
}


SOME_OUTPUTS = {  # a few of each command's outputs, only to check that the discovery finds them
    "train": ["run/config.yaml", "run/environment.json", "run/last.pt", "run/metrics.csv"],
    "eval": ["eval/metrics.json", "eval/report.html", "eval/gallery/gallery.json", "probs/um_road_000077.png"],
    "report": ["eval/report.html", "eval/gallery/gallery.json"],
    "predict": ["pred/um_000000_mask.png", "pred/um_000000_overlay.png", "pred/um_road_000000.png"],
    "video": ["v.mp4", "v.json"],
    "export": ["m.onnx", "m16.onnx", "mopt.onnx"],
    "release": ["rel.pt"],
    "quantize": ["q.onnx"],
}


@pytest.fixture(scope="module")
def ext(tmp_path_factory, tiny_ckpt):
    d = tmp_path_factory.mktemp("inputs")
    make_clip(d / "clip.mp4", w=96, h=40, gaps_ms=(40,) * 3)
    assert main(["export", str(tiny_ckpt), "--out", str(d / "m.onnx")]) == 0
    return d


def run_case(cmd, r, ext, ckpt):
    argv, setup = CASES[cmd]
    r.mkdir()
    if setup:
        setup(r, ext, str(ckpt))
    before = snapshot(r)
    assert main(argv(r, ext, str(ckpt))) == 0
    after = snapshot(r)
    return sorted(p for p in after if before.get(p) != after[p])


@pytest.mark.parametrize("cmd", list(CASES))
def test_no_output_is_written_through_a_planted_link(cmd, tiny_ckpt, ext, tmp_path, monkeypatch):
    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    outputs = run_case(cmd, tmp_path / "first", ext, tiny_ckpt)
    assert set(SOME_OUTPUTS[cmd]) <= set(outputs), outputs  # the discovery sees at least these
    argv, setup = CASES[cmd]
    r = tmp_path / "second"
    r.mkdir()
    if setup:
        setup(r, ext, str(tiny_ckpt))
    victims = tmp_path / "victims"
    victims.mkdir()
    for i, name in enumerate(outputs):
        v = victims / f"v{i}"
        v.write_text(f"someone else's file {i}\n")
        (r / name).parent.mkdir(parents=True, exist_ok=True)
        (r / name).unlink(missing_ok=True)  # an output of the setup run (report.html): the link takes its place
        (r / name).symlink_to(v)
    assert main(argv(r, ext, str(tiny_ckpt))) == 0
    changed = [name for i, name in enumerate(outputs) if (victims / f"v{i}").read_bytes() != f"someone else's file {i}\n".encode()]
    assert not changed, f"{cmd} wrote through the links at {changed}"
    still = [name for name in outputs if (r / name).is_symlink()]
    assert not still, f"{cmd} left the planted links at {still}"
