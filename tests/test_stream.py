"""Live streams: the machine serves itself an MPEG-TS stream over TCP (a child process muxing generated frames to
tcp://127.0.0.1:PORT?listen=1), and `roadseg video` reads it as a camera would be read: no frame count, no end, a
stall ends it after the timeout, Ctrl-C closes the output as a playable file, --realtime drops frames when the model
falls behind. Every wait is bounded."""

import json
import socket
import subprocess
import sys
import textwrap
import time

import av
import numpy as np
import pytest

from conftest import FakePredictor, make_clip
from roadseg.cli import main
from roadseg.errors import VideoError
from roadseg.inference.video import process_video

SERVER = textwrap.dedent("""
    import sys, time
    import av, numpy as np
    port, frames, fps, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    out = av.open(f"tcp://127.0.0.1:{port}?listen=1&listen_timeout=20000", "w", format="mpegts")
    s = out.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    s.options = {"tune": "zerolatency", "preset": "ultrafast"}
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 9) % 250, np.uint8), format="rgb24")
        f.pts = i
        for p in s.encode(f):
            out.mux(p)
        time.sleep(1 / fps)
    time.sleep(hold)  # a stall: the connection stays open, nothing more arrives
    for p in s.encode():
        out.mux(p)
    out.close()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stream():
    """start(frames, fps, hold) -> the URL of a stream served by a child process (killed at the end)."""
    procs = []

    def start(frames=12, fps=50.0, hold=30.0):
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(frames), str(fps), str(hold)]))
        return f"tcp://127.0.0.1:{port}"

    yield start
    for p in procs:
        p.kill()
        p.wait(timeout=10)


def until_listening(run, attempts=100):
    """Call run() until the server is listening (a refused connection is 'cannot open the stream')."""
    for _ in range(attempts):
        try:
            return run()
        except VideoError as exc:
            if "cannot open the stream" not in str(exc):
                raise
            time.sleep(0.1)
    raise AssertionError("the test server never listened")


def decoded_frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_live_stream_to_a_playable_file_until_it_stalls(stream, tiny_ckpt, tmp_path, capsys, caplog):
    url = stream(frames=12, hold=30)
    out, summary = tmp_path / "live.mp4", tmp_path / "live.json"

    def run():
        rc = main(["video", url, "--out", str(out), "--model", str(tiny_ckpt), "--backend", "torch",
                   "--stall-timeout", "1.5", "--summary", str(summary)])
        err = capsys.readouterr().err
        if rc and "cannot open the stream" in err:
            raise VideoError(err)
        assert rc == 0, err

    t0 = time.time()
    until_listening(run)
    assert time.time() - t0 < 25  # ended by the stall timeout, not by the server's 30 s hold
    assert f"{url}: the stream stalled (no data within the timeout); ended after 12 frames" in caplog.text
    assert decoded_frames(out) == 12
    d = json.loads(summary.read_text())
    assert d["live"] is True and d["frames"] == 12 and d["dropped"] == 0
    assert 0 < d["latency_p50_ms"] <= d["latency_p90_ms"] < 10_000


def test_realtime_keeps_the_newest_frame_and_latency_counts_the_backlog(stream, tmp_path):
    """A model at about 20 frames/s on a stream of 200: without --realtime every frame is annotated and the latency
    (from a frame's arrival to its mask) grows with the backlog; with it only the newest frame is run, the rest are
    dropped and counted, and the latency stays near one model step."""
    def slow(i, im):
        time.sleep(0.05)
        return np.full(im.shape[:2], 0.7, np.float32)

    def run(realtime, name):
        url = stream(frames=40, fps=200, hold=30)
        fake = FakePredictor(slow, batch_size=1)
        return until_listening(lambda: process_video(fake, url, tmp_path / name, realtime=realtime, stall_timeout=1.5))

    every, rt = run(False, "all.mp4"), run(True, "rt.mp4")
    assert (every.frames, every.dropped) == (40, 0) and decoded_frames(tmp_path / "all.mp4") == 40
    assert every.latency_p90_ms > 1000  # the last frames waited behind about 1.6 s of work
    assert rt.live and rt.dropped > 0 and rt.frames + rt.dropped == 40
    assert decoded_frames(tmp_path / "rt.mp4") == rt.frames
    assert rt.latency_p90_ms < every.latency_p90_ms / 2


def test_a_stopped_live_run_leaves_no_reader_thread(stream, tmp_path):
    import threading

    url = stream(frames=400, fps=100, hold=30)
    s = until_listening(lambda: process_video(FakePredictor(), url, tmp_path / "m.mp4", realtime=True, max_frames=3,
                                              stall_timeout=1.5))
    assert s.frames == 3 and decoded_frames(tmp_path / "m.mp4") == 3
    assert not [t for t in threading.enumerate() if "_read" in t.name]


def test_a_stream_that_sends_nothing_is_one_line_naming_it(tmp_path):
    with socket.socket() as srv:  # accepts the connection, never sends a byte
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        url = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
        with pytest.raises(VideoError, match=rf"^{url}: cannot open the stream \(nothing arrived within 1.5 s\)$"):
            process_video(FakePredictor(), url, tmp_path / "x.mp4", stall_timeout=1.5)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_closes_a_live_output_as_a_playable_file(stream, tmp_path):
    url = stream(frames=40, fps=100, hold=30)

    def interrupted(i, im):
        if i == 8:
            raise KeyboardInterrupt
        return np.full(im.shape[:2], 0.7, np.float32)

    s = until_listening(lambda: process_video(FakePredictor(interrupted, batch_size=1), url, tmp_path / "c.mkv"))
    assert s.stopped == "interrupted" and s.frames == 8
    assert decoded_frames(tmp_path / "c.mkv") == 8


def test_ctrl_c_on_a_file_leaves_no_output(tmp_path):
    src = make_clip(tmp_path / "in.mp4", gaps_ms=(40,) * 10)

    def interrupted(i, im):
        if i == 4:
            raise KeyboardInterrupt
        return np.zeros(im.shape[:2], np.float32)

    with pytest.raises(KeyboardInterrupt):
        process_video(FakePredictor(interrupted, batch_size=2), src, tmp_path / "out.mp4")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["in.mp4"]


def test_image_folder_plays_as_a_video(tmp_path):
    from PIL import Image

    for i in range(5):
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(tmp_path / f"f{i:02d}.png")
    fake = FakePredictor(batch_size=2)
    s = process_video(fake, tmp_path, tmp_path.parent / "seq.mp4", fps=5)
    assert s.frames == 5 and [int(f[0, 0, 0]) for f in fake.frames] == [0, 40, 80, 120, 160]
    with av.open(str(tmp_path.parent / "seq.mp4")) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert times == pytest.approx([0, 0.2, 0.4, 0.6, 0.8])
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(tmp_path / "f09.png")
    with pytest.raises(VideoError, match=r"f09.png: is 64x40, the folder's first frame 64x48"):
        process_video(FakePredictor(), tmp_path, tmp_path.parent / "bad.mp4")
    assert not (tmp_path.parent / "bad.mp4").exists()
