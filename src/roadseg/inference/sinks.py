"""The annotated-video sink: overlays drawn and encoded as H.264 (yuv420p) in a worker thread while the model runs
on the next batch, audio copied packet for packet, timestamps kept frame for frame.

Faithful to the input: each output frame has its input frame's timestamp (variable rates are kept); a rotated input
is stored as the input stores it with the same display matrix (.mp4, .mkv) or upright (.avi, which cannot carry
one); an odd width or height is padded by one pixel (a copy of the last column / row) for 4:2:0."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

X264_OPTIONS = {"crf": "20", "preset": "superfast"}
# Output containers, by the output's extension (video.video_format checks it before anything is read)
VIDEO_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi"}


@dataclass(frozen=True)
class DrawOptions:
    side_by_side: bool = False  # the input frame and its overlay side by side
    legend: bool = True


def pad_even(a: np.ndarray) -> np.ndarray:
    """H.264 4:2:0 needs even sizes: an odd width or height gets one more column / row, a copy of the last one."""
    h, w = a.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return a
    return np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class VideoSink:
    """Writes the annotated video to `path` (a temporary name: the caller renames it when complete). The video stream
    is made on the first frame, whose size and the source's rotation fix its geometry."""

    def __init__(self, path: Path, fmt: str, source, draw: DrawOptions):
        import av

        self.fmt, self.source, self.draw = fmt, source, draw
        self.out = av.open(str(path), "w", format=fmt)
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending = None
        self.stream = None
        self.written: tuple[int, int] | None = None  # (width, height) as displayed, padded to even
        self.frame_size: tuple[int, int] | None = None  # (height, width) of the upright input frames
        self.last_pts: int | None = None
        self.encode_s = 0.0
        self.warnings: list[str] = []
        self.audio = self._audio_streams(path)

    def _audio_streams(self, path: Path) -> dict:
        """Input audio stream index -> output stream, for the streams the container takes (the rest: a warning)."""
        import av

        out = {}
        for a_in in self.source.audio:
            name = a_in.codec_context.name
            if name in self.out.supported_codecs:
                try:
                    out[a_in.index] = (a_in, self.out.add_stream_from_template(a_in))
                    continue
                except (av.error.FFmpegError, ValueError):
                    pass
            self.warnings.append(f"{self.source.name}: audio stream {a_in.index} ({name}) cannot go into a "
                                 f"{next(e for e, f in VIDEO_FORMATS.items() if f == self.fmt)} file; dropped")
        return out

    @property
    def audio_in(self) -> list:
        """The input audio streams to demux (those this sink copies)."""
        return [a for a, _ in self.audio.values()]

    def _open_video(self, h: int, w: int) -> None:
        """The H.264 stream for upright frames of h x w (as drawn), stored as the input stores them."""
        k = self.source.rotation or 0
        keep = k if self.fmt != "avi" else 0
        self.written = (w + w % 2, h + h % 2)
        sh, sw = (w, h) if keep % 2 else (h, w)
        rate = self.source.rate
        s = self.out.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = sw + sw % 2, sh + sh % 2, "yuv420p"
        # AVI stores no presentation times, so no B-frames there (decode order = display order)
        s.options = dict(X264_OPTIONS, **({"bf": "0"} if self.fmt == "avi" else {}))
        tb = 1 / Fraction(rate) if self.fmt == "avi" else self.source.time_base
        s.codec_context.time_base = s.time_base = tb
        if keep:
            s.set_display_rotation(90 * keep)
        self.stream = s

    def _pts(self, frame) -> int:
        """The output timestamp: the input's own, or its time in frames for AVI; a missing or repeated one follows
        the previous frame by one tick (encoders need them rising)."""
        if self.fmt == "avi":
            v = None if frame.time is None else int(round(frame.time * self.source.rate))
            step = 1
        else:
            v = frame.pts
            step = max(1, round(1 / (self.source.rate * self.stream.codec_context.time_base)))
        if v is None or (self.last_pts is not None and v <= self.last_pts):
            v = 0 if self.last_pts is None else self.last_pts + step
        self.last_pts = v
        return v

    def submit(self, frames, results, packets) -> None:
        """Queue one batch (frames, their Results, audio packets) for the worker; the previous batch is finished
        first (its error raised here), so frames stay in order."""
        if self.stream is None and frames:
            h, w = self.frame_size = frames[0].image.shape[:2]
            self._open_video(h, w * (2 if self.draw.side_by_side else 1))
        if self.stream is None:
            return  # audio before any frame: kept for the first batch by the loop
        pts = [self._pts(f) for f in frames]
        self.wait()
        self.pending = self.pool.submit(self._encode, frames, results, pts, packets)

    def wait(self) -> None:
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def _encode(self, frames, results, pts, packets) -> None:
        import av

        t = time.perf_counter()
        k = self.source.rotation or 0
        for f, r, p in zip(frames, results, pts):
            ov = r.overlay(f.image, legend=self.draw.legend)
            rgb = np.concatenate([f.image, ov], axis=1) if self.draw.side_by_side else ov
            if k and self.fmt != "avi":  # back to the input's storage; the display matrix turns it upright
                rgb = np.rot90(rgb, -k)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(pad_even(rgb)), format="rgb24")
            vf.pts, vf.time_base = p, self.stream.codec_context.time_base
            for pkt in self.stream.encode(vf):
                self.out.mux(pkt)
        for pkt in packets:  # the audio demuxed alongside these frames; the muxer interleaves
            if self._keep_audio(pkt):
                pkt.stream = self.audio[pkt.stream_index][1]
                self.out.mux(pkt)
        self.encode_s += time.perf_counter() - t

    def _keep_audio(self, pkt) -> bool:
        # .mkv and .avi cannot store times before 0: an audio encoder's priming packet would shift every stream
        # later, so it is left out there (the video's timestamps come first)
        return pkt.dts is not None and pkt.size and (self.fmt == "mp4" or (pkt.pts or 0) >= 0)

    def finish(self) -> None:
        """The last batch, the encoder's delayed frames, the container closed: a complete, playable file."""
        self.wait()
        t = time.perf_counter()
        if self.stream is not None:
            for pkt in self.stream.encode():
                self.out.mux(pkt)
        self.out.close()
        self.out = None
        self.encode_s += time.perf_counter() - t

    def close(self) -> None:
        """After finish, or on a failure: the worker is done before the file is renamed or removed."""
        self.pool.shutdown(wait=True)
        if self.out is not None:
            try:
                self.out.close()
            except Exception:  # noqa: BLE001 - already failing; the temporary file is removed next
                pass
