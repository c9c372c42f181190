"""The video loop: a frame source (sources.py) -> the predictor -> the annotated-video sink (sinks.py).

`process_video` opens both ends, runs `annotate` (the loop: batches in, Results out, smoothing and flicker measured,
frames handed to the sink's worker thread) and writes the output atomically (a temporary file renamed at the end,
so a failure leaves no truncated file). A live source ends at a stall, at Ctrl-C or SIGTERM, and its output is still
closed as a playable file."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from roadseg.data.io import atomic_write, check_writable
from roadseg.errors import VideoError
from roadseg.inference.sinks import VIDEO_FORMATS, DrawOptions, VideoSink
from roadseg.inference.sources import STALL_TIMEOUT_S, LiveReader, is_live, open_source

log = logging.getLogger(__name__)

# Output containers, chosen by the output's extension. All three take H.264 video; audio is copied when the
# container accepts its codec (checked per stream), else dropped with a warning.
DEFAULT_SMOOTH = 0.0  # off: the default model flickers little (0.45% of pixels a frame), see the README


def video_format(dst: str | Path) -> str:
    """The container format for an output path, from its extension; a one-line VideoError listing the choices
    otherwise. Cheap: callers run it before loading a model or reading the input."""
    ext = Path(dst).suffix.lower()
    if ext not in VIDEO_FORMATS:
        raise VideoError(f"{dst}: cannot write a '{ext or '(no extension)'}' video; "
                         f"name the output {', '.join(VIDEO_FORMATS)}")
    return VIDEO_FORMATS[ext]


def check_video_options(dst: str | Path, smooth: float | None = None) -> tuple[str, float]:
    """(container format, smoothing) for process_video, or a one-line VideoError: what the CLI checks before it
    loads a model."""
    smooth = DEFAULT_SMOOTH if smooth is None else float(smooth)
    if not 0.0 <= smooth < 1.0:
        raise VideoError(f"--smooth {smooth:g}: must be at least 0 and below 1 (the weight of the past frames)")
    return video_format(dst), smooth


@dataclass
class VideoSummary:
    input: str
    output: str
    frames: int
    width: int  # the frame as displayed (after the input's rotation), before any side-by-side
    height: int
    fps: float  # the input's average rate; timestamps are copied frame by frame, so variable rates are kept
    wall_s: float
    model_s: float
    decode_s: float
    encode_s: float
    network_input: tuple[int, int] | None = None  # the network's (height, width) for these frames
    rotation: int = 0  # degrees counter-clockwise from the input's display matrix, applied before the model
    smooth: float = 0.0  # weight of the past in the moving average of probabilities (0: per-frame masks)
    threshold: float | None = None  # the threshold of the masks drawn
    # flicker: mean fraction of pixels whose label (p >= threshold) changes from one frame to the next, in the masks
    # drawn (flicker) and in the per-frame masks (flicker_unsmoothed); _lower: the same in the frame's lower third
    flicker: float | None = None
    flicker_lower: float | None = None
    flicker_unsmoothed: float | None = None
    flicker_unsmoothed_lower: float | None = None
    agreement: float | None = None  # fraction of pixels whose drawn label equals the per-frame label (1 without smoothing)
    road_share: float | None = None  # fraction of pixels drawn as road, over all frames
    road_share_unsmoothed: float | None = None  # the same in the per-frame masks
    audio_streams: int = 0  # audio streams copied into the output
    live: bool = False  # a live stream: no frame count, no end
    dropped: int = 0  # frames a real-time run skipped because the model fell behind
    latency_p50_ms: float | None = None  # live sources: from a frame's arrival to its mask (p50, p90)
    latency_p90_ms: float | None = None
    stopped: str | None = None  # why a live run ended early ("interrupted", "terminated")
    written: tuple[int, int] | None = None  # the output's (width, height) as displayed: side by side, padded to even
    warnings: list[str] = field(default_factory=list)

    @property
    def mean_fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "mean_fps": self.mean_fps}

    def text(self) -> str:
        net = f", network input {self.network_input[1]}x{self.network_input[0]}" if self.network_input else ""
        rot = f", rotated {self.rotation} degrees" if self.rotation else ""
        out = (f", written {self.written[0]}x{self.written[1]}" if self.written and tuple(self.written) != (self.width, self.height)
               else "")
        s = (f"{self.frames} frames ({self.width}x{self.height} @ {self.fps:.2f} fps{rot}{net}{out}) in {self.wall_s:.1f} s: "
             f"{self.mean_fps:.2f} frames/s; model {self.model_s:.1f} s ({100 * self.model_s / max(self.wall_s, 1e-9):.0f}%), "
             f"decode {self.decode_s:.1f} s, overlay + encode {self.encode_s:.1f} s (in parallel with the model)")
        if self.flicker is not None:
            s += f"; flicker {_pct(self.flicker)} of pixels per frame, lower third {_pct(self.flicker_lower)}"
            if self.smooth:
                s += (f" (smoothing {self.smooth:g}; per-frame masks {_pct(self.flicker_unsmoothed)}, lower third "
                      f"{_pct(self.flicker_unsmoothed_lower)}; {_pct(self.agreement)} of pixels agree with them; road "
                      f"{_pct(self.road_share)} of pixels, per-frame {_pct(self.road_share_unsmoothed)})")
        if self.audio_streams:
            s += f"; {self.audio_streams} audio stream{'s' if self.audio_streams > 1 else ''} copied"
        if self.latency_p50_ms is not None:
            s += (f"; latency from arrival to mask p50 {self.latency_p50_ms:.0f} ms, p90 {self.latency_p90_ms:.0f} ms, "
                  f"{self.dropped} frames dropped")
        if self.stopped:
            s += f"; {self.stopped}, the output closed as a playable file"
        return s


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


class _Flicker:
    """Label changes between consecutive frames, overall and in the lower third (the near field), for the masks
    drawn and the per-frame masks, how often the two agree, and their road share. Counts in integers; without
    smoothing the drawn mask is the per-frame one and is counted once."""

    def __init__(self):
        self.prev = None  # (drawn, per-frame) masks of the previous frame
        self.pairs = self.frames = self.agree = self.pixels = self.pixels_low = 0
        self.counts = np.zeros((2, 3), np.int64)  # [drawn, per-frame] x [changed, changed in the lower third, road]

    @staticmethod
    def _count(mask: np.ndarray, prev: np.ndarray | None, low: int) -> list[int]:
        if prev is None:
            return [0, 0, int(np.count_nonzero(mask))]
        return [int(np.count_nonzero(mask != prev)), int(np.count_nonzero(mask[low:] != prev[low:])),
                int(np.count_nonzero(mask))]

    def add(self, shown: np.ndarray, raw: np.ndarray) -> None:
        low = shown.shape[0] - shown.shape[0] // 3
        paired = self.prev is not None and self.prev[0].shape == shown.shape
        prev = self.prev if paired else (None, None)
        drawn = self._count(shown, prev[0], low)
        self.counts[0] += drawn
        self.counts[1] += drawn if shown is raw else self._count(raw, prev[1], low)
        self.pairs += paired
        self.frames += 1
        self.agree += shown.size if shown is raw else int(np.count_nonzero(shown == raw))
        self.pixels, self.pixels_low = shown.size, shown[low:].size
        self.prev = (shown, raw)

    def results(self) -> dict:
        if not self.frames:
            return {}
        total = self.frames * self.pixels
        (changed, changed_low, road), (changed_raw, changed_raw_low, road_raw) = self.counts.tolist()
        out = {"agreement": self.agree / total, "road_share": road / total, "road_share_unsmoothed": road_raw / total}
        if not self.pairs:
            return out
        n, nl = self.pairs * self.pixels, self.pairs * self.pixels_low
        return {"flicker": changed / n, "flicker_lower": changed_low / nl,
                "flicker_unsmoothed": changed_raw / n, "flicker_unsmoothed_lower": changed_raw_low / nl, **out}




@dataclass(frozen=True)
class VideoOptions:
    """How a clip is annotated. smooth: S in [0, 1), the weight of the past in an exponential moving average of
    the road probabilities, p_t' = S * p_{t-1}' + (1 - S) * p_t, per frame (0: each frame's own mask); the mask
    trails a change by about S / (1 - S) frames. realtime (live sources): only the newest frame is kept for the
    model, older ones are dropped when it falls behind.
    max_frames: stop after this many (0: all). fps: the rate of an image folder. stall_timeout: seconds without data
    after which a live stream has ended."""

    draw: DrawOptions = field(default_factory=DrawOptions)
    smooth: float = 0.0
    realtime: bool = False
    max_frames: int = 0
    fps: float | None = None
    stall_timeout: float = STALL_TIMEOUT_S


class _Smoother:
    """The moving average of probabilities (a new array each frame: the encoder thread holds the last)."""

    def __init__(self, weight: float):
        self.weight, self.ema = weight, None

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        if not self.weight:
            return prob
        if self.ema is None or self.ema.shape != prob.shape:
            self.ema = prob.copy()
        else:
            self.ema = self.weight * self.ema + (1.0 - self.weight) * prob
        return self.ema


@dataclass
class _Stats:
    frames: int = 0
    model_s: float = 0.0
    decode_s: float = 0.0
    latencies: list = field(default_factory=list)
    stopped: str | None = None
    dropped: int = 0
    flicker: dict = field(default_factory=dict)


def _batches(items, size: int):
    """(frames, audio packets) in groups of `size` frames; packets ride with the frames they were demuxed beside."""
    frames, packets = [], []
    for it in items:
        (packets if not hasattr(it, "image") else frames).append(it)
        if len(frames) == size:
            yield frames, packets
            frames, packets = [], []
    if frames or packets:
        yield frames, packets


def annotate(predictor, source, sink: VideoSink, opts: VideoOptions, progress=None, reader=None) -> _Stats:
    """The loop: read a batch, predict, smooth, count flicker, hand to the sink. A live source comes through
    `reader` (a LiveReader). Ctrl-C or SIGTERM ends a live source's loop (the output is then closed as usual); for a
    file it propagates (and the output is removed)."""
    stats, flicker, smooth = _Stats(), _Flicker(), _Smoother(opts.smooth)
    size = predictor.settings.batch_size
    batches = reader.batches(size) if reader else _batches(source.items(sink.audio_in), size)
    bar = progress(source.total, "video") if progress else None
    t0 = t = time.perf_counter()
    try:
        for frames, packets in batches:
            frames = frames[: opts.max_frames - stats.frames] if opts.max_frames else frames
            stats.decode_s += time.perf_counter() - t
            t = time.perf_counter()
            probs = predictor.probabilities([f.image for f in frames]) if frames else []
            done = time.perf_counter()
            stats.model_s += done - t
            results = [predictor.result(smooth(p)) for p in probs]
            for r, p in zip(results, probs):
                flicker.add(r.mask, r.mask if not opts.smooth else predictor.result(p).mask)
            if source.live:
                stats.latencies += [done - f.captured for f in frames]
            sink.submit(frames, results, packets)
            stats.frames += len(frames)
            if bar is not None:
                bar.update(len(frames))
                bar.set_postfix(fps=f"{stats.frames / (time.perf_counter() - t0):.2f}")
            if opts.max_frames and stats.frames >= opts.max_frames:
                break
            t = time.perf_counter()
    except KeyboardInterrupt as exc:
        if not source.live:
            raise
        stats.stopped = "terminated" if type(exc).__name__ == "Terminated" else "interrupted"
    finally:
        if bar is not None:
            bar.close()
    stats.dropped = reader.dropped if reader else 0
    stats.flicker = flicker.results()
    return stats


def _check_ends(src, dst) -> None:
    if is_live(src):
        return
    src = Path(src)
    if Path(dst).resolve() == src.resolve():
        raise VideoError(f"{dst}: output would overwrite the input video; choose another output")


def process_video(predictor, src: str | Path, dst: str | Path, side_by_side: bool = False, progress=None,
                  max_frames: int = 0, smooth: float | None = None, legend: bool = True, realtime: bool = False,
                  fps: float | None = None, stall_timeout: float = STALL_TIMEOUT_S) -> VideoSummary:
    """Stream `src` (a video file, an image folder, or a live stream URL / V4L2 device) through `predictor` and
    write an annotated H.264 `dst` (.mp4, .mkv, .avi: the extension picks the container, checked before anything
    is read). Frames go through in batches of predictor.settings.batch_size; the clip is never held in memory.
    side_by_side: input and overlay side by side. max_frames: stop after that many. smooth: see VideoOptions
    (None: DEFAULT_SMOOTH). legend: the key in the corner. realtime, stall_timeout: live sources (see VideoOptions);
    fps: the rate an image folder plays at. A file that ends before its header's frame count gives a warning in the
    summary (also logged). Returns a VideoSummary (timings, flicker, latency for live sources)."""
    fmt, smooth = check_video_options(dst, smooth)
    _check_ends(src, dst)
    dst = Path(dst)
    opts = VideoOptions(DrawOptions(side_by_side, legend), smooth, realtime, max_frames, fps, stall_timeout)
    check_writable(dst.parent if str(dst.parent) else Path("."), folder=True, what="output folder")
    source = open_source(src, fps=opts.fps, stall_timeout=opts.stall_timeout)
    reader = None
    try:
        t0 = time.perf_counter()
        run: dict = {}
        reader = LiveReader(source, keep=1 if opts.realtime else None) if source.live else None

        def write(tmp: Path) -> None:
            sink = VideoSink(tmp, fmt, source, opts.draw)
            try:
                run["stats"] = annotate(predictor, source, sink, opts, progress, reader)
                if not run["stats"].frames:
                    raise VideoError(f"{src}: no video frames could be decoded")
                sink.finish()
            finally:
                sink.close()
            run["sink"] = sink

        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dst, write, by_name=True)
        return _summary(predictor, source, run["sink"], run["stats"], opts, src, dst, time.perf_counter() - t0)
    finally:
        if reader is None or reader.stop(opts.stall_timeout + 1):  # the reader may be inside the demuxer until its timeout
            source.close()


def _summary(predictor, source, sink, stats: _Stats, opts: VideoOptions, src, dst, wall_s: float) -> VideoSummary:
    warnings = source.warnings + sink.warnings
    total, n = source.total, stats.frames
    if source.broken or (total and n < total and not (opts.max_frames and n >= opts.max_frames)):
        why = f"decoding stopped ({source.broken})" if source.broken else "the video ended"
        says = f", but its header says {total}" if total else ""
        warnings.append(f"{src}: {why} after {n} frames{says} (truncated or damaged file?); the output has those {n}")
    for msg in warnings:
        log.warning(msg)
    h, w = sink.frame_size
    lat = np.array(stats.latencies) * 1000 if stats.latencies else None
    return VideoSummary(
        str(src), str(dst), n, w, h, float(source.rate), wall_s, stats.model_s, stats.decode_s, sink.encode_s,
        tuple(predictor.input_size(h, w)), rotation=(0, 90, 180, -90)[source.rotation or 0], smooth=opts.smooth,
        threshold=predictor.threshold, audio_streams=len(sink.audio), written=sink.written, warnings=warnings,
        live=source.live, dropped=stats.dropped, stopped=stats.stopped,
        latency_p50_ms=None if lat is None else float(np.percentile(lat, 50)),
        latency_p90_ms=None if lat is None else float(np.percentile(lat, 90)), **stats.flicker)
