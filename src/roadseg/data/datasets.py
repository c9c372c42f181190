"""Road datasets: KITTI Road, CamVid, and a generic image+mask folder. Each sample is
(image uint8 (3,H,W), target uint8 (H,W) with 0 = not road, 1 = road, 255 = ignore, name, category), plus
weight float32 (H,W), the per-pixel loss weights, once a training set is given them (use_bev_weights)."""

from __future__ import annotations

import bisect
import copy
import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from roadseg.data.io import IMAGE_EXTS, KITTI_NAME, image_size, list_images, read_image, read_mask
from roadseg.errors import DataError

log = logging.getLogger(__name__)
IGNORE = 255


@dataclass
class Sample:
    name: str  # frame name, e.g. um_000000
    image: Path
    mask: Path | None
    category: str


class RoadDataset(Dataset):
    """Base: a list of samples plus how to turn a mask into a target. `preload` decodes every frame once
    (which also proves none is corrupt before training starts)."""

    has_calibration = False  # whether frames may have KITTI calibration files (calib/ beside image_2/)

    def __init__(self, samples: list[Sample], transform=None, preload: bool = False, check_sizes: bool = True):
        if not samples:
            raise DataError("dataset is empty")
        self.samples = samples
        self.transform = transform
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self.kept_bytes = 0
        self._weights: dict[int, np.ndarray] | None = None  # per-pixel loss weights by frame (use_bev_weights)
        if check_sizes:
            self._check_sizes()
        if preload:
            self.preload()

    def preload(self, budget: int | None = None, skip_bad: bool = False) -> list[tuple[str, str]]:
        """Decode every frame and mask now, so that a bad file is found before any work starts, and keep the decoded
        frames while their bytes fit in `budget` (None: keep all, 0: keep none); the rest are decoded again each time
        they are read (`kept_frames`, `kept_bytes` say how many are held). A file that fails raises DataError; with
        `skip_bad` its frame is left out instead and listed: returns (frame name, reason) for each, in order."""
        good, bad, cache, kept = [], [], {}, 0
        for i, s in enumerate(self.samples):
            try:
                item = self._cache.get(i) or self._decode(i)
            except DataError as exc:
                if not skip_bad:
                    raise
                bad.append((s.name, str(exc)))
                continue
            size = item[0].nbytes + (item[1].nbytes if item[1] is not None else 0)
            if budget is None or kept + size <= budget:
                cache[len(good)] = item
                kept += size
            good.append(s)
        self.samples, self._cache, self.kept_bytes = good, cache, kept
        return bad

    @property
    def kept_frames(self) -> int:
        return len(self._cache)

    def _check_sizes(self) -> None:
        bad = []
        for s in self.samples:
            if s.mask is None:
                continue
            wi, hi = image_size(s.image)
            wm, hm = image_size(s.mask)
            if (wi, hi) != (wm, hm):
                bad.append(f"{s.mask} is {wm}x{hm} but {s.image} is {wi}x{hi}")
        if bad:
            more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
            raise DataError("mask size differs from frame: " + "; ".join(bad[:3]) + more)

    def mask_to_target(self, mask: np.ndarray, path: Path) -> np.ndarray:
        raise NotImplementedError

    def _decode(self, i: int):
        s = self.samples[i]
        img = read_image(s.image)
        target = None
        if s.mask is not None:
            target = self.mask_to_target(read_mask(s.mask), s.mask)
            if target.shape != img.shape[:2]:
                raise DataError(f"{s.mask}: mask is {target.shape[1]}x{target.shape[0]} but frame "
                                f"{s.image} is {img.shape[1]}x{img.shape[0]}")
        return img, target

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        img, target = self._cache.get(i) or self._decode(i)
        s = self.samples[i]
        out = {"image": torch.from_numpy(img).permute(2, 0, 1).contiguous(),
               "target": torch.from_numpy(target) if target is not None else None,
               "name": s.name, "category": s.category, "index": i}
        if self._weights is not None:  # uniform where the frame has no weight map
            w = self._weights.get(i)
            out["weight"] = torch.from_numpy(w).float() if w is not None else torch.ones(img.shape[:2])
        if self.transform is not None:
            out = self.transform(out)
        return out

    @property
    def categories(self) -> list[str]:
        return sorted({s.category for s in self.samples})

    def use_bev_weights(self, cap: int) -> list[str]:
        """From now on each sample carries `weight`: for each pixel the number of bird's-eye-view cells whose sample
        lands on it (bev.cells_per_pixel through the frame's calibration file), at least 1 and at most `cap` (see
        train.pixel_weight). A frame without a calibration file (never guessed) weighs 1 everywhere: returns their
        names. A malformed calibration file is a DataError naming it. Maps are kept as 8-bit counts (cap <= 255)."""
        from roadseg.data import bev

        if not 1 <= cap <= 255:
            raise ValueError(f"cap {cap} is not in [1, 255]")
        weights, missing = {}, []
        for i, s in enumerate(self.samples):
            w, h = image_size(s.image)
            lk = bev.frame_lookup(s.image, (h, w)) if self.has_calibration else None
            if lk is None:
                missing.append(s.name)
                continue
            weights[i] = np.clip(bev.cells_per_pixel(lk, (h, w)), 1, cap).astype(np.uint8)
        self._weights = weights
        return missing


