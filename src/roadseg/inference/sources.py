"""Frame sources for the video loop: a video file, a folder of images played as a sequence, or a live stream
that FFmpeg opens (rtsp://, rtmp://, tcp://, udp://, http(s)://, srt://, a V4L2 camera /dev/videoN).

A source yields Frame items (upright RGB, with the input's timestamp and the moment it was decoded) and, for files,
the audio packets demuxed beside them, in order. It knows its rate, time base, rotation and frame count (None for
live sources, which have no end). Errors are one-line VideoErrors naming the input."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from roadseg.errors import DataError, VideoError

LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "tcp://", "udp://", "http://", "https://", "srt://",
                 "/dev/video")
STALL_TIMEOUT_S = 10.0  # a live stream that sends nothing for this long has ended (or stalled)
FOLDER_FPS = 10.0  # the rate an image folder plays at unless told


def is_live(src: str | Path) -> bool:
    return str(src).startswith(LIVE_PREFIXES)


@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 RGB, upright
    pts: int | None  # in the source's time base
    time: float | None  # seconds
    captured: float = field(default_factory=time.perf_counter)  # when it was decoded (latency is measured from here)


class AvSource:
    """A container FFmpeg opens: a file or a live stream. `rotation` (quarter turns counter-clockwise, from the
    first frame's display matrix) holds for the clip; frames come out upright."""

    def __init__(self, src: str | Path, live: bool = False, stall_timeout: float = STALL_TIMEOUT_S):
        import av

        self.name, self.live = str(src), live
        self.warnings: list[str] = []
        self.broken: str | None = None  # the decoder error that cut a damaged file short
        self.rotation: int | None = None
        try:
            kw = {"timeout": (stall_timeout, stall_timeout)} if live else {}
            fmt = "v4l2" if self.name.startswith("/dev/video") else None
            self.container = av.open(self.name, format=fmt, **kw)
        except av.error.EOFError:
            raise VideoError(f"{src}: empty video container (no frames)") from None
        except av.error.ExitError:  # the open timeout
            raise VideoError(f"{src}: cannot open the stream (nothing arrived within {stall_timeout:g} s)") from None
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            what = "cannot open the stream" if live else "cannot open as a video"
            why = getattr(exc, "strerror", None) or exc.__class__.__name__
            raise VideoError(f"{src}: {what} ({why})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{src}: has no video stream")
        self.video = vs = self.container.streams.video[0]
        vs.thread_type = "AUTO"
        if not vs.codec_context.width or not vs.codec_context.height:
            self.container.close()
            raise VideoError(f"{src}: video stream has no frame size")
        self.rate = Fraction(vs.average_rate or vs.guessed_rate or 25)
        self.time_base = vs.time_base or 1 / self.rate
        self.total = None if live else (vs.frames or None)
        self.audio = [] if live else list(self.container.streams.audio)
        self.stored_size = (vs.codec_context.height, vs.codec_context.width)

    def items(self, audio=()):
        """Frames and, interleaved, the packets of the `audio` streams (those the output takes), in demux order. A
        file cut off mid-way ends early (self.broken says why); a live stream that stalls ends after the timeout."""
        import av

        n = 0
        try:
            for packet in self.container.demux(self.video, *audio):
                if packet.stream.type == "audio":
                    yield packet
                    continue
                for frame in packet.decode():
                    n += 1
                    yield self._frame(frame)
        except av.error.ExitError:  # the read timeout
            if not self.live:
                raise
            for frame in self._drain():  # frames the decoder's threads still hold
                n += 1
                yield self._frame(frame)
            if not n:
                raise VideoError(f"{self.name}: no frame arrived within the timeout (stalled or not sending)") from None
            self.warnings.append(f"{self.name}: the stream stalled (no data within the timeout); ended after {n} frames")
        except av.error.FFmpegError as exc:
            if not n:
                raise VideoError(f"{self.name}: decoding failed before the first frame ({exc.__class__.__name__})") from None
            self.broken = exc.__class__.__name__  # a cut-off file: the frames read so far are kept, and said so

    def _drain(self):
        import av

        try:
            yield from self.video.codec_context.decode(None)
        except av.error.FFmpegError:
            return

    def _frame(self, frame) -> Frame:
        img = frame.to_ndarray(format="rgb24")
        if self.rotation is None:
            self.rotation = round((frame.rotation or 0) / 90) % 4
        if self.rotation:
            img = np.ascontiguousarray(np.rot90(img, self.rotation))  # upright for the model
        return Frame(img, frame.pts, frame.time)

    def close(self) -> None:
        self.container.close()


class FolderSource:
    """The images of a folder, in name order, as a video at `fps` frames per second. Frames must share one size."""

    live = False
    audio: list = []
    rotation = 0
    broken = None

    def __init__(self, folder: str | Path, fps: float | None = None):
        from roadseg.data.io import list_images

        self.name = str(folder)
        self.paths = list_images(Path(folder))  # not empty: open_source's check_source saw to that
        self.rate = Fraction(fps or FOLDER_FPS).limit_denominator(1001)
        self.time_base = 1 / self.rate
        self.total = len(self.paths)
        self.warnings: list[str] = []
        self.stored_size = None

    def items(self, audio=()):
        from roadseg.data.io import read_image

        first = None
        for i, p in enumerate(self.paths):
            try:
                img = read_image(p)
            except DataError as exc:
                raise VideoError(str(exc)) from None
            first = first or img.shape[:2]
            if img.shape[:2] != first:
                raise VideoError(f"{p}: is {img.shape[1]}x{img.shape[0]}, the folder's first frame "
                                 f"{first[1]}x{first[0]}: a video's frames share one size")
            yield Frame(img, i, float(i / self.rate))

    def close(self) -> None:
        pass


def check_source(src: str | Path) -> None:
    """The cheap checks of an input, before a model is loaded: a file that exists, a folder that holds images (a
    live stream is only known when it is opened)."""
    if is_live(src):
        return
    path = Path(src)
    if path.is_dir():
        from roadseg.data.io import list_images

        if not list_images(path):
            raise VideoError(f"{src}: holds no images to play as a video")
    elif not path.is_file():
        raise VideoError(f"{src}: video file not found")


def open_source(src: str | Path, fps: float | None = None, stall_timeout: float = STALL_TIMEOUT_S):
    """The source for `src`: a live stream (is_live), an image folder, or a video file (check_source first)."""
    check_source(src)
    if is_live(src):
        return AvSource(src, live=True, stall_timeout=stall_timeout)
    return FolderSource(src, fps) if Path(src).is_dir() else AvSource(Path(src))


class LiveReader:
    """Reads a live source in a thread, as fast as it sends, so that each frame's `captured` time is when it
    arrived (the latency the summary reports then includes any backlog). keep=None: every frame is kept for the
    model (a backlog grows when the model is slower than the stream); keep=1 (real time): only the newest frame is
    kept, older ones not yet taken are dropped (counted), so the model always works on the present."""

    def __init__(self, source, keep: int | None = None):
        self.source, self.buffer = source, collections.deque()
        self.keep, self.dropped, self.done, self.error, self.stopping = keep, 0, False, None, False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for it in self.source.items():
                if self.stopping:
                    return
                if not isinstance(it, Frame):
                    continue  # live sources carry no audio here
                with self.cond:
                    self.buffer.append(it)
                    while self.keep and len(self.buffer) > self.keep:
                        self.buffer.popleft()
                        self.dropped += 1
                    self.cond.notify()
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            self.error = exc
        finally:
            with self.cond:
                self.done = True
                self.cond.notify()

    def batches(self, size: int):
        """Up to `size` of the frames that have arrived (at least one), until the source ends."""
        while True:
            with self.cond:
                while not self.buffer and not self.done:
                    self.cond.wait(0.5)
                if self.error is not None:
                    raise self.error
                if not self.buffer and self.done:
                    return
                batch = [self.buffer.popleft() for _ in range(min(size, len(self.buffer)))]
            yield batch, []

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end and wait up to `timeout` s (it may be inside the demuxer until its read timeout);
        True when it has ended, so the source can be closed."""
        self.stopping = True
        self.thread.join(timeout)
        return not self.thread.is_alive()
