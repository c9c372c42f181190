"""Reliability: videos. Missing / not a video / no video stream / zero frames / odd size / mid-run failure are in
tests/test_inference.py, faithful output (rotation, audio, containers, cut-off files) in tests/test_video.py; here
the variable frame rate clip and audio a container cannot take."""

import logging
from fractions import Fraction

import av
import numpy as np

from conftest import FakePredictor, make_clip
from roadseg.inference.predictor import load
from roadseg.inference.video import process_video


def test_variable_frame_rate_clip_keeps_every_frame_and_its_time(tiny_ckpt, tmp_path):
    gaps = [33, 33, 100, 20, 250, 33, 33, 66]
    src = make_clip(tmp_path / "vfr.mkv", gaps_ms=gaps, frame=lambda i: np.full((48, 64, 3), 30 * i, np.uint8))
    out = tmp_path / "out.mp4"
    summary = process_video(load(tiny_ckpt, backend="torch"), src, out)
    with av.open(str(out)) as c:
        times = [f.pts * f.time_base for f in c.decode(video=0)]
    assert summary.frames == 8 and summary.fps > 0
    assert times == [Fraction(sum(gaps[:i]), 1000) for i in range(8)]  # 0.702 s of frames, not 8 / 30 fps


def test_audio_the_container_cannot_take_is_dropped_with_a_warning(tmp_path, caplog):
    src = tmp_path / "opus.mkv"
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("libopus", rate=48000)
        for i in range(3):
            for p in v.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 60 * i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        for i in range(10):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="flt", layout="mono")
            af.sample_rate, af.pts = 48000, i * 960
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)

    def zeros(i, im):
        return np.zeros(im.shape[:2], np.float32)

    with caplog.at_level(logging.WARNING):
        s = process_video(FakePredictor(zeros), src, tmp_path / "out.avi")
    assert s.audio_streams == 0 and "audio stream 1 (opus) cannot go into a .avi file" in caplog.text
    with av.open(str(tmp_path / "out.avi")) as c:
        assert not c.streams.audio and sum(1 for _ in c.decode(video=0)) == 3
    assert process_video(FakePredictor(zeros), src, tmp_path / "out.mp4").audio_streams == 1  # MP4 takes Opus
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert [st.codec_context.name for st in c.streams.audio] == ["opus"]
