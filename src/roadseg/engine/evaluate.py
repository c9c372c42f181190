"""Evaluation with the KITTI devkit measures; frames are sharded across ranks under torchrun and the pooled
counts summed (not averaged), so N processes give exactly the counts of one."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from roadseg.config import from_dict
from roadseg.data.io import atomic_write, guard_outputs, prob_name, save_png_atomic
from roadseg.engine import distributed as dist
from roadseg.metrics import Counts, Evaluator

log = logging.getLogger(__name__)


def evaluate(predictor, dataset, save_probs: str | Path | None = None, task: str = "road",
             progress=None, bev: bool | None = None) -> Evaluator:
    """Run `predictor` on every frame of `dataset` (images at full size, targets 0/1/255) and pool the devkit counts
    of each frame's 8-bit probability map (Result.prob_u8). save_probs: a folder for those maps as PNGs, named for
    `task` (data.io.prob_name); none is left half-written. progress: a callable (total, desc) -> bar. Returns the
    Evaluator (results(), scores_at(threshold), frame_scores()). Under torchrun each rank takes every world-th frame;
    counts are all-reduced.

    bev: also the measures in the bird's-eye view KITTI's server scores (data.bev: the probability map and the
    ground truth warped as the devkit warps them), for the frames with a calibration file; None: when any frame has
    one, True: required, False: off. They are in ev.bev (an Evaluator, or None), the frames left out for want
    of a calibration file in ev.bev_missing, and the grid's counts per distance band (data.bev.distance_bands, all
    frames pooled, one Evaluator category per band) in ev.bev_bands, their labels in ev.bev_band_labels."""
    t0 = time.perf_counter()
    rank, size = dist.world()
    indices = dist.shard(list(range(len(dataset))))
    ev = Evaluator()
    views = _BirdsEye(dataset, bev)
    out = Path(save_probs) if save_probs else None
    made = out is not None and not out.exists()
    if out:
        samples = getattr(dataset, "samples", [])
        guard_outputs([out / prob_name(s.name, task) for s in samples],
                      inputs=[f for s in samples for f in (s.image, s.mask) if f is not None],
                      dataset_dirs=read_folders(samples))
        out.mkdir(parents=True, exist_ok=True)
    bar = progress(len(indices), "eval") if progress else None
    written: list[Path] = []
    try:
        for i in indices:
            s = dataset[i]
            img = s["image"].permute(1, 2, 0).numpy()
            prob = predictor.predict(img).prob_u8
            ev.add(s["name"], s["category"], prob, s["target"].numpy())
            views.add(i, s, prob)
            if out:
                written.append(out / prob_name(s["name"], task))
                save_png_atomic(prob, written[-1])
            if bar is not None:
                bar.update(1)
    except BaseException:  # a frame that became unreadable after the check, Ctrl-C: no half-written set of maps
        for f in written:
            f.unlink(missing_ok=True)
        if made and not any(out.iterdir()):
            out.rmdir()
        raise
    finally:
        if bar is not None:
            bar.close()
    if size > 1:
        cats = sorted({s.category for s in dataset.samples})
        for e in (ev, views.ev) if views.ev is not None else (ev,):
            _pool_ranks(e, cats)
        if views.bands is not None:
            _pool_ranks(views.bands, views.labels)  # an empty band is dropped: distance_scores makes it all n/a
    ev.bev, ev.bev_missing, ev.bev_bands, ev.bev_band_labels = views.ev, views.missing, views.bands, views.labels
    ev.wall_s = time.perf_counter() - t0
    return ev


def read_folders(samples) -> dict[Path, str]:
    """{folder: 'image' | 'label' | 'calibration'}: the folders a dataset's frames, masks and calibration files are
    read from (outputs must stay out of them: data.io.guard_outputs)."""
    from roadseg.data.bev import calibration_file

    out: dict[Path, str] = {}
    for s in samples:
        if s.image is not None and Path(s.image).parent not in out:  # each folder looked at once
            out[Path(s.image).parent] = "image"
            calib = calibration_file(s.image).parent
            if calib.is_dir():
                out.setdefault(calib, "calibration")
        if s.mask is not None:
            out.setdefault(Path(s.mask).parent, "label")
    return out


def _pool_ranks(ev: Evaluator, cats: list[str]) -> None:
    """Sum pooled counts per category across ranks; gather per-frame scores."""
    stacked = torch.from_numpy(np.stack([ev.by_cat.get(c, Counts()).to_array() for c in cats]))
    dist.all_reduce_sum(stacked)
    ev.by_cat = {c: Counts.from_array(stacked[j].numpy()) for j, c in enumerate(cats) if stacked[j, 512:].sum() > 0}
    frames = {}
    for part in dist.all_gather_objects(ev.per_frame):
        frames.update(part)
    ev.per_frame = dict(sorted(frames.items()))


class _BirdsEye:
    """The BEV side of evaluate: which frames have a calibration file, and their counts on the warped maps."""

    def __init__(self, dataset, wanted: bool | None):
        from roadseg.data.bev import calibration_file
        from roadseg.errors import DataError

        self.samples = list(getattr(dataset, "samples", []))
        has = [s.image is not None and calibration_file(s.image).is_file() for s in self.samples]
        self.ev, self.bands, self.rows, self.labels, self.missing = None, None, [], [], []
        if wanted is False or (wanted is None and not any(has)):
            return
        if not any(has):
            where = calibration_file(self.samples[0].image).parent if self.samples else "the dataset"
            raise DataError(f"{where}: no frame has a calibration file (NAME.txt), which the bird's-eye view needs")
        from roadseg.data.bev import distance_bands

        self.ev, self.bands, self.rows = Evaluator(), Evaluator(), distance_bands()  # bands: all frames pooled
        self.labels = [label for label, _ in self.rows]
        self.missing = [s.name for s, h in zip(self.samples, has) if not h]

    def add(self, i: int, s: dict, prob_u8: np.ndarray) -> None:
        if self.ev is None or self.samples[i].name in self.missing:
            return
        from roadseg.data.bev import frame_lookup
        from roadseg.metrics import IGNORE

        lk = frame_lookup(self.samples[i].image, prob_u8.shape)
        prob, target = lk.warp(prob_u8), lk.warp(s["target"].numpy(), fill=IGNORE)
        self.ev.add(s["name"], s["category"], prob, target)
        for label, rows in self.rows:
            self.bands.add(s["name"], label, prob[rows], target[rows], frame=False)


def distance_scores(bands: Evaluator, labels: list[str], threshold: float) -> dict:
    """Per distance band of the BEV grid (`labels`, nearest first), all frames pooled: F, precision, recall, TP, FP
    and FN at `threshold` (the BEV MaxF threshold of all frames, so the bands' errors add up to that operating
    point's), each band's share of all those errors (FP + FN; 0 where there are none) and the band's own MaxF (at its
    own best threshold): where the bird's-eye view loses its points. A band with no evaluated cell is all n/a."""
    from roadseg.metrics import at_threshold, scores

    counts = {label: bands.by_cat.get(label, Counts()) for label in labels}
    at = {label: at_threshold(c, threshold) for label, c in counts.items()}
    errors = sum(a["FP"] + a["FN"] for a in at.values())
    return {label: {**a, "error_share": (a["FP"] + a["FN"]) / errors if errors else 0.0,
                    "MaxF": scores(counts[label])["MaxF"]} for label, a in at.items()}


