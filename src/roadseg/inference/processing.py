"""The two ends of every prediction, as plain functions: `preprocess` (uint8 RGB frames -> the network's float
input at the size InferenceSettings gives) and `postprocess` (the network's logits -> road probabilities at the
frames' size). The predictor, INT8 calibration, the benchmark and the video loop all call these; there is no second
copy of the preparation. The network input keeps the frame's 0-255 RGB values: normalisation is inside the model
(and inside the exported graph)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from roadseg.data.transforms import resize_image
from roadseg.errors import DataError, RoadsegError

# Network input pixels per call (frames x height x width). Measured: ONNX Runtime fp32 on the VGG16 FCN peaks at
# about 0.5 kB per input pixel (1 Mpx: +0.5 GB), so 12 Mpx is about 6 GB; a 64-Mpx input would need about 30 GB.
# Batches over it run in smaller chunks; a single frame over it is refused (use a smaller size or scale). The
# full-resolution side (upsampled probabilities, overlays) costs about 35 bytes per image pixel (64 Mpx: 2.2 GB peak).
MAX_NETWORK_PIXELS = 12_000_000


def as_frame(image) -> np.ndarray:
    """The one frame format: (H, W, 3) uint8 RGB. PIL images are converted to RGB; anything else is refused with
    what to do (float arrays are ambiguous, 0-1 or 0-255, so they are not guessed at)."""
    if not isinstance(image, np.ndarray):
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover
            Image = None
        if Image is not None and isinstance(image, Image.Image):
            return np.array(image.convert("RGB"))  # a writable copy
        raise RoadsegError(f"expected a frame as an (H, W, 3) uint8 RGB numpy array or a PIL image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise RoadsegError(f"expected an (H, W, 3) RGB frame, got shape {image.shape} (grey frames: np.stack([g] * 3, -1); "
                           "RGBA: drop the alpha channel)")
    if image.dtype != np.uint8:
        raise RoadsegError(f"expected uint8 RGB 0-255, got {image.dtype}: convert explicitly, e.g. "
                           "(x * 255).round().astype(np.uint8) for floats in [0, 1]; OpenCV's BGR: frame[..., ::-1]")
    return image


def network_size(settings, h: int, w: int) -> tuple[int, int]:
    """The network input (height, width) for an h x w frame, refused with a one-line error over MAX_NETWORK_PIXELS."""
    hw = settings.input_size(h, w)
    if hw[0] * hw[1] > MAX_NETWORK_PIXELS:
        raise DataError(f"a {w}x{h} frame would run at {hw[1]}x{hw[0]} ({hw[0] * hw[1] / 1e6:.3g} Mpx), over the "
                        f"{MAX_NETWORK_PIXELS / 1e6:g} Mpx network input limit (memory): use a smaller size (e.g. "
                        f"{settings.frame_height or 375}) or scale")
    return hw


def prepare(image: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, h, w) float 0-255 at the network size hw (antialiased when shrinking)."""
    return resize_image(as_tensor(as_frame(image)).permute(2, 0, 1), hw)


def as_tensor(frame: np.ndarray) -> torch.Tensor:
    """An array (a frame, a mask) as a tensor sharing its memory; a copy where it is not contiguous or is read-only
    (np.asarray of a PIL image: torch warns on those, though nothing here writes to them)."""
    return torch.from_numpy(np.require(frame, requirements=["C_CONTIGUOUS", "WRITEABLE"]))


# Around an ONNX Runtime session, torch runs on one thread: a multi-threaded torch op just before or after the
# session leaves torch's OpenMP threads spinning beside ONNX Runtime's on the same cores (2 Xeon cores, Lite0 at scale
# 0.75: 26-49 ms end to end). On one thread torch spawns no such spinning workers, and its uint8 antialiased resize is
# still the fastest there is here (AMD EPYC, one 375x1242 frame to 0.75: torch 1.1 ms, Pillow 4.1-6.4 ms, ONNX
# Runtime's Resize 4.2 ms; within 1 grey level of each other).
@contextlib.contextmanager
def one_torch_thread():
    """torch on one intra-op thread inside the block (restored after)."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def resize_frame(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8, bilinear, antialiased when shrinking (torch, on one thread)."""
    with one_torch_thread():
        t = as_tensor(frame).permute(2, 0, 1)[None]  # a channels-last view
        out = F.interpolate(t, size=hw, mode="bilinear", antialias=hw[0] < frame.shape[0], align_corners=False)
        return out[0].permute(1, 2, 0).numpy()


