"""Image and video inference on real frames and the real dash-cam clip; generated files for broken inputs."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import DATA, KITTI, write_png
from roadseg.cli import main
from roadseg.data import read_image
from roadseg.errors import DataError, VideoError
from roadseg.inference.draw import overlay
from roadseg.inference.pipeline import predict_images
from roadseg.inference.predictor import load
from roadseg.inference.video import process_video
from roadseg.metrics import quantize

FRAME = KITTI / "training" / "image_2" / "um_000000.jpg"
VIDEO = DATA / "video" / "solidWhiteRight.mp4"


def test_predictor_gives_full_resolution_probabilities(tiny_ckpt):
    img = read_image(FRAME)
    p = load(tiny_ckpt, backend="torch")
    assert p.scale == 0.25
    prob = p.predict(img).prob
    assert prob.shape == img.shape[:2] and prob.dtype == np.float32
    assert 0 <= prob.min() and prob.max() <= 1 and prob.std() > 0
    batch = p.predict_batch([img, img[:, ::-1].copy()])
    assert np.allclose(batch[0].prob, prob, atol=1e-5)


def test_flip_tta_averages_the_frame_and_its_mirror(lite_ckpt):
    img = read_image(FRAME)[:200, :300]
    plain, tta = load(lite_ckpt, backend="torch"), load(lite_ckpt, tta=True, backend="torch")
    a, b = plain.predict(img).prob, plain.predict(img[:, ::-1].copy()).prob[:, ::-1]
    assert np.abs(a - b).max() > 1e-4  # the model is not mirror-symmetric, so TTA changes something
    assert np.allclose(tta.predict(img).prob, 0.5 * (a + b), atol=1e-6)


def test_overlay_tints_road_and_draws_boundary():
    img = np.zeros((6, 6, 3), np.uint8)
    road = np.zeros((6, 6), bool)
    road[2:, :] = True
    ov = overlay(img, road)
    assert tuple(ov[0, 0]) == (0, 0, 0)
    assert tuple(ov[2, 3]) == (255, 255, 0)  # top row of the road region: boundary
    assert ov[4, 3, 0] > 0 and ov[4, 3, 1] == 0  # interior: magenta tint


def test_predict_writes_overlay_mask_and_kitti_probs(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["predict", str(FRAME), str(KITTI / "testing" / "image_2" / "uu_000066.png"), "--checkpoint",
               str(tiny_ckpt), "--backend", "torch", "--precision", "fp32", "--out", str(out), "--probs"])
    assert rc == 0 and f"2 frames -> {out} (torch fp32; road where" in capsys.readouterr().out
    for f in ("um_000000_overlay.png", "um_000000_mask.png", "um_road_000000.png", "uu_road_000066.png"):
        assert (out / f).is_file(), f
    probs = read_image(out / "um_road_000000.png")[:, :, 0]
    want = quantize(load(tiny_ckpt, backend="torch").predict(read_image(FRAME)).prob)
    assert probs.shape == want.shape and np.abs(probs.astype(int) - want).max() <= 1


def test_bad_image_among_good_stops_before_writing_or_is_skipped(tiny_ckpt, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    p = load(tiny_ckpt, backend="torch")
    with pytest.raises(DataError, match="broken.png"):
        predict_images(p, [FRAME, bad], tmp_path / "a")
    assert not (tmp_path / "a").exists()
    res = predict_images(p, [FRAME, bad], tmp_path / "b", skip_bad=True)
    assert res["written"] == [str(FRAME)] and res["skipped"][0][0] == str(bad)


def test_many_inputs_are_checked_first_then_decoded_again_beyond_the_memory_bound(tiny_ckpt, tmp_path, monkeypatch):
    """Frames past KEEP_DECODED_BYTES are not held between the check and the prediction: decoded again, the same
    outputs; a bad input after them still stops the run before anything is written."""
    import roadseg.inference.pipeline as pipeline

    frames = []
    for i in range(5):
        frames.append(write_png(tmp_path / "in" / f"f{i}.png", np.full((40, 60, 3), 40 * i, np.uint8)))
    p, p2 = load(tiny_ckpt, backend="torch"), load(tiny_ckpt, backend="torch", batch_size=2)
    predict_images(p, frames, tmp_path / "all_kept")
    reads = []
    real = pipeline.read_image
    monkeypatch.setattr(pipeline, "read_image", lambda path: reads.append(Path(path).name) or real(path))
    monkeypatch.setattr(pipeline, "KEEP_DECODED_BYTES", 2 * 40 * 60 * 3)  # room for two frames
    predict_images(p2, frames, tmp_path / "bounded")
    assert reads == [f"f{i}.png" for i in range(5)] + ["f2.png", "f3.png", "f4.png"]
    for f in (tmp_path / "all_kept").iterdir():
        assert (tmp_path / "bounded" / f.name).read_bytes() == f.read_bytes(), f.name
    bad = tmp_path / "in" / "zz.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    with pytest.raises(DataError, match="zz.png"):
        predict_images(p, frames + [bad], tmp_path / "c")
    assert not (tmp_path / "c").exists()
    # a frame that turns bad between the check and its batch: skipped with skip_bad, else named with what was written
    calls = {}

    def flaky(path):
        calls[path] = calls.get(path, 0) + 1
        if Path(path).name == "f3.png" and calls[path] == 2:
            raise DataError(f"{path}: truncated")
        return real(path)

    monkeypatch.setattr(pipeline, "read_image", flaky)
    ticks = []

    class Bar:  # the progress bar reaches its total: the skipped frame counts as done
        def __init__(self, total, _desc):
            ticks.append(total)

        def update(self, n):
            ticks.append(n)

        def close(self):
            pass

    res = predict_images(p2, frames, tmp_path / "d", skip_bad=True, progress=Bar)
    assert res["written"] == [str(f) for f in frames if f.name != "f3.png"] and res["skipped"][0][0] == str(frames[3])
    assert ticks[0] == len(frames) == sum(ticks[1:])
    calls.clear()
    with pytest.raises(DataError, match=r"f3.png: truncated \(it changed after the check; 2 frames were written to"):
        predict_images(p2, frames, tmp_path / "e")


@pytest.mark.parametrize("mode,array", [
    ("L", np.full((40, 50), 90, np.uint8)),
    ("RGBA", np.full((40, 50, 4), 200, np.uint8)),
    ("I;16", np.full((40, 50), 40000, np.uint16)),
    ("RGB", np.full((20, 9, 3), 10, np.uint8)),  # tiny: padded inside the model
])
def test_odd_image_kinds_are_converted(tiny_ckpt, tmp_path, mode, array):
    path = write_png(tmp_path / f"x_{mode.replace(';', '')}.png", array)
    img = read_image(path)
    assert img.dtype == np.uint8 and img.shape == (*array.shape[:2], 3)
    if mode == "I;16":
        assert img[0, 0, 0] == 40000 * 255 // 65535
    res = predict_images(load(tiny_ckpt, backend="torch"), [path], tmp_path / "out")
    assert res["written"] == [str(path)]


def _frames(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        return frames, float(s.average_rate), s.codec_context.name


def test_video_real_clip_is_annotated_at_same_size_and_rate(tiny_ckpt, tmp_path):
    out = tmp_path / "out.mp4"
    s = process_video(load(tiny_ckpt, backend="torch", batch_size=4), VIDEO, out, max_frames=10)
    frames, fps, codec = _frames(out)
    assert s.frames == 10 and len(frames) == 10 and frames[0].shape == (540, 960, 3)
    assert fps == 25.0 and codec == "h264"
    assert s.model_s > 0 and s.wall_s >= s.model_s
    sbs = process_video(load(tiny_ckpt, backend="torch"), VIDEO, tmp_path / "sbs.mp4", side_by_side=True, max_frames=3)
    assert _frames(tmp_path / "sbs.mp4")[0][0].shape == (540, 1920, 3) and sbs.frames == 3
    assert s.written == (960, 540) and "written" not in s.text()  # the summary names the written size when it differs
    assert sbs.written == (1920, 540) and "(960x540 @ 25.00 fps, network input" in sbs.text()
    assert ", written 1920x540)" in sbs.text()


def make_video(path, w, h, n, rate=10, audio_only=False):
    with av.open(str(path), "w") as c:
        if audio_only:
            s = c.add_stream("aac", rate=8000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 8000
            for p in s.encode(frame):
                c.mux(p)
            for p in s.encode():
                c.mux(p)
            return path
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        c.start_encoding()
        for i in range(n):
            arr = np.full((h, w, 3), (i * 20) % 255, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_video_odd_size_is_padded_to_even_yuv420p(tiny_ckpt, tmp_path):
    src = make_video(tmp_path / "odd.mp4", 33, 25, 5)
    process_video(load(tiny_ckpt, backend="torch"), src, tmp_path / "o.mp4")
    frames, fps, _ = _frames(tmp_path / "o.mp4")  # the last row and column repeated once: 4:2:0 plays everywhere
    assert len(frames) == 5 and frames[0].shape == (26, 34, 3) and fps == 10.0


def test_video_errors_leave_no_output(tiny_ckpt, tmp_path):
    p = load(tiny_ckpt, backend="torch")
    out = tmp_path / "out.mp4"
    with pytest.raises(VideoError, match="not found"):
        process_video(p, tmp_path / "missing.mp4", out)
    txt = tmp_path / "notes.mp4"
    txt.write_text("not a video at all")
    with pytest.raises(VideoError, match="cannot open as a video"):
        process_video(p, txt, out)
    with pytest.raises(VideoError, match="no video stream"):
        process_video(p, make_video(tmp_path / "a.mp4", 0, 0, 0, audio_only=True), out)
    with pytest.raises(VideoError, match="no frames"):
        process_video(p, make_video(tmp_path / "empty.mkv", 32, 32, 0), out)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.mp4", "empty.mkv", "notes.mp4"]


def test_failure_mid_video_leaves_no_truncated_file(tiny_ckpt, tmp_path, monkeypatch):
    p = load(tiny_ckpt, backend="torch", batch_size=2)
    calls = {"n": 0}
    real = p.probabilities

    def flaky(batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real(batch)

    monkeypatch.setattr(p, "probabilities", flaky)
    with pytest.raises(RuntimeError, match="simulated"):
        process_video(p, VIDEO, tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []


def test_probability_png_uses_kitti_naming_only_for_kitti_names(tiny_ckpt, tmp_path):
    img = write_png(tmp_path / "in" / "my_photo.png", read_image(FRAME)[:64, :96])
    predict_images(load(tiny_ckpt, backend="torch"), [img], tmp_path / "out", probs=True)
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["my_photo_mask.png", "my_photo_overlay.png",
                                                                    "my_photo_prob.png"]


def test_network_input_size_follows_the_training_frames_height(tiny_ckpt):
    """size 'auto': frames near the training height (KITTI: 375) run at the stored scale (0.25 here); others are
    resized so the network sees them at the same height (94 px); an explicit size wins; a scale applies at the
    training height (so a 540-line frame at scale 0.5 runs 188 high, as a KITTI frame at that scale would)."""
    from roadseg.errors import RoadsegError
    from roadseg.inference.predictor import load
    from roadseg.inference.processing import preprocess

    auto = load(tiny_ckpt, backend="torch")
    assert auto.input_size(375, 1242) == (94, 310) and auto.input_size(370, 1226) == (92, 306)  # stored scale
    assert auto.input_size(540, 960) == (94, 167) and auto.input_size(3000, 4000) == (94, 125)  # the training height
    assert load(tiny_ckpt, size=200, backend="torch").input_size(540, 960) == (200, 356)
    assert load(tiny_ckpt, scale=0.5, backend="torch").input_size(540, 960) == (188, 334)
    assert load(tiny_ckpt, scale=0.5, backend="torch").input_size(375, 1242) == (188, 621)
    assert load(tiny_ckpt, scale=0.5, size="native", backend="torch").input_size(540, 960) == (270, 480)
    assert load(tiny_ckpt, size=None, backend="torch").input_size(540, 960) == (135, 240)
    frame = np.zeros((540, 960, 3), np.uint8)
    assert preprocess([frame], auto.settings).shape == (1, 3, 94, 167) and auto.predict(frame).prob.shape == (540, 960)
    with pytest.raises(RoadsegError, match=r"size 8: must be a number in \[32, 8192\]"):
        load(tiny_ckpt, size=8, backend="torch")
    with pytest.raises(RoadsegError, match="scale 0.5 and size 200 exclude each other"):
        load(tiny_ckpt, size=200, scale=0.5, backend="torch")


def test_top_crop_runs_the_network_below_the_cut_and_zeroes_the_rows_above(tiny_ckpt):
    """data.top_crop, stored in the model file: the network sees a frame below its top int(H * top_crop) rows (112 of
    375 at 0.3) at the frame's own scale; those rows are probability 0 and the rest is exactly the network on the
    lower part alone; --top-crop 0 gives whole frames back; an out-of-range value is refused."""
    from roadseg.errors import RoadsegError
    from roadseg.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tiny_ckpt)
    ckpt["config"]["data"]["top_crop"] = 0.3
    cut = load(ckpt, backend="torch")
    assert cut.settings.top_crop == 0.3 and cut.settings.top(375) == 112
    assert cut.input_size(375, 1242) == (66, 310)  # 263 rows at the stored scale 0.25
    assert cut.input_size(540, 960) == (66, 167)  # a 540-line frame: 378 rows brought to the training height's scale
    frame = read_image(FRAME)
    prob = cut.predict(frame).prob
    ref = load(tiny_ckpt, backend="torch", size=None).predict(frame[112:]).prob  # 263x1242 at 0.25: 66x310
    assert prob.shape == (375, 1242) and not prob[:112].any()
    np.testing.assert_allclose(prob[112:], ref, atol=1e-6)
    assert load(ckpt, backend="torch", top_crop=0).input_size(375, 1242) == (94, 310)
    with pytest.raises(RoadsegError, match=r"top_crop 0.95: must be a number in \[0.0, 0.9\]"):
        load(ckpt, backend="torch", top_crop=0.95)


def test_far_zoom_averages_a_zoomed_pass_over_the_far_band(tiny_ckpt):
    """far_zoom 2: the rows between the top crop (112 of 375 at 0.3) and 70% of the height (262) are run again on
    their own at twice the first pass's scale; the two are averaged there, the zoomed pass's weight falling from 0.5
    to 0 over the band's last 18 rows (5% of 375); the rows above stay 0 and those below are the first pass's."""
    from roadseg.errors import RoadsegError
    from roadseg.inference.processing import far_weights
    from roadseg.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tiny_ckpt)
    ckpt["config"]["data"]["top_crop"] = 0.3
    zoom = load(ckpt, backend="torch", far_zoom=2)
    st = zoom.settings
    assert st.far_band(375) == (112, 262)
    z = st.zoomed(375)
    assert (z.scale, z.size, z.top_crop, z.far_zoom) == (0.5, None, 0.0, 0.0)
    assert st.zoomed(750).scale == 2 * 94 / 750  # a frame twice the training height: brought to its 94 rows, x2
    w = far_weights(375, (112, 262))
    assert w.shape == (150,) and (w[:132] == 0.5).all() and w[-1] == 0 and w[-18] == 0.5
    np.testing.assert_allclose(w[-4:], [1.5 / 17, 1 / 17, 0.5 / 17, 0], atol=1e-7)
    frame = read_image(FRAME)
    prob = zoom.predict(frame).prob
    first = load(ckpt, backend="torch").predict(frame).prob
    band = load(tiny_ckpt, backend="torch", size=None, scale=0.5).predict(frame[112:262]).prob  # 150 rows at 0.5
    assert np.abs(band - first[112:262]).max() > 1e-3  # the zoomed pass sees something else
    assert not prob[:112].any()
    np.testing.assert_allclose(prob[112:262], first[112:262] + w[:, None] * (band - first[112:262]), atol=1e-6)
    np.testing.assert_array_equal(prob[262:], first[262:])
    assert st.label() == "torch fp32, far zoom 2x" and st.replace(tta=True).label() == "torch fp32, flip TTA, far zoom 2x"
    assert st.record()["far_zoom"] == 2 and st.record()["top_crop"] == 0.3
    with pytest.raises(RoadsegError, match=r"far_zoom 5: must be a number in \[1.0, 4.0\]"):
        load(ckpt, backend="torch", far_zoom=5)
    with pytest.raises(RoadsegError, match=r"far_zoom 1: the band again at the same scale adds work and nothing else"):
        load(ckpt, backend="torch", far_zoom=1)


def test_release_stores_the_top_crop_its_users_run_with(tiny_ckpt, tmp_path):
    """roadseg release --top-crop: a file trained on whole frames ships with a top crop (beside its config, which
    keeps data.top_crop 0); torch and its ONNX graph use it, a later release of it keeps it and its calibration
    frames and the name of the checkpoint it came from, and a bad value is a one-line error with no file written."""
    from roadseg.cli import main
    from roadseg.models.checkpoint import load_checkpoint, release
    from roadseg.optimize.cache import optimized_model
    from roadseg.optimize.runtime import read_meta

    assert main(["release", str(tiny_ckpt), "--out", str(tmp_path / "rel.pt"), "--top-crop", "0.3"]) == 0
    ck = load_checkpoint(tmp_path / "rel.pt")
    assert ck["top_crop"] == 0.3 and ck["config"]["data"]["top_crop"] == 0.0
    assert load(ck, backend="torch").settings.top_crop == 0.3
    assert read_meta(optimized_model(ck, "fp32")[0])["top_crop"] == 0.3
    again = load_checkpoint(release(tmp_path / "rel.pt", tmp_path / "again.pt"))
    assert again["top_crop"] == 0.3 and all(map(torch.equal, again["calibration"], ck["calibration"]))
    assert again["source"] == ck["source"] == Path(tiny_ckpt).name and again["epoch"] == ck["epoch"]
    assert main(["release", str(tiny_ckpt), "--out", str(tmp_path / "bad.pt"), "--top-crop", "1.5"]) != 0
    assert not (tmp_path / "bad.pt").exists()


def test_masks_and_overlays_use_the_models_operating_threshold(tiny_ckpt, tmp_path):
    from PIL import Image

    from roadseg.errors import RoadsegError
    from roadseg.models.checkpoint import release

    rel = release(tiny_ckpt, tmp_path / "rel.pt", calibration=[], threshold=0.51)
    pred = load(rel, backend="torch")
    assert (pred.threshold, pred.threshold_source) == (0.51, "the model's validation operating point")
    assert load(rel, threshold=0.3, backend="torch").threshold == 0.3 and load(tiny_ckpt, backend="torch").threshold == 0.5
    with pytest.raises(RoadsegError, match=r"threshold 1.5: must be strictly between 0 and 1"):
        load(rel, threshold=1.5, backend="torch")
    frame = KITTI / "training" / "image_2" / "um_000000.jpg"
    prob = pred.predict(read_image(frame)).prob
    assert ((prob >= 0.5) != (prob >= 0.51)).any()  # so the mask below shows which threshold was used
    predict_images(pred, [frame], tmp_path / "out")
    mask = np.asarray(Image.open(tmp_path / "out" / "um_000000_mask.png"))
    assert np.array_equal(mask > 0, quantize(prob) >= 130)  # the 8-bit level of 0.51: round(255 * 0.51)


def test_python_api_frames_pil_batches_and_clear_refusals(tiny_ckpt):
    """The API's frame: (H, W, 3) uint8 RGB or a PIL image; (N, H, W, 3) is N frames; floats and other shapes are
    refused with what to do (the README's example runs as written)."""
    from PIL import Image

    import roadseg
    from roadseg.errors import RoadsegError

    model = roadseg.load(tiny_ckpt, backend="torch")
    frame = read_image(KITTI / "training" / "image_2" / "um_000000.jpg")
    prob = model.predict(frame).prob
    assert prob.shape == frame.shape[:2] and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1
    assert np.array_equal(model.predict(Image.fromarray(frame)).prob, prob)
    assert np.array_equal(model.predict(Image.fromarray(frame).convert("RGBA")).prob, prob)
    batch = model.predict_batch(np.stack([frame, frame[:, ::-1]]))
    assert len(batch) == 2 and np.allclose(batch[0].prob, prob, atol=1e-5)  # batched kernels round differently
    for bad, msg in [(frame.astype(np.float32) / 255, "uint8 RGB 0-255, got float32"), (frame[..., 0], "RGB frame, got shape"),
                     ("frame.png", "got str")]:
        with pytest.raises(RoadsegError, match=msg):
            model.predict(bad)


def test_masks_predict_writes_score_exactly_evals_f_at_the_threshold(tmp_path):
    """One road decision: the masks `predict` writes, scored by hand against the ground truth, give exactly the F
    that `eval` reports at the model's threshold (kitti-lite0 at its stored operating point, on 3 real frames)."""
    import json
    import shutil

    from roadseg.config import DataConfig
    from roadseg.data import build_dataset

    root = tmp_path / "kitti"
    names = ["um_000010", "umm_000020", "uu_000030"]
    for sub in ("image_2", "gt_image_2"):
        (root / "training" / sub).mkdir(parents=True)
    for n in names:
        shutil.copy(KITTI / "training" / "image_2" / f"{n}.jpg", root / "training" / "image_2")
        cat, num = n.split("_")
        shutil.copy(KITTI / "training" / "gt_image_2" / f"{cat}_road_{num}.png", root / "training" / "gt_image_2")
    args = ["--model", "kitti-lite0", "--backend", "torch"]
    assert main(["predict", *[str(root / "training" / "image_2" / f"{n}.jpg") for n in names], "--out",
                 str(tmp_path / "pred"), *args]) == 0
    assert main(["eval", "--data", str(root), "--split", "all", "--out", str(tmp_path / "eval"), "--no-report",
                 *args]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["threshold_used"] == 0.537 and metrics["threshold_source"] == "the model's validation operating point"
    ds = build_dataset(DataConfig(root=str(root)), "all")
    tp = fp = fn = 0
    for i in range(len(ds)):
        s = ds[i]
        mask = read_image(tmp_path / "pred" / f"{s['name']}_mask.png")[:, :, 0] == 255
        t = s["target"].numpy()
        tp += int((mask & (t == 1)).sum())
        fp += int((mask & (t == 0)).sum())
        fn += int((~mask & (t == 1)).sum())
    assert tp > 0 and fp > 0 and fn > 0  # a real decision, with errors of both kinds
    at = metrics["at_threshold_used"]["all"]
    assert (at["TP"], at["FP"], at["FN"]) == (tp, fp, fn)
    assert at["F"] == 2 * tp / (2 * tp + fp + fn)


def test_read_only_frames_are_copied_not_warned_about():
    """np.asarray of a PIL image is read-only: the tensor made of it is a writable copy (torch warns on a read-only
    array), while a writable contiguous frame is shared, not copied; overlay gives the same picture for both."""
    from roadseg.inference.draw import overlay
    from roadseg.inference.processing import as_tensor

    frame = read_image(FRAME)
    ro = frame.copy()
    ro.setflags(write=False)
    t = as_tensor(ro)
    assert t.numpy().flags.writeable and not np.shares_memory(t.numpy(), ro)
    np.testing.assert_array_equal(t.numpy(), frame)
    assert np.shares_memory(as_tensor(frame).numpy(), frame)
    mask = frame[..., 0] > 100
    ro_mask = mask.copy()
    ro_mask.setflags(write=False)
    np.testing.assert_array_equal(overlay(ro, ro_mask, 0.5), overlay(frame, mask, 0.5))