def run_info(checkpoint: str | Path | dict, predictor, ev: Evaluator | None = None, dataset=None) -> dict:
    """What a result needs beside it to be read later: the model (shipped name or file, its sha256), how it ran
    (the predictor's settings: backend, precision, scale, size, tta, top crop, far zoom, threshold; the network input
    for the dataset's first frame), the machine (CPU, its reduced-precision flags, threads) and how long evaluation took.
    `checkpoint`: a path, or the dict load_checkpoint returned (its digest is reused)."""
    import platform

    from roadseg import __version__
    from roadseg.device import cpu_name, key_flags
    from roadseg.models.checkpoint import PATH, checkpoint_digest
    from roadseg.models.shipped import SHIPPED

    path = Path(checkpoint[PATH] if isinstance(checkpoint, dict) else checkpoint)
    name = next((k for k, v in SHIPPED.items() if v == path.name), path.stem)
    st = predictor.settings
    return {"model": name, "file_sha256": checkpoint_digest(checkpoint), **st.record(), "threshold_used": st.threshold, "threshold_source": st.threshold_source,
            "network_input": network_input(predictor, dataset) if dataset is not None else None,
            "cpu": cpu_name(), "cpu_flags": key_flags(), "threads": torch.get_num_threads(), "machine": platform.machine(),
            "torch": torch.__version__, "roadseg": __version__, "date": time.strftime("%Y-%m-%dT%H:%M"),
            "eval_s": round(getattr(ev, "wall_s", float("nan")), 2) if ev is not None else None}


