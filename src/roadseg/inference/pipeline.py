"""Image and video pipelines on top of a Predictor: overlays, masks, probability PNGs, annotated video."""

from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from roadseg.data.io import (
    atomic_write,
    check_writable,
    guard_outputs,
    prob_name,
    read_image,
    resolved,
    save_png_atomic,
)
from roadseg.errors import DataError, RoadsegError, VideoError
from roadseg.metrics import quantize

log = logging.getLogger(__name__)
ROAD_RGB = (255, 0, 200)  # magenta tint, like the KITTI masks
EDGE_RGB = (255, 255, 0)

X264_OPTIONS = {"crf": "20", "preset": "superfast"}
_ROAD16, _EDGE8 = torch.tensor(ROAD_RGB, dtype=torch.int16), torch.tensor(EDGE_RGB, dtype=torch.uint8)


def overlay(image: np.ndarray, prob: np.ndarray, threshold: float = 0.5, alpha: float = 0.45,
            legend: bool = True) -> np.ndarray:
    """Tint road pixels and draw the road boundary in yellow. image (H, W, 3) uint8, prob (H, W) in [0, 1].
    Integer arithmetic in torch (multi-threaded): image + (tint - image) * alpha, alpha in 1/256 steps.
    legend: a small key in the top-left corner, "road (p >= threshold)" beside a swatch of the tint; drawn once per
    (frame height, threshold, alpha) and pasted, so it costs a video next to nothing. Frames under 160x90 get none."""
    a = int(round(alpha * 256))
    im = torch.from_numpy(np.ascontiguousarray(image))
    road = torch.from_numpy(np.ascontiguousarray(prob)) >= threshold
    i16 = im.to(torch.int16)
    blend = (i16 + (((_ROAD16 - i16) * a) >> 8)).to(torch.uint8)  # |tint - image| * a < 2^15: no overflow
    inner = road.clone()  # 4-neighbour erosion: boundary = road pixels with a non-road neighbour
    inner[1:] &= road[:-1]
    inner[:-1] &= road[1:]
    inner[:, 1:] &= road[:, :-1]
    inner[:, :-1] &= road[:, 1:]
    out = torch.where(road[..., None], blend, im)
    out = torch.where((road & ~inner)[..., None], _EDGE8, out).numpy()
    h, w = out.shape[:2]
    if legend and w >= 160 and h >= 90:
        rgb, cover = _legend(min(h, w), round(float(threshold), 3), a)
        lh, lw = min(rgb.shape[0], h), min(rgb.shape[1], w)
        region = out[:lh, :lw].astype(np.uint16)  # pixel + (legend - pixel) * cover / 256, cover in 0..256
        out[:lh, :lw] = ((region * (256 - cover[:lh, :lw]) + rgb[:lh, :lw] * cover[:lh, :lw]) >> 8).astype(np.uint8)
    return out


