"""Image and video pipelines on top of a Predictor: overlays, masks, probability PNGs, annotated video."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from roadseg.data.datasets import KITTI_NAME
from roadseg.data.io import atomic_write, guard_outputs, kitti_prob_name, read_image, save_png_atomic
from roadseg.errors import DataError, RoadsegError, VideoError
from roadseg.metrics import quantize

log = logging.getLogger(__name__)
ROAD_RGB = (255, 0, 200)  # magenta tint, like the KITTI masks
EDGE_RGB = (255, 255, 0)

X264_OPTIONS = {"crf": "20", "preset": "superfast"}
_ROAD16, _EDGE8 = torch.tensor(ROAD_RGB, dtype=torch.int16), torch.tensor(EDGE_RGB, dtype=torch.uint8)


def overlay(image: np.ndarray, prob: np.ndarray, threshold: float = 0.5, alpha: float = 0.45) -> np.ndarray:
    """Tint road pixels and draw the road boundary in yellow. image (H, W, 3) uint8, prob (H, W) in [0, 1].
    Integer arithmetic in torch (multi-threaded): image + (tint - image) * alpha, alpha in 1/256 steps."""
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
    out = torch.where((road & ~inner)[..., None], _EDGE8, out)
    return out.numpy()


def _writable_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RoadsegError(f"{out}: cannot create output folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK):
        raise RoadsegError(f"{out}: output folder is not writable")
    return out


def predict_images(predictor, paths: list[Path], out_dir: str | Path, probs: bool = False, skip_bad: bool = False,
                   batch_size: int = 4, task: str = "road", progress=None) -> dict:
    """Write `<name>_overlay.png`, `<name>_mask.png` (and with probs the KITTI-named probability PNG) per frame.
    All inputs are decoded first, so an unreadable one stops the run before anything is written
    (or, with skip_bad, is listed and skipped). Returns {"written": [...], "skipped": [(path, reason)]}."""
    out = Path(out_dir)
    guard_outputs([out / f"{Path(p).stem}{suffix}" for p in paths for suffix in ("_overlay.png", "_mask.png")]
                  + [out / _prob_name(Path(p), task) for p in paths if probs], inputs=paths)
    images, skipped = [], []
    for p in paths:
        try:
            images.append((Path(p), read_image(p)))
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append((str(p), str(exc)))
    out = _writable_dir(Path(out_dir))
    written = []
    threshold = getattr(predictor, "threshold", 0.5)  # the model's validation operating point, or --threshold
    bar = progress(len(images), "predict") if progress else None
    for i in range(0, len(images), batch_size):
        chunk = images[i : i + batch_size]
        for (p, img), prob in zip(chunk, predictor.predict_batch([im for _, im in chunk])):
            try:
                save_png_atomic(overlay(img, prob, threshold), out / f"{p.stem}_overlay.png")
                save_png_atomic(((prob >= threshold) * 255).astype(np.uint8), out / f"{p.stem}_mask.png")
                if probs:
                    save_png_atomic(quantize(prob), out / _prob_name(p, task))
            except OSError as exc:
                raise RoadsegError(f"{out}: cannot write output ({exc.strerror or exc})") from None
            written.append(str(p))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return {"written": written, "skipped": skipped}


def _prob_name(p: Path, task: str) -> str:
    return kitti_prob_name(p.stem, task) if KITTI_NAME.match(p.stem) else f"{p.stem}_prob.png"


@dataclass
class VideoSummary:
    input: str
    output: str
    frames: int
    width: int
    height: int
    fps: float
    wall_s: float
    model_s: float
    decode_s: float
    encode_s: float
    network_input: tuple[int, int] | None = None  # the network's (height, width) for these frames

    @property
    def mean_fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "mean_fps": self.mean_fps}

    def text(self) -> str:
        net = f", network input {self.network_input[1]}x{self.network_input[0]}" if self.network_input else ""
        return (f"{self.frames} frames ({self.width}x{self.height} @ {self.fps:.2f} fps{net}) in {self.wall_s:.1f} s: "
                f"{self.mean_fps:.2f} frames/s; model {self.model_s:.1f} s ({100 * self.model_s / max(self.wall_s, 1e-9):.0f}%), "
                f"decode {self.decode_s:.1f} s, overlay + encode {self.encode_s:.1f} s (in parallel with the model)")


def process_video(predictor, src: str | Path, dst: str | Path, side_by_side: bool = False, batch_size: int = 4,
                  progress=None, max_frames: int = 0) -> VideoSummary:
    """Stream `src` through the model and write an annotated H.264 `dst` at the input's frame rate and size.
    Frames are decoded, predicted and encoded in batches; the clip is never held in memory. Output goes to a
    temporary file renamed at the end (data.io.atomic_write), so a failure leaves no truncated `dst`."""
    import av

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise VideoError(f"{src}: video file not found")
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
        w, h = vs.codec_context.width, vs.codec_context.height
        if not w or not h:
            raise VideoError(f"{src}: video stream has no frame size")
        _writable_dir(dst.parent if str(dst.parent) else Path("."))
        run = {}  # timings and frame count, filled in by encode_to

        def encode_to(tmp: Path) -> None:
            pool = ThreadPoolExecutor(max_workers=1)
            try:
                out = av.open(str(tmp), "w", format="mp4")
                ow = 2 * w if side_by_side else w
                os_ = out.add_stream("libx264", rate=rate)
                os_.width, os_.height = ow, h
                # H.264 4:2:0 needs even sizes; odd sizes are kept exact with 4:4:4
                os_.pix_fmt = "yuv420p" if ow % 2 == 0 and h % 2 == 0 else "yuv444p"
                os_.options = dict(X264_OPTIONS)
                t0 = time.perf_counter()
                t_model = t_dec = t_enc = 0.0
                n = 0
                total = vs.frames or 0
                bar = progress(total or None, "video") if progress else None

                def encode(batch, probs):  # overlays + H.264, in a worker thread while the model runs on the next batch
                    nonlocal t_enc
                    t = time.perf_counter()
                    for img, prob in zip(batch, probs):
                        ov = overlay(img, prob, getattr(predictor, "threshold", 0.5))
                        frame_rgb = np.concatenate([img, ov], axis=1) if side_by_side else ov
                        for pkt in os_.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")):
                            out.mux(pkt)
                    t_enc += time.perf_counter() - t

                pending = None

                def flush(batch):
                    nonlocal t_model, n, pending
                    t = time.perf_counter()
                    probs = predictor.predict_batch(batch)
                    t_model += time.perf_counter() - t
                    if pending is not None:
                        pending.result()  # the previous batch is written (or its error raised here), so frames stay in order
                    pending = pool.submit(encode, batch, probs)
                    n += len(batch)
                    if bar is not None:
                        bar.update(len(batch))
                        bar.set_postfix(fps=f"{n / (time.perf_counter() - t0):.2f}")

                batch = []
                t = time.perf_counter()
                try:
                    for frame in inp.decode(vs):
                        batch.append(frame.to_ndarray(format="rgb24"))
                        if len(batch) == batch_size:
                            t_dec += time.perf_counter() - t
                            flush(batch)
                            batch = []
                            t = time.perf_counter()
                        if max_frames and n + len(batch) >= max_frames:
                            break
                except av.error.FFmpegError as exc:
                    raise VideoError(f"{src}: decoding failed after {n + len(batch)} frames ({exc.__class__.__name__})") from None
                t_dec += time.perf_counter() - t
                if batch:
                    flush(batch)
                if pending is not None:
                    pending.result()
                if n == 0:
                    raise VideoError(f"{src}: no video frames could be decoded")
                t = time.perf_counter()
                for pkt in os_.encode():
                    out.mux(pkt)
                out.close()
                t_enc += time.perf_counter() - t
                if bar is not None:
                    bar.close()
                run.update(t0=t0, n=n, t_model=t_model, t_dec=t_dec, t_enc=t_enc)
            finally:
                pool.shutdown(wait=True)  # the encoder thread is done with the file before it is renamed or removed

        atomic_write(dst, encode_to, by_name=True)
        return VideoSummary(str(src), str(dst), run["n"], w, h, float(rate), time.perf_counter() - run["t0"],
                            run["t_model"], run["t_dec"], run["t_enc"],
                            tuple(predictor.input_size(h, w)) if hasattr(predictor, "input_size") else None)
    finally:
        inp.close()