def format_table(results: dict) -> str:
    cols = ["MaxF", "AP", "PRE", "REC", "FPR", "FNR", "IoU"]
    lines = [f"{'category':<9}" + "".join(f"{c:>8}" for c in cols) + f"{'thresh':>8}"]
    for cat, r in results.items():
        lines.append(f"{cat:<9}" + "".join(f"{100 * r[c]:8.2f}" if r[c] == r[c] else f"{'n/a':>8}" for c in cols)
                     + (f"{r['threshold']:8.3f}" if r["threshold"] == r["threshold"] else f"{'n/a':>8}"))
    return "\n".join(lines)


def format_bev(res: dict) -> str | None:
    """The bird's-eye-view table with its heading (how many frames, which were left out), or None without BEV."""
    b = res.get("bev")
    if not b:
        return None
    miss = b["without_calibration"]
    left = (f"; {len(miss)} without a calibration file left out: {', '.join(miss[:5])}"
            + (f" (+{len(miss) - 5} more)" if len(miss) > 5 else "")) if miss else ""
    return f"bird's-eye view ({b['frames']} frames{left})\n" + format_table(b["results"])


def format_distance(res: dict) -> str | None:
    """The BEV measures per distance band at the BEV MaxF threshold of all frames, or None without them."""
    d = (res.get("bev") or {}).get("by_distance")
    if not d:
        return None
    lines = [f"bird's-eye view by distance ahead, all frames pooled: F, PRE, REC at the BEV MaxF threshold "
             f"{res['bev']['results']['all']['threshold']:.3f} (its 'all' row); err%: the band's share of all FP + FN; "
             "MaxF: at the band's own best threshold",
             f"{'ahead':<9}" + "".join(f"{c:>8}" for c in ("F", "PRE", "REC", "err%", "MaxF"))]
    for label, r in d.items():
        lines.append(f"{label:<9}" + "".join(f"{100 * r[c]:8.2f}" if r[c] == r[c] else f"{'n/a':>8}"
                                             for c in ("F", "PRE", "REC", "error_share", "MaxF")))
    return "\n".join(lines)


def format_at_threshold(res: dict) -> str | None:
    """One line: F at the threshold the model's masks use, per category and for all (None without one)."""
    at = res.get("at_threshold_used")
    if not at:
        return None
    f = ", ".join(f"{cat} {100 * r['F']:.2f}" if r["F"] == r["F"] else f"{cat} n/a" for cat, r in at.items())
    return f"F at the model's threshold {res['threshold_used']:.3f} (its masks): {f}"


