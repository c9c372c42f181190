"""Video: faithful output (timestamps, rotation, audio, odd sizes, containers, cut-off inputs), smoothing and the
flicker measure, and the overlay legend. Clips are generated here with PyAV: tiny frames, a few of them."""

import json
import logging
from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import FakePredictor, make_clip
from roadseg.cli import main
from roadseg.errors import VideoError
from roadseg.inference.draw import _legend, overlay
from roadseg.inference.video import process_video


def frame_times(path):
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(video=0)]


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_timestamps_are_copied(tmp_path, ext):
    src = make_clip(tmp_path / "vfr.mkv", gaps_ms=(33, 100, 20, 250, 33, 66, 40))
    out = tmp_path / f"out.{ext}"
    s = process_video(FakePredictor(batch_size=3), src, out)
    times = frame_times(out)
    assert times == frame_times(src) == [Fraction(t, 1000) for t in (0, 33, 133, 153, 403, 436, 502)]
    assert s.frames == 7


def test_odd_frame_size_is_padded_to_even_yuv420p(tmp_path):
    def pattern(i):  # a gradient, so the padded column / row is checkably a copy of the last one
        return np.broadcast_to(np.arange(33, dtype=np.uint8)[None, :, None] * 7, (25, 33, 3)).copy()

    src = make_clip(tmp_path / "odd.mp4", w=33, h=25, gaps_ms=(40,) * 3, frame=pattern)
    for side_by_side, width in ((False, 34), (True, 66)):
        out = tmp_path / f"o{int(side_by_side)}.mp4"
        s = process_video(FakePredictor(lambda i, im: np.zeros(im.shape[:2], np.float32)), src, out,
                          side_by_side=side_by_side)
        with av.open(str(out)) as c:
            v = c.streams.video[0]
            assert v.codec_context.pix_fmt == "yuv420p" and (v.width, v.height) == (width, 26)
            f = next(c.decode(v)).to_ndarray(format="rgb24").astype(int)
        assert s.width == 33 and s.height == 25 and s.written == (width, 26)  # the input's size and the written one
        assert np.abs(f[:25, :33] - pattern(0)).mean() < 3  # the frame itself, unscaled, at its place
        assert np.abs(f[:25, -1] - pattern(0)[:, -1]).mean() < 4  # the added column repeats the last one
        assert np.abs(f[25, :33] - pattern(0)[-1]).mean() < 4  # and the added row the last row


def test_rotated_input_reaches_the_model_upright_and_keeps_its_rotation(tmp_path):
    def marked(i):  # stored frame 64x48 with a white block in its top-right corner
        arr = np.zeros((48, 64, 3), np.uint8)
        arr[:12, -16:] = 255
        return arr

    src = make_clip(tmp_path / "rot.mp4", gaps_ms=(40,) * 3, rotation=90, frame=marked)
    for ext in ("mp4", "mkv", "avi"):
        fake = FakePredictor()
        s = process_video(fake, src, tmp_path / f"out.{ext}")
        # displayed = stored turned 90 degrees counter-clockwise: 48 wide, 64 high, the block top-left
        f = fake.frames[0]
        assert f.shape == (64, 48, 3) and f[:16, :12].mean() > 200 and f[16:].mean() < 30
        assert (s.rotation, s.width, s.height) == (90, 48, 64)
        with av.open(str(tmp_path / f"out.{ext}")) as c:
            out = next(c.decode(video=0))
        if ext == "avi":  # AVI has no display matrix: written upright
            assert (out.rotation, out.width, out.height) == (0, 48, 64)
        else:  # stored as the input is, with the same display matrix
            assert (out.rotation, out.width, out.height) == (90, 64, 48)


@pytest.mark.parametrize("ext", ["mp4", "mkv", "avi"])
def test_audio_is_copied_and_the_extension_picks_the_container(tmp_path, ext):
    src = make_clip(tmp_path / "a.mp4", audio=True)
    with av.open(str(src)) as c:
        n_in = sum(1 for p in c.demux(audio=0) if p.size and (ext == "mp4" or (p.pts or 0) >= 0))
    s = process_video(FakePredictor(batch_size=4), src, tmp_path / f"out.{ext}")
    with av.open(str(tmp_path / f"out.{ext}")) as c:
        assert c.format.name.split(",")[0] == {"mp4": "mov", "mkv": "matroska", "avi": "avi"}[ext]
        assert [st.codec_context.name for st in c.streams.audio] == ["aac"]
        n_out = sum(1 for p in c.demux(audio=0) if p.size)
    assert n_out == n_in > 0 and s.audio_streams == 1 and len(frame_times(tmp_path / f"out.{ext}")) == 6


def test_unknown_extension_is_refused_before_any_work(tmp_path, capsys):
    src = make_clip(tmp_path / "in.mp4", gaps_ms=(40,) * 2)
    fake = FakePredictor()
    for name in ("out.mov", "out.gif", "out"):
        with pytest.raises(VideoError, match=r"\.mp4, \.mkv, \.avi"):
            process_video(fake, src, tmp_path / name)
    # the CLI refuses before loading a model (this checkpoint does not exist)
    assert main(["video", str(src), "--out", str(tmp_path / "x.webm"), "--checkpoint", str(tmp_path / "none.pt")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.webm" in err[0] and ".mp4, .mkv, .avi" in err[0]
    assert fake.frames == [] and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_input_cut_short_of_its_header_warns_and_keeps_what_was_read(tmp_path, caplog):
    full = make_clip(tmp_path / "full.mp4", gaps_ms=(40,) * 30, options={"movflags": "faststart"})
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])  # the header (moov, first) still says 30 frames
    with caplog.at_level(logging.WARNING):
        s = process_video(FakePredictor(), cut, tmp_path / "out.mp4")
    assert 0 < s.frames < 30 and len(s.warnings) == 1 and "header says 30" in s.warnings[0]
    assert "header says 30" in caplog.text
    assert len(frame_times(tmp_path / "out.mp4")) == s.frames
    assert process_video(FakePredictor(), full, tmp_path / "full_out.mp4").warnings == []


