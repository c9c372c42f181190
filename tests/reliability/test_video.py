"""Reliability: videos. Missing / not a video / no video stream / zero frames / odd size / mid-run failure are in
tests/test_inference.py; here the variable frame rate clip."""

from fractions import Fraction

import av
import numpy as np

from roadseg.inference.pipeline import process_video
from roadseg.inference.predictor import Predictor


def test_variable_frame_rate_clip_keeps_every_frame(tiny_ckpt, tmp_path):
    src = tmp_path / "vfr.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i, gap in enumerate([33, 33, 100, 20, 250, 33, 33, 66]):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 30 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            t += gap
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    out = tmp_path / "out.mp4"
    summary = process_video(Predictor(tiny_ckpt), src, out)
    with av.open(str(out)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert summary.frames == 8 and n == 8 and summary.fps > 0