class KittiRoad(RoadDataset):
    """KITTI Road, `data_road` layout: training/image_2/{cat}_NNNNNN.{png,jpg} and
    training/gt_image_2/{cat}_{task}_NNNNNN.png. Road = blue > 0, evaluated area = red > 0 (devkit rule)."""

    has_calibration = True

    def mask_to_target(self, mask, path):
        if mask.ndim != 3:
            raise DataError(f"{path}: expected an RGB KITTI mask, got a single-channel image")
        target = (mask[:, :, 2] > 0).astype(np.uint8)
        target[mask[:, :, 0] == 0] = IGNORE
        return target


class CamVid(RoadDataset):
    """CamVid class-id masks: road = 3, unlabelled = 11 ignored, the rest not road."""

    ROAD, VOID = 3, 11

    def mask_to_target(self, mask, path):
        if mask.ndim != 2:
            raise DataError(f"{path}: expected a single-channel class-id mask, got {mask.shape}")
        target = (mask == self.ROAD).astype(np.uint8)
        target[mask == self.VOID] = IGNORE
        return target


def parse_value(text: str | None, what: str):
    """'3' -> 3 (grey id); '255,0,255' -> (255, 0, 255) (colour)."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        raise DataError(f"{what}: '{text}' is not an id (e.g. 1) or a colour (e.g. 255,0,255)") from None
    if len(vals) not in (1, 3) or not all(0 <= v <= 65535 for v in vals):
        raise DataError(f"{what}: '{text}' is not an id (e.g. 1) or a colour (e.g. 255,0,255)")
    if len(vals) == 3 and max(vals) > 255:
        raise DataError(f"{what}: '{text}': colour components are 0-255")
    return vals[0] if len(vals) == 1 else vals


class FolderDataset(RoadDataset):
    """Any images + masks pair of folders, matched by file stem. Road and ignore are a grey id or an RGB colour."""

    def __init__(self, samples, road, ignore=None, **kw):
        self.road, self.ignore = road, ignore
        super().__init__(samples, **kw)

    def _match(self, mask, value):
        if isinstance(value, tuple):
            if mask.ndim != 3:
                return np.zeros(mask.shape[:2], bool)
            return np.all(mask == np.asarray(value), axis=2)
        return (mask if mask.ndim == 2 else mask[:, :, 0]) == value

    def mask_to_target(self, mask, path):
        target = self._match(mask, self.road).astype(np.uint8)
        if self.ignore is not None:
            target[self._match(mask, self.ignore)] = IGNORE
        return target


# ------------------------------------------------------------------ discovery and splits

_KITTI_MASK = re.compile(r"^(um|umm|uu)_(road|lane)_(\d{6})$")


def _pair_check(frames: dict[str, Path], masks: dict[str, Path], where: str) -> None:
    missing_mask = sorted(set(frames) - set(masks))
    missing_frame = sorted(set(masks) - set(frames))
    problems = []
    if missing_mask:
        problems.append(f"frames without mask: {', '.join(str(frames[n].name) for n in missing_mask[:5])}"
                        + (f" (+{len(missing_mask) - 5} more)" if len(missing_mask) > 5 else ""))
    if missing_frame:
        problems.append(f"masks without frame: {', '.join(str(masks[n].name) for n in missing_frame[:5])}"
                        + (f" (+{len(missing_frame) - 5} more)" if len(missing_frame) > 5 else ""))
    if problems:
        raise DataError(f"{where}: " + "; ".join(problems))


def kitti_samples(root: str | Path, task: str = "road", categories=("um", "umm", "uu"), labelled: bool = True) -> list[Sample]:
    root = Path(root)
    split = "training" if labelled else "testing"
    img_dir = root / split / "image_2"
    if not img_dir.is_dir():
        raise DataError(f"{root}: not a KITTI data_road folder (missing {split}/image_2)")
    frames = {}
    for p in list_images(img_dir):
        m = KITTI_NAME.match(p.stem)
        if m and m.group(1) in categories:
            if p.stem in frames:
                raise DataError(f"{p}: two frames named {p.stem} ({frames[p.stem].name} and {p.name})")
            frames[p.stem] = p
    if not frames:
        raise DataError(f"{img_dir}: no KITTI frames named like um_000000 for categories {', '.join(categories)}")
    if not labelled:
        return [Sample(n, p, None, n.split("_")[0]) for n, p in sorted(frames.items())]
    gt_dir = root / split / "gt_image_2"
    if not gt_dir.is_dir():
        raise DataError(f"{root}: missing {split}/gt_image_2 (the masks)")
    masks = {}
    for p in sorted(gt_dir.iterdir()):
        m = _KITTI_MASK.match(p.stem)
        if m and m.group(2) == task and m.group(1) in categories:
            masks[f"{m.group(1)}_{m.group(3)}"] = p
    if task == "lane":  # lane masks exist for a few um frames only: those frames are the dataset
        if not masks:
            raise DataError(f"{gt_dir}: no lane masks (um_lane_NNNNNN.png)")
        frames = {n: p for n, p in frames.items() if n in masks}
    _pair_check(frames, masks, str(root / split))
    return [Sample(n, frames[n], masks[n], n.split("_")[0]) for n in sorted(frames)]


def camvid_samples(root: str | Path, split: str) -> list[Sample]:
    root = Path(root)
    img_dir, ann_dir = root / split, root / f"{split}annot"
    if not img_dir.is_dir() or not ann_dir.is_dir():
        raise DataError(f"{root}: not a CamVid folder (missing {split}/ or {split}annot/)")
    frames = {p.stem: p for p in list_images(img_dir)}
    masks = {p.stem: p for p in list_images(ann_dir)}
    _pair_check(frames, masks, str(root))
    return [Sample(n, frames[n], masks[n], "camvid") for n in sorted(frames)]


def folder_samples(root: str | Path, image_dir: str, mask_dir: str) -> list[Sample]:
    root = Path(root)
    idir, mdir = root / image_dir, root / mask_dir
    for d in (idir, mdir):
        if not d.is_dir():
            raise DataError(f"{d}: folder not found")
    frames = {p.stem: p for p in list_images(idir)}
    masks = {p.stem: p for p in list_images(mdir)}
    if not frames:
        raise DataError(f"{idir}: no images ({', '.join(IMAGE_EXTS)})")
    _pair_check(frames, masks, str(root))
    return [Sample(n, frames[n], masks[n], "folder") for n in sorted(frames)]


def _read_list(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: split list file not found")
    return [line.strip() for line in p.read_text().splitlines() if line.strip() and not line.startswith("#")]


def split_samples(samples: list[Sample], split: str, val_last_n: int, train_list=None, val_list=None) -> list[Sample]:
    """'train' / 'val' / 'all'. Explicit list files win; otherwise the last `val_last_n` frames of each
    category are validation (KITTI's usual rule)."""
    if split == "all":
        return samples
    if split not in ("train", "val"):
        raise DataError(f"unknown split '{split}' (choose train, val or all)")
    lst = train_list if split == "train" else val_list
    if lst:
        names = _read_list(lst)
        by_name = {s.name: s for s in samples}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise DataError(f"{lst}: frames not in the dataset: {', '.join(unknown[:5])}")
        return [by_name[n] for n in names]
    val = set()
    for cat in sorted({s.category for s in samples}):
        names = sorted(s.name for s in samples if s.category == cat)
        val.update(names[len(names) - val_last_n :] if val_last_n else [])
    return [s for s in samples if (s.name in val) == (split == "val")]


# the height of each dataset's frames: what a model file written before it stored its own frame height was trained on
FRAME_HEIGHT = {"kitti": 375, "camvid": 360}


def trained_frame_height(ds, count: int = 50) -> int | None:
    """The median height of a training set's frames (of its first dataset, for a mix; from the first `count`
    headers): what the model file stores, so that `size auto` brings other frames to the height it learned on."""
    from roadseg.data.io import image_size

    base = ds.parts[0][0] if hasattr(ds, "parts") else ds
    heights = sorted(image_size(s.image)[1] for s in getattr(base, "samples", [])[:count])
    return heights[len(heights) // 2] if heights else None
VAL_LAST_N = 10  # the validation rule of this project's KITTI configs: the last 10 frames of each category

SEEN_NOTE = ("this model was trained on every frame, these validation frames included (data.val_last_n: 0): "
             "the scores below are not validation numbers; its model card gives the held-out ones")


def validation_config(data_cfg):
    """A checkpoint's data config as used for its validation split, and whether the model was trained on those
    frames: a file retrained on all frames (val_last_n 0) is scored on the usual last-10 frames, flagged as seen."""
    d = copy.copy(data_cfg)
    seen = d.dataset != "camvid" and not d.val_list and d.val_last_n == 0
    if seen:
        d.val_last_n = VAL_LAST_N
    return d, seen


def seen_in_training(train_cfg, eval_cfg, split: str) -> str | None:
    """Why the frames of `split` under `eval_cfg` were trained on by a model trained with `train_cfg`, or None:
    only when it is the same dataset in the same folder (a user's own folder is never flagged)."""
    for i, xsplit, d in extra_parts(train_cfg):  # frames that joined training through data.extra
        if not same_frames(d, eval_cfg) or (d.dataset == "camvid" and xsplit != split):
            continue  # a KITTI or folder extra gives every frame
        return (f"the model was trained on these frames (data.extra[{i}]"
                + (f", split {xsplit}" if d.dataset == "camvid" else "") + "): the scores below are not validation numbers")
    if eval_cfg.dataset != train_cfg.dataset or os.path.realpath(eval_cfg.root) != os.path.realpath(train_cfg.root):
        return None
    if split in ("train", "all"):
        return f"the model was trained on these frames (split '{split}'): the scores below are not validation numbers"
    if split == "val" and validation_config(train_cfg)[1]:
        return SEEN_NOTE
    return None


def list_samples(data_cfg, split: str) -> list[Sample]:
    """The frames (and masks) of a split, by file name only: nothing is opened."""
    d = data_cfg
    if d.dataset == "kitti":
        return split_samples(kitti_samples(d.root, d.task, tuple(d.categories)), split, d.val_last_n,
                             d.train_list, d.val_list)
    if d.dataset == "camvid":
        return camvid_samples(d.root, split)
    return split_samples(folder_samples(d.root, d.image_dir, d.mask_dir), split, d.val_last_n, d.train_list, d.val_list)


def build_dataset(data_cfg, split: str, transform=None, preload: bool = False, check_sizes: bool = True) -> RoadDataset:
    """A dataset from a DataConfig. `split` is train / val / all (camvid: train / val / test). `check_sizes`
    compares every mask's header with its frame's now (else each frame is checked when it is decoded)."""
    d = data_cfg
    samples = list_samples(d, split)
    cls, kw = {"kitti": KittiRoad, "camvid": CamVid}.get(d.dataset, FolderDataset), {}
    if cls is FolderDataset:
        kw = {"road": parse_value(d.road_value, "data.road_value"),
              "ignore": parse_value(d.ignore_value, "data.ignore_value")}
    if not samples:
        raise DataError(f"{d.root}: split '{split}' is empty")
    return cls(samples, transform=transform, preload=preload, check_sizes=check_sizes, **kw)


class Mixed(Dataset):
    """Training frames of several datasets as one: item i of the whole carries a global index (so each frame
    draws its own augmentation) and the network scale of its dataset (`scale`, read by TrainTransform)."""

    def __init__(self, parts: list[tuple[RoadDataset, float]], transform=None):
        self.parts, self.transform = parts, transform
        self.starts = [0]
        for ds, _ in parts:
            self.starts.append(self.starts[-1] + len(ds))

    def __len__(self):
        return self.starts[-1]

    def __getitem__(self, i: int) -> dict:
        k = bisect.bisect_right(self.starts, i) - 1
        ds, scale = self.parts[k]
        out = ds[i - self.starts[k]]
        out["index"], out["scale"] = i, scale
        return self.transform(out) if self.transform is not None else out

    @property
    def categories(self) -> list[str]:
        return sorted({c for ds, _ in self.parts for c in ds.categories})


def _extra_config(data_cfg, e: dict):
    """A data config for one data.extra entry: its own dataset, root and values (folder keys not inherited from the
    main config, whose road colour may mean nothing there), every frame of KITTI / folder extras."""
    d = copy.copy(data_cfg)
    default = type(data_cfg)()
    for k in ("task", "categories", "image_dir", "mask_dir", "road_value", "ignore_value"):
        setattr(d, k, copy.copy(getattr(default, k)))
    for k, v in e.items():
        if k not in ("splits", "scale"):
            setattr(d, k, str(v) if k in ("road_value", "ignore_value") else v)
    d.val_last_n, d.train_list, d.val_list, d.extra = 0, None, None, []
    return d


def extra_parts(data_cfg) -> list[tuple[int, str, object]]:
    """(index in data.extra, split, data config) for each set of extra frames."""
    out = []
    for i, e in enumerate(data_cfg.extra):
        d = _extra_config(data_cfg, e)
        for split in e.get("splits", ["train"]) if d.dataset == "camvid" else ["all"]:
            out.append((i, split, d))
    return out


def build_training_set(data_cfg, transform=None, val_ds: RoadDataset | None = None) -> RoadDataset | Mixed:
    """The training split of `data_cfg`, plus the frames of each `data.extra` dataset when there are any. An extra
    frame that is one of `val_ds`'s (same_frames: by name, in any copy of KITTI / CamVid) is refused."""
    main = build_dataset(data_cfg, "train", transform=None if data_cfg.extra else transform)
    kept = _keep(main, 0)
    if not data_cfg.extra:
        return main
    val_names = {s.name for s in val_ds.samples} if val_ds is not None else set()
    parts = [(main, data_cfg.scale)]
    for i, split, d in extra_parts(data_cfg):
        for k in ("road_value", "ignore_value"):
            parse_value(getattr(d, k), f"data.extra[{i}].{k}")
        ds = build_dataset(d, split)
        both = sorted(s.name for s in ds.samples if same_frames(d, data_cfg) and s.name in val_names)
        if both:
            raise DataError(f"data.extra[{i}]: {len(both)} of its frames are validation frames of this run "
                            f"({', '.join(both[:3])}{', ...' if len(both) > 3 else ''}); validation must stay held out")
        kept = _keep(ds, kept)
        parts.append((ds, float(data_cfg.extra[i].get("scale", data_cfg.scale))))
    return Mixed(parts, transform)


def use_bev_weights(ds: RoadDataset | Mixed, cap: int) -> list[str]:
    """Per-pixel bird's-eye-view loss weights (RoadDataset.use_bev_weights) for a training set, each of a mix's
    datasets included (only KITTI frames have calibration files); logs and returns the frames weighted uniformly."""
    parts = [p for p, _ in ds.parts] if isinstance(ds, Mixed) else [ds]
    missing = [name for p in parts for name in p.use_bev_weights(cap)]
    log.info("pixel weights by bird's-eye-view area (at most %d): %d of %d training frames have no calibration file "
             "and weigh 1 everywhere%s", cap, len(missing), len(ds),
             f" ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})" if missing else "")
    return missing


KEEP_TRAINING_BYTES = 4 << 30  # decoded training frames held in memory per process (4 GiB); the rest decoded per step


def _keep(ds: RoadDataset, kept: int) -> int:
    """Check every frame of `ds` by decoding it; keep them decoded while the whole training set stays within
    KEEP_TRAINING_BYTES. Returns the bytes kept so far."""
    ds.preload(max(KEEP_TRAINING_BYTES - kept, 0))
    if ds.kept_frames < len(ds):
        log.info("%s: %d of %d frames kept decoded in memory (%.1f GiB held in all); the rest are decoded when "
                 "drawn", ds.samples[0].image.parent, ds.kept_frames, len(ds), (kept + ds.kept_bytes) / 2**30)
    return kept + ds.kept_bytes


def trained_frame_names(trained, data_cfg) -> set[str]:
    """Names of the frames of `data_cfg`'s dataset that a model trained with the data config `trained` saw, read from
    `data_cfg`'s own copy (KITTI and CamVid names are the datasets' own, wherever a copy lives; a folder dataset
    counts only when it is the same folder). Raises DataError when that cannot be told."""
    def names(d, split):  # listed in data_cfg's copy (the same folder for a folder dataset)
        return {s.name for s in list_samples(dataclasses.replace(d, root=data_cfg.root), split)}

    out = names(trained, "train") if same_frames(trained, data_cfg) else set()
    for _, split, d in extra_parts(trained):
        if same_frames(d, data_cfg):
            out |= names(d, split)
    return out


def same_frames(a, b) -> bool:
    """Whether data configs a and b name the same frames: the same dataset, and for a folder dataset the same folder
    (KITTI and CamVid frames are the datasets' own, wherever a copy lives)."""
    return a.dataset == b.dataset and (a.dataset != "folder" or os.path.realpath(a.root) == os.path.realpath(b.root))