def _nan_to_none(x):
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def write_metrics(ev: Evaluator, path: Path, extra: dict | None = None) -> dict:
    results = ev.results()
    res = {"results": results, "per_frame": ev.frame_scores(results),
           "counts": {c: v.to_array().tolist() for c, v in ev.by_cat.items()}, **(extra or {})}
    used = res.get("threshold_used")
    if isinstance(used, float):  # the scores of the masks predict and video write
        res["at_threshold_used"] = ev.scores_at(used)
    if getattr(ev, "bev", None) is not None:
        b = ev.bev.results()
        res["bev"] = {"results": b, "frames": len(ev.bev.per_frame), "without_calibration": ev.bev_missing,
                      "per_frame": ev.bev.frame_scores(b), "counts": {c: v.to_array().tolist() for c, v in ev.bev.by_cat.items()}}
        if isinstance(used, float):
            res["bev"]["at_threshold_used"] = ev.bev.scores_at(used)
        if getattr(ev, "bev_bands", None) is not None and b["all"]["threshold"] == b["all"]["threshold"]:
            res["bev"]["by_distance"] = distance_scores(ev.bev_bands, ev.bev_band_labels, b["all"]["threshold"])
    text = json.dumps(_nan_to_none(res), indent=1, allow_nan=False)  # strict JSON: undefined values are null
    atomic_write(path, lambda f: f.write(text), text=True)
    return res


@dataclass
class EvalRun:
    """What evaluate_model did: the Evaluator, the metrics record it wrote (metrics.json's content), the dataset
    and predictor it used, the frames it left out (name, reason) and why the frames were seen in training (or None);
    `rank` is this process's rank under torchrun (only rank 0 writes)."""

    ev: Evaluator
    metrics: dict
    dataset: object
    predictor: object
    skipped: list
    seen: str | None
    path: Path | None
    rank: int = 0


DATASET_HINTS = {  # what to give as the dataset folder, per layout
    "kitti": "KITTI road: data_road.zip from https://www.cvlibs.net/datasets/kitti/eval_road.php, unpacked",
    "camvid": "CamVid: the folder holding train/, trainannot/, val/, valannot/",
    "folder": "the folder holding images/ and masks/",
}


def eval_dataset(ckpt: dict, split: str = "val", overrides: dict | None = None, skip_bad: bool = False):
    """The frames to score: the checkpoint's validation frames (split 'val'), or its data config's `split`, with
    `overrides` (root, dataset, road_value, ignore_value) applied. Every frame is decoded before anything is
    written: an unreadable one stops here, or with skip_bad is left out. Returns (dataset, data config, skipped)."""
    from roadseg.config import from_dict
    from roadseg.data import build_dataset
    from roadseg.data.datasets import validation_config
    from roadseg.errors import DataError

    train_data = from_dict(ckpt["config"]).data
    data_cfg = validation_config(train_data)[0] if split == "val" else copy.copy(train_data)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    given_root = "root" in overrides
    data_cfg.root, data_cfg.dataset = overrides.pop("root", data_cfg.root), overrides.pop("dataset", data_cfg.dataset)
    for key, value in overrides.items():  # a folder dataset's road_value / ignore_value
        if data_cfg.dataset != "folder":
            from roadseg.errors import ConfigError

            raise ConfigError(f"{key}: applies to folder datasets (dataset folder), not to {data_cfg.dataset}")
        setattr(data_cfg, key, value)
    if not given_root and not Path(data_cfg.root).exists():  # the checkpoint's folder, on the machine it was made
        raise DataError(f"{data_cfg.root}: not found: the dataset folder this model's checkpoint records (where it "
                        f"was trained); give your copy with --data ({DATASET_HINTS.get(data_cfg.dataset, 'its root')})")
    ds = build_dataset(data_cfg, split, check_sizes=False)  # preload checks each mask's size with its pixels
    frames = len(ds)
    skipped = ds.preload(budget=0, skip_bad=True)
    if skipped and not skip_bad:
        more = f" (and {len(skipped) - 1} more unreadable frames)" if len(skipped) > 1 else ""
        raise DataError(f"{skipped[0][1]}{more}; eval --skip-bad leaves unreadable frames out")
    if not len(ds.samples):
        raise DataError(f"{data_cfg.root}: none of the {frames} frames of split '{split}' is readable "
                        f"(first: {skipped[0][1]})")
    return ds, data_cfg, skipped


