"""The bird's-eye view (BEV) that KITTI's road server scores in, as the devkit's transform2BEV makes it.

The road plane (road coordinates, Y = 0) is sampled on a grid of 0.05 m cells, x in [-10, 10] m across and
z in [6, 46] m ahead: 800 rows (row 0 the far edge, z = 45.975 m) x 400 columns (column 0 at x = -9.975 m), at the
cells' centres (as float32, as the devkit's grids are). Each centre goes through the homography
H = (P2 . R0_rect . inv(Tr_cam_to_road))[:, [0, 2, 3]] to image coordinates (u, v) in the devkit's 1-based pixel
convention; a cell whose (u, v) lies in [1, W] x [1, H] takes the pixel at (trunc(v) - 1, trunc(u) - 1) (nearest by
truncation), every other cell is 0 in every channel. So a warped ground-truth image marks the cells outside the
camera's view as outside the evaluated area (red channel 0), and the measures are computed on the warped maps as on
perspective ones.

Calibration files are KITTI's data_road format: lines `KEY: v1 v2 ...`, with P2 (12 values), R0_rect (9) and
Tr_cam_to_road (12) used here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadseg.errors import DataError

RES = 0.05  # metres per cell
X_RANGE = (-10.0, 10.0)  # across, metres
Z_RANGE = (6.0, 46.0)  # ahead, metres
SIZE = (round((Z_RANGE[1] - Z_RANGE[0]) / RES), round((X_RANGE[1] - X_RANGE[0]) / RES))  # (800, 400)
_NEEDED = {"P2": 12, "R0_rect": 9, "Tr_cam_to_road": 12}
BAND_M = 10.0  # the distance bands eval reports the BEV measures in, metres ahead


def distance_bands(step_m: float = BAND_M) -> list[tuple[str, slice]]:
    """The grid's rows in bands of `step_m` metres ahead, nearest first: [("6-16 m", rows 600-799), ...,
    ("36-46 m", rows 0-199)] for 10 m (row 0 is the far edge)."""
    edges = np.append(np.arange(Z_RANGE[0], Z_RANGE[1] - 1e-9, step_m), Z_RANGE[1])  # the last band: what is left
    out = []
    for near, far in zip(edges[:-1], edges[1:]):
        rows = slice(round((Z_RANGE[1] - far) / RES), round((Z_RANGE[1] - near) / RES))
        out.append((f"{near:g}-{far:g} m", rows))
    return out


def read_calibration(path: str | Path) -> dict[str, np.ndarray]:
    """P2 (3x4), R0_rect (3x3) and Tr_cam_to_road (3x4) of a KITTI road calibration file, or a one-line DataError
    naming the file and what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise DataError(f"{path}: calibration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable calibration file ({exc.__class__.__name__})") from None
    values = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            raise DataError(f"{path}: line {n} is not 'KEY: numbers' (a KITTI calibration file?)")
        try:
            values[key.strip()] = np.array([float(v) for v in rest.split()], np.float64)
        except ValueError:
            raise DataError(f"{path}: line {n} ({key.strip()}) holds something that is not a number") from None
    out = {}
    for key, count in _NEEDED.items():
        if key not in values:
            raise DataError(f"{path}: no {key} line (a KITTI road calibration file has P2, R0_rect and Tr_cam_to_road)")
        if values[key].size != count:
            raise DataError(f"{path}: {key} has {values[key].size} values, not {count}")
        out[key] = values[key].reshape(3, 3 if count == 9 else 4)
    if not np.isfinite(np.concatenate([v.ravel() for v in out.values()])).all():
        raise DataError(f"{path}: holds a value that is not finite")
    return out


def homography(calib: dict[str, np.ndarray]) -> np.ndarray:
    """The 3x3 map from road-plane (x, z, 1) to image (u, v, 1) up to scale: (P2 . R0_rect . inv(Tr_cam_to_road))
    with R0_rect and Tr_cam_to_road made 4x4, columns x, z and 1 (road y = 0)."""
    r0 = np.eye(4)
    r0[:3, :3] = calib["R0_rect"]
    tr = np.eye(4)
    tr[:3, :] = calib["Tr_cam_to_road"]
    try:
        road_to_cam = np.linalg.inv(tr)
    except np.linalg.LinAlgError:
        raise DataError("Tr_cam_to_road is singular: not a rigid transform") from None
    return (calib["P2"] @ r0 @ road_to_cam)[:, [0, 2, 3]]


@dataclass(frozen=True)
class BevLookup:
    """For the cells of the grid that see the image: their (row, column) in the grid and the image pixel
    (row, column) each takes."""

    rows: np.ndarray
    cols: np.ndarray
    v: np.ndarray
    u: np.ndarray

    def warp(self, image: np.ndarray, fill=0) -> np.ndarray:
        """An (H, W) or (H, W, C) image -> its (800, 400[, C]) bird's-eye view; cells outside the image get `fill`."""
        out = np.full(SIZE + image.shape[2:], fill, dtype=image.dtype)
        out[self.rows, self.cols] = image[self.v, self.u]
        return out


def cell_centres() -> tuple[np.ndarray, np.ndarray]:
    """(x, z) of every cell centre as float32 (800, 400) grids, row 0 the far edge."""
    x = np.arange(X_RANGE[0] + RES / 2, X_RANGE[1], RES)
    z = np.arange(Z_RANGE[1] - RES / 2, Z_RANGE[0], -RES)
    xx, zz = np.meshgrid(x, z)
    return xx.astype(np.float32), zz.astype(np.float32)


def lookup(h33: np.ndarray, image_hw: tuple[int, int]) -> BevLookup:
    """The nearest-pixel lookup of the grid into an image of (height, width) through homography h33."""
    xx, zz = cell_centres()
    pts = np.stack([xx.ravel(), zz.ravel(), np.ones(xx.size, np.float32)]).astype(np.float64)
    uvw = h33 @ pts
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = uvw[0] / uvw[2], uvw[1] / uvw[2]
    h, w = image_hw
    ok = (u >= 1) & (u <= w) & (v >= 1) & (v <= h)
    cells = np.flatnonzero(ok)
    return BevLookup(cells // SIZE[1], cells % SIZE[1], v[ok].astype(np.int64) - 1, u[ok].astype(np.int64) - 1)


def calibration_file(image: str | Path) -> Path:
    """Where KITTI keeps a frame's calibration: <split>/calib/<name>.txt beside <split>/image_2/<name>.*"""
    image = Path(image)
    return image.parent.parent / "calib" / f"{image.stem}.txt"


def frame_lookup(image: str | Path, image_hw: tuple[int, int]) -> BevLookup | None:
    """The BEV lookup of a KITTI frame from its calibration file; None when the frame has none (never guessed)."""
    path = calibration_file(image)
    if not path.is_file():
        return None
    try:
        return lookup(homography(read_calibration(path)), image_hw)
    except DataError as exc:
        msg = str(exc)
        raise DataError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def cells_per_pixel(lk: BevLookup, image_hw: tuple[int, int]) -> np.ndarray:
    """How many grid cells take each pixel of the (height, width) image that `lk` looks into: (H, W) int64 counts,
    0 where no cell's sample lands (above the horizon, outside the 20 m x 40 m area). They sum to the number of cells
    that see the image; a warped map's measure counts a pixel that many times."""
    h, w = image_hw
    return np.bincount(lk.v * w + lk.u, minlength=h * w).reshape(h, w)