def preprocess(frames: list[np.ndarray], settings, kind: str = "float"):
    """Same-sized (H, W, 3) uint8 RGB frames -> the network input for `settings`, as a runtime of `kind` takes it:
    'float', an (N, 3, h, w) float 0-255 tensor, or 'uint8', an (N, h, w, 3) uint8 array (a frame already at the
    network size goes in as it is; a resized one is rounded back to uint8). The network sees each frame below
    settings.top(H) (a view, no copy). With settings.tta the mirrored frames follow (2N)."""
    h, w = frames[0].shape[:2]
    hw = network_size(settings, h, w)
    t = settings.top(h)
    frames, h = ([f[t:] for f in frames], h - t) if t else (frames, h)
    if kind == "uint8":
        if (h, w) == hw:
            x = frames[0][None] if len(frames) == 1 else np.stack(frames)
        else:
            x = np.stack([resize_frame(as_frame(f), hw) for f in frames])
        return np.concatenate([x, x[:, :, ::-1]]) if settings.tta else x
    x = torch.stack([prepare(f, hw) for f in frames])
    return torch.cat([x, x.flip(-1)]) if settings.tta else x


def logits_to_prob(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) logits -> (B, H, W) road probability at the frame's size: for two classes the sigmoid of the
    logit difference, upsampled once instead of two maps."""
    logits = logits.float()
    if logits.shape[1] == 2:
        d = (logits[:, 1:2] - logits[:, 0:1])
        if tuple(d.shape[-2:]) != tuple(size):
            d = F.interpolate(d, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid_(d[:, 0])  # in place: d is this function's own tensor (saves a full-size copy)
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return torch.softmax(logits, 1)[:, 1]


def postprocess(out, size: tuple[int, int], tta: bool = False, kind: str = "logits", top: int = 0) -> list[np.ndarray]:
    """The network's output (a runtime's `kind`: 'logits' (B, C, h, w), or 'prob', the road probability (B, 1, h, w)
    as numpy) -> one (H, W) float32 road probability per frame at the frames' size. With tta the second half of the
    batch is the mirrored frames: flipped back and averaged with the first. A probability already at the frames' size
    is returned as it is (views, no copy and no torch op: see optimize.runtime.pad_frames); one of another size is
    upsampled bilinearly, as the logits are. top: the rows above the network's view (settings.top), probability 0."""
    if top:
        probs = postprocess(out, (size[0] - top, size[1]), tta, kind)
        full = np.zeros((len(probs), *size), np.float32)
        full[:, top:] = probs
        return list(full)
    if kind == "prob":
        prob = np.asarray(out)[:, 0]
        if tuple(prob.shape[-2:]) != tuple(size):
            prob = F.interpolate(torch.from_numpy(np.ascontiguousarray(prob))[:, None], size=size, mode="bilinear",
                                 align_corners=False)[:, 0].numpy()
        if tta:
            n = prob.shape[0] // 2
            prob = 0.5 * (prob[:n] + prob[n:, :, ::-1])
        return list(prob)
    prob = logits_to_prob(out, size)
    if tta:
        n = prob.shape[0] // 2
        prob = 0.5 * (prob[:n] + prob[n:].flip(-1))
    return list(prob.cpu().numpy())  # float32 already: views, no copy


def passes(frames: list[np.ndarray], settings) -> list[tuple[list[np.ndarray], object]]:
    """The network passes over same-sized frames, as (frames, settings) pairs: the frames with `settings`, and with
    settings.far_zoom the far band of each (views) with settings.zoomed (the predictor runs them, the benchmark
    times them)."""
    if not settings.far_zoom:
        return [(frames, settings)]
    h = frames[0].shape[0]
    first, end = settings.far_band(h)
    return [(frames, settings), ([f[first:end] for f in frames], settings.zoomed(h))]


def far_weights(h: int, band: tuple[int, int]) -> np.ndarray:
    """The zoomed pass's weight on each row of the far band [first, end) of an h-row frame (settings.far_zoom):
    FAR_WEIGHT, falling linearly to 0 over the band's last FAR_RAMP of the height (the first pass takes the rest)."""
    from roadseg.inference.settings import FAR_RAMP, FAR_WEIGHT

    w = np.full(band[1] - band[0], FAR_WEIGHT, np.float32)
    ramp = min(len(w), int(h * FAR_RAMP))
    if ramp:
        w[len(w) - ramp :] = np.linspace(FAR_WEIGHT, 0.0, ramp, dtype=np.float32)
    return w


def blend_far(probs: list[np.ndarray], zoomed: list[np.ndarray], band: tuple[int, int]) -> list[np.ndarray]:
    """Each frame's probability with the zoomed pass's (the far band's rows, at the frame's width) averaged in over
    the band by far_weights; new arrays, the inputs untouched."""
    if not probs:
        return []
    w = far_weights(probs[0].shape[0], band)[:, None]  # same-sized frames: one set of weights
    out = []
    for p, z in zip(probs, zoomed):
        p = np.array(p, np.float32)
        p[band[0] : band[1]] += w * (z - p[band[0] : band[1]])
        out.append(p)
    return out