def evaluate_model(model=None, *, split: str = "val", data: dict | None = None, out: str | Path = "runs/eval",
                   save_probs: str | Path | None = None, skip_bad: bool = False, progress=None,
                   bev: bool | None = None, **settings) -> EvalRun:
    """Score a model on a dataset with the devkit's measures and write out/metrics.json (rank 0).

    model: a shipped model's name, a checkpoint path or dict (None: the default model). split: 'val' (the frames the
    model was not trained on), 'train' or 'all'. data: overrides of the checkpoint's data config (root, dataset,
    road_value, ignore_value). save_probs: a folder for the 8-bit probability PNGs. skip_bad: leave unreadable frames
    out (listed) instead of stopping. bev: the bird's-eye-view measures too (see evaluate; None: where the frames
    have calibration files). settings: roadseg.load's inference settings (backend, precision, scale, ...).
    Under torchrun each rank scores every world-th frame and the counts are summed."""
    from roadseg.data.datasets import seen_in_training
    from roadseg.errors import DataError
    from roadseg.inference.predictor import load
    from roadseg.models.checkpoint import PATH, load_checkpoint
    from roadseg.models.shipped import locate

    ckpt = model if isinstance(model, dict) else load_checkpoint(locate(model))
    ds, data_cfg, skipped = eval_dataset(ckpt, split, data, skip_bad)
    guard_outputs([Path(out) / "metrics.json", Path(out) / "report.html"], dataset_dirs=read_folders(ds.samples))
    seen = seen_in_training(from_dict(ckpt["config"]).data, data_cfg, split)
    pred = load(ckpt, **settings)
    rank, _ = dist.setup(torch.device(pred.settings.device))
    try:
        ev = evaluate(pred, ds, save_probs=save_probs, task=data_cfg.task, progress=progress if rank == 0 else None,
                      bev=bev)
        if ev.results()["all"]["MaxF"] != ev.results()["all"]["MaxF"]:  # NaN: not one pixel was evaluated
            raise DataError(f"{data_cfg.root}: no pixel of the {len(ds)} frames was evaluated (every mask pixel is "
                            f"ignored or none is road): check the dataset's road/ignore values"
                            + (" (--road-value, --ignore-value)" if data_cfg.dataset == "folder" else ""))
        path = Path(out) / "metrics.json" if rank == 0 else None
        res = {}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            record = {"checkpoint": str(ckpt.get(PATH, "checkpoint")), "split": split, "frames": len(ds),
                      "skipped": [{"frame": n, "error": e} for n, e in skipped], "seen_in_training": bool(seen),
                      "seen_note": seen, "data": data_record(data_cfg), **run_info(ckpt, pred, ev, ds)}
            res = write_metrics(ev, path, record)
    finally:
        dist.teardown()
    return EvalRun(ev, res, ds, pred, skipped, seen, path, rank)


def data_record(data_cfg) -> dict:
    """The data config eval scored (paths absolute), kept in metrics.json so that `report --model` finds the frames."""
    from roadseg.config import resolve_paths

    return resolve_paths({"data": dataclasses.asdict(data_cfg)}, Path.cwd())["data"]


def network_input(pred, ds) -> str | None:
    """'WxH for WxH frames': what the network saw for the dataset's first frame (None without frames)."""
    if not len(ds):
        return None
    h, w = ds[0]["image"].shape[1:]
    nh, nw = pred.input_size(h, w)
    return f"{nw}x{nh} for {w}x{h} frames"
