"""Reliability: outputs that cannot be written; inputs stay untouched."""

import errno
import hashlib

import numpy as np
import pytest

from conftest import KITTI
from roadseg.cli import main
from roadseg.engine import evaluate as ev_mod
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
    real = ev_mod.Image.Image.save
    calls = {"n": 0}

    def full(self, fp, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            with open(fp, "wb") as f:
                f.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, fp, *a, **kw)

    monkeypatch.setattr(ev_mod.Image.Image, "save", full)
    with pytest.raises(RoadsegError, match="cannot write output.*No space left on device"):
        predict_images(Predictor(tiny_ckpt), [FRAME], tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["um_000001_overlay.png"]  # the finished file; no temporary or half-written mask
    assert np.asarray(__import__("PIL.Image", fromlist=["x"]).open(tmp_path / "out" / names[0])).shape[2] == 3