def alternating(i, im):
    """Top half always road; lower half road on even frames only: per-frame masks flicker in the lower half."""
    p = np.full(im.shape[:2], 0.9, np.float32)
    p[im.shape[0] // 2 :] = 0.8 if i % 2 == 0 else 0.3
    return p


def test_smoothing_steadies_the_masks_and_the_flicker_is_measured(tmp_path):
    gray = lambda i: np.full((48, 64, 3), 128, np.uint8)  # noqa: E731
    src = make_clip(tmp_path / "in.mp4", gaps_ms=(40,) * 8, frame=gray)
    raw = process_video(FakePredictor(alternating), src, tmp_path / "raw.mp4", smooth=0)
    # every pair of frames flips the lower half: half the frame, all of its lower third
    assert (raw.flicker, raw.flicker_lower, raw.agreement) == (0.5, 1.0, 1.0)
    assert raw.flicker_unsmoothed == 0.5 and raw.smooth == 0
    sm = process_video(FakePredictor(alternating), src, tmp_path / "smooth.mp4", smooth=0.8)
    # with S = 0.8 the lower half stays above 0.5 (0.8, 0.70, 0.72, 0.64, ...): no flips; odd frames differ from
    # their own mask in the lower half, so 3/4 of the pixels agree
    assert (sm.flicker, sm.flicker_lower) == (0.0, 0.0)
    assert (sm.flicker_unsmoothed, sm.flicker_unsmoothed_lower) == (0.5, 1.0) and sm.agreement == 0.75
    # road share: per frame the top half plus, on 4 of 8 frames, the lower half = 3/4; smoothed: every pixel
    assert (raw.road_share, sm.road_share, sm.road_share_unsmoothed) == (0.75, 1.0, 0.75)
    assert "flicker 0.00%" in sm.text() and "smoothing 0.8" in sm.text()
    json.dumps(sm.to_dict())
    with av.open(str(tmp_path / "raw.mp4")) as a, av.open(str(tmp_path / "smooth.mp4")) as b:
        fa = [f.to_ndarray(format="rgb24") for f in a.decode(video=0)]
        fb = [f.to_ndarray(format="rgb24") for f in b.decode(video=0)]
    # frame 1, lower half: untinted grey without smoothing, magenta-tinted (red up, green down) with it
    assert abs(int(fa[1][40, 32, 0]) - 128) < 10 and fb[1][40, 32, 0] > 165 and fb[1][40, 32, 1] < 100
    with pytest.raises(VideoError, match="smooth 1"):
        process_video(FakePredictor(), src, tmp_path / "x.mp4", smooth=1.0)


def test_cli_video_smooth_and_summary(tiny_ckpt, tmp_path, capsys):
    src = make_clip(tmp_path / "in.mp4", gaps_ms=(40,) * 3)
    out, summary = tmp_path / "out.mkv", tmp_path / "s.json"
    rc = main(["video", str(src), "--out", str(out), "--checkpoint", str(tiny_ckpt), "--backend", "torch",
               "--precision", "fp32", "--smooth", "0.5", "--no-legend", "--summary", str(summary), "--far-zoom", "2"])
    assert rc == 0, capsys.readouterr().err
    d = json.loads(summary.read_text())
    assert d["smooth"] == 0.5 and d["frames"] == 3 and 0 <= d["flicker"] <= 1 and 0 <= d["flicker_lower"] <= 1
    assert (d["backend"], d["precision"], d["far_zoom"], d["tta"]) == ("torch", "fp32", 2.0, False)
    line = capsys.readouterr().out
    assert "flicker" in line and "; torch fp32, far zoom 2x; road where" in line
    assert main(["video", str(src), "--out", str(tmp_path / "y.mp4"), "--checkpoint", str(tiny_ckpt),
                 "--smooth", "1.5"]) != 0
    assert "smooth 1.5" in capsys.readouterr().err and not (tmp_path / "y.mp4").exists()


def test_overlay_legend_is_drawn_once_and_can_be_turned_off():
    img = np.full((375, 1242, 3), 90, np.uint8)
    prob = np.zeros((375, 1242), bool)
    prob[250:] = True
    plain = overlay(img, prob, 0.53, legend=False)
    _legend.cache_clear()
    with_key = [overlay(img, prob, 0.53) for _ in range(3)]
    assert _legend.cache_info().misses == 1 and _legend.cache_info().hits == 2  # drawn once, pasted after
    changed = np.argwhere((with_key[0] != plain).any(-1))
    (y0, x0), (y1, x1) = changed.min(0), changed.max(0)
    assert y0 < 10 and x0 < 10 and y1 < 60 and x1 < 260  # a small box in the top-left corner
    assert (with_key[0][80:] == plain[80:]).all()
    box = with_key[0][: y1 + 1, : x1 + 1].reshape(-1, 3)
    assert (box.min(-1) > 200).any()  # white label text
    assert (box == (255, 255, 0)).all(-1).any()  # the swatch's yellow frame, the boundary colour
    assert (overlay(img[:80, :120], prob[:80, :120], 0.53) == overlay(img[:80, :120], prob[:80, :120], 0.53,
                                                                      legend=False)).all()  # too small: none
    assert (overlay(img, prob) == overlay(img, prob, None, 0.45, True)).all()  # no threshold: no legend
    with pytest.raises(TypeError, match="road mask"):
        overlay(img, prob.astype(np.float32))  # probabilities are decided once (Result.mask), not here
