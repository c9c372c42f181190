"""Evaluation with the KITTI devkit measures; frames are sharded across ranks under torchrun and the pooled
counts summed (not averaged), so N processes give exactly the counts of one."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from roadseg.data.io import atomic_write, guard_outputs, prob_name, save_png_atomic
from roadseg.engine import distributed as dist
from roadseg.metrics import Counts, Evaluator, quantize

log = logging.getLogger(__name__)


def evaluate(predictor, dataset, save_probs: str | Path | None = None, task: str = "road",
             progress=None) -> Evaluator:
    """Run `predictor` on every frame of `dataset` (images at full size, targets 0/1/255) and pool counts.
    Under torchrun each rank takes every world-th frame; counts are all-reduced."""
    t0 = time.perf_counter()
    rank, size = dist.world()
    indices = dist.shard(list(range(len(dataset))))
    ev = Evaluator()
    out = Path(save_probs) if save_probs else None
    made = out is not None and not out.exists()
    if out:
        samples = getattr(dataset, "samples", [])
        guard_outputs([out / prob_name(s.name, task) for s in samples],
                      inputs=[f for s in samples for f in (s.image, s.mask) if f is not None],
                      label_dirs=tuple({Path(s.mask).parent for s in samples if s.mask is not None}))
        out.mkdir(parents=True, exist_ok=True)
    bar = progress(len(indices), "eval") if progress else None
    written: list[Path] = []
    try:
        for i in indices:
            s = dataset[i]
            img = s["image"].permute(1, 2, 0).numpy()
            prob = quantize(predictor.predict(img))
            ev.add(s["name"], s["category"], prob, s["target"].numpy())
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
    if size > 1:  # sum pooled counts per category across ranks; gather per-frame scores
        cats = sorted({s.category for s in dataset.samples})
        stacked = torch.from_numpy(np.stack([ev.by_cat.get(c, Counts()).to_array() for c in cats]))
        dist.all_reduce_sum(stacked)
        ev.by_cat = {c: Counts.from_array(stacked[j].numpy()) for j, c in enumerate(cats) if stacked[j, 512:].sum() > 0}
        frames = {}
        for part in dist.all_gather_objects(ev.per_frame):
            frames.update(part)
        ev.per_frame = dict(sorted(frames.items()))
    ev.wall_s = time.perf_counter() - t0
    return ev


def run_info(checkpoint: str | Path | dict, predictor, ev: Evaluator | None = None) -> dict:
    """What a result needs beside it to be read later: the model (shipped name or file, its sha256), how it ran
    (backend, precision, network input, threshold), the machine (CPU, its reduced-precision flags, threads) and
    how long evaluation took. `checkpoint`: a path, or the dict load_checkpoint returned (its digest is reused)."""
    import platform

    from roadseg import __version__
    from roadseg.device import cpu_name, key_flags
    from roadseg.models.checkpoint import PATH, checkpoint_digest
    from roadseg.models.shipped import SHIPPED

    path = Path(checkpoint[PATH] if isinstance(checkpoint, dict) else checkpoint)
    name = next((k for k, v in SHIPPED.items() if v == path.name), path.stem)
    return {"model": name, "file_sha256": checkpoint_digest(checkpoint), "threshold_used": getattr(predictor, "threshold", None),
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
    text = json.dumps(_nan_to_none(res), indent=1, allow_nan=False)  # strict JSON: undefined values are null
    atomic_write(path, lambda f: f.write(text), text=True)
    return res