@functools.lru_cache(maxsize=16)
def _legend(short_side: int, threshold: float, a: int) -> tuple[np.ndarray, np.ndarray]:
    """The legend patch: RGB (uint16) and its coverage (uint16, 0..256): a dark translucent box holding a swatch of
    the road tint with the yellow boundary colour as its frame, and the label in white."""
    from PIL import Image, ImageDraw, ImageFont

    px = max(10, round(short_side / 36))  # text height: 15 px on a 540-line frame, 10 px on KITTI's 375
    try:
        font = ImageFont.load_default(px)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    label = f"road (p >= {threshold:.3g})"
    pad = max(2, px // 3)
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), label, font=font)
    sw = px  # the swatch is a square as tall as the text
    bw, bh = pad + sw + pad + (x1 - x0) + pad, pad + max(sw, y1) + pad
    rgba = Image.new("RGBA", (bw + pad, bh + pad), (0, 0, 0, 0))  # a margin of pad from the frame's edge
    d = ImageDraw.Draw(rgba)
    d.rectangle((pad, pad, pad + bw - 1, pad + bh - 1), fill=(0, 0, 0, 150))
    tint = tuple(int(round(90 * (1 - a / 256) + c * a / 256)) for c in ROAD_RGB)  # the tint over a mid-grey road
    sy = pad + (bh - sw) // 2
    d.rectangle((2 * pad, sy, 2 * pad + sw - 1, sy + sw - 1), fill=(*tint, 255), outline=(*EDGE_RGB, 255))
    d.text((3 * pad + sw - x0, pad + (bh - y1) // 2), label, font=font, fill=(255, 255, 255, 255))
    arr = np.asarray(rgba).astype(np.uint16)
    cover = (arr[..., 3:] * 256 + 127) // 255
    return arr[..., :3], cover


def _writable_dir(out: Path) -> Path:
    """The output folder, checked writable (data.io.check_writable: the one probe), then created."""
    check_writable(out, folder=True, what="output folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RoadsegError(f"{out}: cannot create output folder ({exc.strerror})") from None
    return out


def predict_images(predictor, paths: list[Path], out_dir: str | Path, probs: bool = False, skip_bad: bool = False,
                   batch_size: int = 4, task: str = "road", progress=None) -> dict:
    """Write `<name>_overlay.png`, `<name>_mask.png` (and with probs the KITTI-named probability PNG) per frame.
    All inputs are decoded first, so an unreadable one stops the run before anything is written
    (or, with skip_bad, is listed and skipped); the first KEEP_DECODED_BYTES of decoded frames are kept for the
    predictions, the rest decoded again batch by batch, so memory stays bounded however many large images there
    are. Returns {"written": [...], "skipped": [(path, reason)]}."""
    out = Path(out_dir)
    home = next((Path(p) for p in paths if resolved(Path(p)).parent == resolved(out)), None)
    if home is not None:  # outputs beside the inputs would be read as inputs by the next run on that folder
        raise DataError(f"{out}: holds the input {home.name}; write the outputs to another folder")
    guard_outputs([out / f"{Path(p).stem}{suffix}" for p in paths for suffix in ("_overlay.png", "_mask.png")]
                  + [out / prob_name(Path(p).stem, task) for p in paths if probs], inputs=paths)
    images, skipped, kept = [], [], 0  # (path, decoded frame or None: decode again when its turn comes)
    for p in paths:
        try:
            img = read_image(p)
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append((str(p), str(exc)))
            continue
        keep = kept + img.nbytes <= KEEP_DECODED_BYTES
        kept += img.nbytes if keep else 0
        images.append((Path(p), img if keep else None))
        del img
    out = _writable_dir(Path(out_dir))
    written = []
    threshold = getattr(predictor, "threshold", 0.5)  # the model's validation operating point, or --threshold
    bar = progress(len(images), "predict") if progress else None
    for i in range(0, len(images), batch_size):
        chunk = []
        for p, img in images[i : i + batch_size]:
            try:
                chunk.append((p, img if img is not None else read_image(p)))
            except DataError as exc:  # changed since it was checked
                if not skip_bad:
                    raise DataError(f"{exc} (it changed after the check; {len(written)} frames were written to "
                                    f"{out})") from None
                skipped.append((str(p), str(exc)))
        batch = len(images[i : i + batch_size])
        images[i : i + batch_size] = [(p, None) for p, _ in images[i : i + batch_size]]  # let the batch go
        if not chunk:
            if bar is not None:
                bar.update(batch)
            continue
        for (p, img), prob in zip(chunk, predictor.predict_batch([im for _, im in chunk])):
            try:
                save_png_atomic(overlay(img, prob, threshold), out / f"{p.stem}_overlay.png")
                save_png_atomic((prob >= threshold).astype(np.uint8) * np.uint8(255), out / f"{p.stem}_mask.png")
                if probs:
                    save_png_atomic(quantize(prob), out / prob_name(p.stem, task))
            except OSError as exc:
                raise RoadsegError(f"{out}: cannot write output ({exc.strerror or exc})") from None
            written.append(str(p))
        if bar is not None:
            bar.update(batch)  # a frame skipped at the re-read counts as done too
    if bar is not None:
        bar.close()
    return {"written": written, "skipped": skipped}


KEEP_DECODED_BYTES = 1 << 30  # decoded frames predict_images holds from its check to its predictions (1 GiB)


# Output containers, chosen by the output's extension. All three take H.264 video; audio is copied when the
# container accepts its codec (checked per stream), else dropped with a warning.
VIDEO_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi"}
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
    threshold: float = 0.5
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


def _pad_even(a: np.ndarray) -> np.ndarray:
    """H.264 4:2:0 needs even sizes: an odd width or height gets one more column / row, a copy of the last one."""
    h, w = a.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return a
    return np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def process_video(predictor, src: str | Path, dst: str | Path, side_by_side: bool = False, batch_size: int = 4,
                  progress=None, max_frames: int = 0, smooth: float | None = None, legend: bool = True) -> VideoSummary:
    """Stream `src` through the model and write an annotated H.264 (yuv420p) `dst`, frame for frame.

    Faithful to the input: every output frame has its input frame's timestamp (variable frame rates are kept); a
    rotation in the input's display matrix is applied before the model (it sees upright frames), and the output keeps
    it: .mp4 and .mkv store the frames as the input does with the same display matrix, .avi (which cannot carry one)
    stores them upright; audio streams are copied packet for packet when the container takes their codec; an odd
    width or height is padded by one pixel (a copy of the last column / row) for 4:2:0. The container comes from
    dst's extension (VIDEO_FORMATS: .mp4, .mkv, .avi), checked before anything is read. If the input ends before the
    frame count its header gives, the summary carries a warning (also logged).

    smooth: S in [0, 1), the weight of the past in an exponential moving average of the road probabilities,
    p_t' = S * p_{t-1}' + (1 - S) * p_t, taken per frame (not per second); 0 draws each frame's own mask, None the
    default (DEFAULT_SMOOTH). The mask trails a change by about S / (1 - S) frames. The summary measures flicker
    (the share of pixels changing label between consecutive frames, overall and in the lower third) with and without it.

    Frames are decoded, predicted and encoded in batches; the clip is never held in memory. Output goes to a
    temporary file renamed at the end (data.io.atomic_write), so a failure leaves no truncated `dst`."""
    import av

    fmt, smooth = check_video_options(dst, smooth)
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise VideoError(f"{src}: is a folder, not a video file" if src.is_dir() else f"{src}: video file not found")
    if dst.resolve() == src.resolve():
        raise VideoError(f"{dst}: output would overwrite the input video; choose another output")
    try:
        inp = av.open(str(src))
    except av.error.EOFError:
        raise VideoError(f"{src}: empty video container (no frames)") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"{src}: cannot open as a video ({exc.__class__.__name__})") from None
    try:
        if not inp.streams.video:
            raise VideoError(f"{src}: has no video stream")
        vs = inp.streams.video[0]
        vs.thread_type = "AUTO"
        rate = vs.average_rate or vs.guessed_rate or 25
        if not vs.codec_context.width or not vs.codec_context.height:
            raise VideoError(f"{src}: video stream has no frame size")
        _writable_dir(dst.parent if str(dst.parent) else Path("."))
        threshold = float(getattr(predictor, "threshold", 0.5))
        run = {"warnings": []}  # timings, counts and the frame geometry, filled in by encode_to

        def encode_to(tmp: Path) -> None:
            pool = ThreadPoolExecutor(max_workers=1)
            out = None
            try:
                out = av.open(str(tmp), "w", format=fmt)
                audio = []  # (input stream, output stream) pairs copied packet for packet
                takes = out.supported_codecs
                for a_in in inp.streams.audio:
                    name = a_in.codec_context.name
                    if name in takes:
                        try:
                            audio.append((a_in, out.add_stream_from_template(a_in)))
                            continue
                        except (av.error.FFmpegError, ValueError):
                            pass
                    run["warnings"].append(f"{src}: audio stream {a_in.index} ({name}) cannot go into a {dst.suffix} "
                                           "file; dropped")
                a_map = {a_in.index: a_out for a_in, a_out in audio}
                vstream = {}  # the H.264 stream, made on the first frame (its rotation and size come with it)
                t0 = time.perf_counter()
                t_model = t_dec = t_enc = 0.0
                n = 0
                total = vs.frames or 0
                bar = progress(total or None, "video") if progress else None
                last_pts = [None]
                avi_tb = 1 / Fraction(rate)

                def open_video(k: int, stored_h: int, stored_w: int) -> None:
                    os_ = out.add_stream("libx264", rate=rate)
                    os_.width, os_.height = stored_w + stored_w % 2, stored_h + stored_h % 2
                    os_.pix_fmt = "yuv420p"
                    # AVI stores no presentation times, so no B-frames there (decode order = display order)
                    os_.options = dict(X264_OPTIONS, **({"bf": "0"} if fmt == "avi" else {}))
                    tb = avi_tb if fmt == "avi" else vs.time_base or avi_tb
                    os_.codec_context.time_base = tb
                    os_.time_base = tb
                    if k and fmt != "avi":
                        os_.set_display_rotation(90 * k)
                    vstream["s"] = os_

                def out_pts(time_s, pts) -> int:
                    """The output timestamp: the input's own (in the input's time base), or its time in frames for
                    AVI; a missing or repeated one follows the previous frame by one tick (encoders need them rising)."""
                    if fmt == "avi":
                        v = None if time_s is None else int(round(time_s * rate))
                    else:
                        v = pts
                    if v is None or (last_pts[0] is not None and v <= last_pts[0]):
                        step = 1 if fmt == "avi" else max(1, round(1 / (rate * vstream["s"].codec_context.time_base)))
                        v = 0 if last_pts[0] is None else last_pts[0] + step
                    last_pts[0] = v
                    return v

                def encode(batch, probs, packets):  # overlays + H.264, in a worker thread while the model runs on the next batch
                    nonlocal t_enc
                    t = time.perf_counter()
                    os_, k = vstream["s"], run["k"]
                    for (img, pts), prob in zip(batch, probs):
                        ov = overlay(img, prob, threshold, legend=legend)
                        frame_rgb = np.concatenate([img, ov], axis=1) if side_by_side else ov
                        if k and fmt != "avi":  # back to the input's storage; the display matrix turns it upright
                            frame_rgb = np.rot90(frame_rgb, -k)
                        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(_pad_even(frame_rgb)), format="rgb24")
                        vf.pts, vf.time_base = pts, os_.codec_context.time_base
                        for pkt in os_.encode(vf):
                            out.mux(pkt)
                    for pkt in packets:  # the audio demuxed alongside these frames; the muxer interleaves
                        pkt.stream = a_map[pkt.stream_index]
                        out.mux(pkt)
                    t_enc += time.perf_counter() - t

                pending = None
                ema = None
                flick = _Flicker()

                def flush(batch, packets):
                    nonlocal t_model, n, pending, ema
                    t = time.perf_counter()
                    probs = predictor.predict_batch([img for img, _ in batch]) if batch else []
                    t_model += time.perf_counter() - t
                    shown = []
                    for prob in probs:
                        if smooth:
                            ema = prob.copy() if ema is None or ema.shape != prob.shape else \
                                smooth * ema + (1.0 - smooth) * prob  # a new array: the encoder thread holds the last
                            shown.append(ema)
                        else:
                            shown.append(prob)
                        raw = prob >= threshold
                        flick.add(shown[-1] >= threshold if smooth else raw, raw)
                    if pending is not None:
                        pending.result()  # the previous batch is written (or its error raised here), so frames stay in order
                    pending = pool.submit(encode, batch, shown, packets)
                    n += len(batch)
                    if bar is not None:
                        bar.update(len(batch))
                        bar.set_postfix(fps=f"{n / (time.perf_counter() - t0):.2f}")

                batch, packets = [], []
                stopped, broken = False, None
                t = time.perf_counter()
                try:
                    for packet in inp.demux(vs, *(a for a, _ in audio)):
                        if packet.stream.type == "audio":
                            # .mkv and .avi cannot store times before 0: an audio encoder's priming packet would shift
                            # every stream later, so it is left out there (the video's timestamps come first)
                            if packet.dts is not None and packet.size and (fmt == "mp4" or (packet.pts or 0) >= 0):
                                packets.append(packet)
                            continue
                        for frame in packet.decode():
                            img = frame.to_ndarray(format="rgb24")
                            k = round((frame.rotation or 0) / 90) % 4
                            if not vstream:  # the rotation of the first frame holds for the clip
                                run["k"] = k
                                uh, uw = img.shape[:2] if k % 2 == 0 else img.shape[1::-1]  # upright
                                ch, cw = uh, uw * (2 if side_by_side else 1)  # what is drawn
                                run["written"] = (cw + cw % 2, ch + ch % 2)  # as displayed, padded for 4:2:0
                                keep = k if fmt != "avi" else 0
                                open_video(keep, *((cw, ch) if keep % 2 else (ch, cw)))
                            k = run["k"]
                            if k:
                                img = np.ascontiguousarray(np.rot90(img, k))  # upright for the model
                            batch.append((img, out_pts(frame.time, frame.pts)))
                            if len(batch) == batch_size:
                                t_dec += time.perf_counter() - t
                                flush(batch, packets)
                                batch, packets = [], []
                                t = time.perf_counter()
                            if max_frames and n + len(batch) >= max_frames:
                                stopped = True
                                break
                        if stopped:
                            break
                except av.error.FFmpegError as exc:
                    if n + len(batch) == 0:
                        raise VideoError(f"{src}: decoding failed before the first frame ({exc.__class__.__name__})") from None
                    broken = exc.__class__.__name__  # a cut-off file: keep the frames read so far, and say so below
                t_dec += time.perf_counter() - t
                if batch or (packets and vstream):  # the last frames, and audio that runs past them
                    flush(batch, packets)
                if pending is not None:
                    pending.result()
                if n == 0:
                    raise VideoError(f"{src}: no video frames could be decoded")
                t = time.perf_counter()
                for pkt in vstream["s"].encode():
                    out.mux(pkt)
                out.close()
                out = None
                t_enc += time.perf_counter() - t
                if bar is not None:
                    bar.close()
                if broken or (total and n < total and not stopped):
                    why = f"decoding stopped ({broken})" if broken else "the video ended"
                    says = f", but its header says {total}" if total else ""
                    run["warnings"].append(f"{src}: {why} after {n} frames{says} (truncated or damaged file?); "
                                           f"the output has those {n}")
                run.update(t0=t0, n=n, t_model=t_model, t_dec=t_dec, t_enc=t_enc, flicker=flick.results(),
                           audio=len(audio))
            finally:
                pool.shutdown(wait=True)  # the encoder thread is done with the file before it is renamed or removed
                if out is not None:
                    try:
                        out.close()
                    except Exception:  # noqa: BLE001 - already failing; the temporary file is removed next
                        pass

        atomic_write(dst, encode_to, by_name=True)
        for msg in run["warnings"]:
            log.warning(msg)
        k = run["k"]
        h, w = (vs.codec_context.height, vs.codec_context.width) if k % 2 == 0 else \
            (vs.codec_context.width, vs.codec_context.height)
        return VideoSummary(str(src), str(dst), run["n"], w, h, float(rate), time.perf_counter() - run["t0"],
                            run["t_model"], run["t_dec"], run["t_enc"],
                            tuple(predictor.input_size(h, w)) if hasattr(predictor, "input_size") else None,
                            rotation=(0, 90, 180, -90)[k], smooth=smooth, threshold=threshold,
                            audio_streams=run["audio"], warnings=run["warnings"], written=run.get("written"),
                            **run["flicker"])
    finally:
        inp.close()
