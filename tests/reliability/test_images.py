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
    from roadseg.inference.predictor import load

    p = write_png(tmp_path / "tiny.png", np.full((5, 7, 3), 128, np.uint8))
    prob = load(tiny_ckpt, backend="torch").predict(read_image(p)).prob
    assert prob.shape == (5, 7)


def test_huge_image_is_a_clear_error(tmp_path, monkeypatch):
    p = write_png(tmp_path / "huge.png", np.zeros((40, 50, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(dio, "MAX_PIXELS", 1000)
    with pytest.raises(DataError, match="huge.png: image too large"):
        read_image(p)


# ------------------------------------------------------------------ memory on very large images


def test_large_photo_runs_the_network_at_the_training_height(tiny_ckpt, tmp_path, monkeypatch):
    """A 64-Mpx frame never reaches the network at full size: --size auto resizes it to the height the model was
    trained on (tiny: KITTI 375 at scale 0.25); masks and overlays come back at full size. Run end to end on a cheap
    12-Mpx solid-colour PNG (the same path), spying on the network input."""
    from roadseg.inference.predictor import load
    from roadseg.inference.processing import MAX_NETWORK_PIXELS
    from roadseg.inference.runtimes.torch_runtime import TorchRuntime

    pred = load(tiny_ckpt, backend="torch")
    h, w = pred.input_size(8000, 8000)  # 64 Mpx
    assert h == round(375 * 0.25) and h * w < 0.2 * MAX_NETWORK_PIXELS
    Image.new("RGB", (4000, 3000), (90, 90, 90)).save(tmp_path / "photo.png")
    seen = []
    real = TorchRuntime.__call__
    monkeypatch.setattr(TorchRuntime, "__call__", lambda self, x: seen.append(tuple(x.shape)) or real(self, x))
    assert main(["predict", str(tmp_path / "photo.png"), "--model", str(tiny_ckpt), "--backend", "torch",
                 "--out", str(tmp_path / "o")]) == 0
    assert seen == [(1, 3, 94, 125)]  # 3000x4000 -> 94 high, the aspect ratio kept
    with Image.open(tmp_path / "o" / "photo_mask.png") as m:
        assert m.size == (4000, 3000)


def test_frame_over_the_network_input_limit_is_refused_before_running(tiny_ckpt, tmp_path, monkeypatch, capsys):
    """A panorama at the training height runs at the stored scale, so its network input grows with its width; with
    --scale 1 a 64-Mpx one would need about 30 GB: refused with what to do, before any network call."""
    from roadseg.errors import DataError
    from roadseg.inference import predictor as pmod
    from roadseg.inference import processing
    from roadseg.inference.runtimes.torch_runtime import TorchRuntime

    pred = pmod.load(tiny_ckpt, scale=1.0, backend="torch")
    monkeypatch.setattr(TorchRuntime, "__call__", lambda self, x: pytest.fail("the network ran"))
    pano = np.zeros((375, 170_000, 3), np.uint8)  # 64 Mpx, never touched (np.zeros pages are lazy)
    with pytest.raises(DataError, match=r"170000x375 frame would run at 170000x375 \(63.8 Mpx\), over the 12 Mpx "
                                        r"network input limit \(memory\): use a smaller size \(e.g. 375\)"):
        pred.predict(pano)
    monkeypatch.setattr(processing, "MAX_NETWORK_PIXELS", 100_000)  # the same through the CLI, on a small file
    write_png(tmp_path / "pano.png", np.zeros((200, 1000, 3), np.uint8))
    assert main(["predict", str(tmp_path / "pano.png"), "--model", str(tiny_ckpt), "--backend", "torch",
                 "--scale", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "over the 0.1 Mpx network input limit" in err[0]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_big_batches_run_in_chunks_under_the_network_input_limit(tiny_ckpt, monkeypatch):
    from roadseg.inference import predictor as pmod
    from roadseg.inference import processing
    from roadseg.inference.runtimes.torch_runtime import TorchRuntime

    pred = pmod.load(tiny_ckpt, size=None, backend="torch")  # the stored scale, 1/4: small network inputs
    frames = [np.full((100, 160, 3), 40 * i, np.uint8) for i in range(5)]
    one = [pred.predict(f).prob for f in frames]
    hi, wi = pred.input_size(100, 160)
    monkeypatch.setattr(processing, "MAX_NETWORK_PIXELS", 2 * hi * wi)
    calls = []
    real = TorchRuntime.__call__
    monkeypatch.setattr(TorchRuntime, "__call__", lambda self, x: calls.append(x.shape[0]) or real(self, x))
    batched = [r.prob for r in pred.predict_batch(frames)]
    assert calls == [2, 2, 1]
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(batched, one))


def test_out_of_memory_in_the_runtime_is_a_one_line_error(tiny_ckpt, tmp_path, monkeypatch, capsys):
    import re

    from roadseg.inference import predictor as pmod
    from roadseg.inference.runtimes.torch_runtime import TorchRuntime

    class RuntimeException(Exception):  # what onnxruntime raises (not a RuntimeError subclass)
        pass

    def oom(self, x):
        raise RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
                               "running Conv node. Failed to allocate memory for requested buffer of size 16777216000")

    monkeypatch.setattr(TorchRuntime, "__call__", oom)
    assert main(["predict", str(GOOD), "--model", str(tiny_ckpt), "--backend", "torch", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.fullmatch(r"error: out of memory running the network on 1 frame\(s\) of \d+x94: use a "
                                          r"smaller size, scale or batch size", err[0]), err
    monkeypatch.setattr(TorchRuntime, "__call__", lambda self, x: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"):  # other failures are not dressed up as memory
        pmod.load(tiny_ckpt, backend="torch").predict(read_image(GOOD))
