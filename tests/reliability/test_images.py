"""Reliability: broken, odd and extreme images."""

import numpy as np
import pytest
from PIL import Image

from conftest import KITTI, write_png
from roadseg.cli import main
from roadseg.data import io as dio
from roadseg.data import read_image
from roadseg.errors import DataError

GOOD = KITTI / "training" / "image_2" / "um_000000.jpg"


def broken_files(tmp_path):
    trunc = tmp_path / "truncated.png"
    write_png(trunc, np.full((50, 60, 3), 7, np.uint8))
    trunc.write_bytes(trunc.read_bytes()[:60])
    zero = tmp_path / "zero.jpg"
    zero.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(GOOD.read_bytes()[:3000])
    return {"truncated": (trunc, "corrupt or truncated"), "zero-byte": (zero, "empty file"),
            "non-image": (text, "not an image"), "corrupt-jpeg": (corrupt, "corrupt or truncated")}


@pytest.mark.parametrize("kind", ["truncated", "zero-byte", "non-image", "corrupt-jpeg"])
def test_bad_image_error_names_the_file(tmp_path, kind):
    path, what = broken_files(tmp_path)[kind]
    with pytest.raises(DataError, match=f"{path.name}: {what}"):
        read_image(path)


def test_cli_predict_stops_or_skips_bad_images(tiny_ckpt, tmp_path, capsys):
    files = broken_files(tmp_path / "in")
    inputs = [str(GOOD)] + [str(p) for p, _ in files.values()]
    base = ["predict", *inputs, "--checkpoint", str(tiny_ckpt), "--backend", "torch"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    assert not (tmp_path / "a").exists()
    assert main(base + ["--out", str(tmp_path / "b"), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert all(p.name in out for p, _ in files.values()) and "1 frames" in out
    assert sorted(f.name for f in (tmp_path / "b").iterdir()) == ["um_000000_mask.png", "um_000000_overlay.png"]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "LA", "1"])
def test_image_modes_are_converted(tmp_path, mode):
    rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    if mode == "I;16":
        img = Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257)
    else:
        img = Image.fromarray(rgb).convert(mode)
    path = tmp_path / f"m_{mode.replace(';', '')}.png"
    img.save(path)
    out = read_image(path)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    if mode == "I;16":
        assert np.array_equal(out[:, :, 0], rgb[:, :, 0])  # 16-bit scaled back to 8 bits exactly


def test_tiny_image_is_padded_and_processed(tiny_ckpt, tmp_path):
    from roadseg.inference.predictor import Predictor

    p = write_png(tmp_path / "tiny.png", np.full((5, 7, 3), 128, np.uint8))
    prob = Predictor(tiny_ckpt).predict(read_image(p))
    assert prob.shape == (5, 7)


def test_huge_image_is_a_clear_error(tmp_path, monkeypatch):
    p = write_png(tmp_path / "huge.png", np.zeros((40, 50, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(dio, "MAX_PIXELS", 1000)
    with pytest.raises(DataError, match="huge.png: image too large"):
        read_image(p)
