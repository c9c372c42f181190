"""KITTI Road devkit measures, exactly as the devkit computes them (evalExp + pxEval_maximizeFMeasure):
probabilities quantized to 8 bits, 256 thresholds (road iff v >= k), counts pooled over all frames of a
category, thresholds where precision = recall = 0 dropped, AP = 11-point interpolated precision,
MaxF = first maximum of F1, and PRE/REC/FPR/FNR at that threshold. Also road IoU at probability 0.5."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE = 255


def quantize(prob: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 as written to the KITTI submission PNGs."""
    return np.clip(np.round(np.asarray(prob, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def threshold_level(threshold: float) -> int:
    """The 8-bit level of a probability threshold: road iff quantize(p) >= this, i.e. round(255 t)."""
    return int(np.clip(round(float(threshold) * 255), 0, 255))


def road_mask(prob: np.ndarray, threshold: float) -> np.ndarray:
    """The one road decision: (H, W) bool, road where the 8-bit probability reaches the threshold's level. The masks
    predict and video write and the pixels eval counts as road at that threshold are these (the devkit's rule on
    8-bit maps). `prob`: probabilities in [0, 1], or an 8-bit map from quantize."""
    prob = np.asarray(prob)
    return (prob if prob.dtype == np.uint8 else quantize(prob)) >= threshold_level(threshold)


@dataclass
class Counts:
    """Per-threshold pooled counts. fn[k] = road pixels with v < k, fp[k] = non-road pixels with v >= k."""

    fn: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    fp: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    pos: int = 0
    neg: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.fn + other.fn, self.fp + other.fp, self.pos + other.pos, self.neg + other.neg)

    def to_array(self) -> np.ndarray:
        return np.concatenate([self.fn, self.fp, [self.pos, self.neg]]).astype(np.int64)

    @staticmethod
    def from_array(a) -> Counts:
        a = np.asarray(a, dtype=np.int64)
        return Counts(a[:256].copy(), a[256:512].copy(), int(a[512]), int(a[513]))


def counts(prob_u8: np.ndarray, target: np.ndarray) -> Counts:
    """Counts for one frame: `prob_u8` uint8 road probability, `target` 0/1/255 (255 = outside evaluated area)."""
    prob_u8 = np.asarray(prob_u8)
    target = np.asarray(target)
    if prob_u8.shape != target.shape:
        raise ValueError(f"probability map {prob_u8.shape} and target {target.shape} differ in size")
    if prob_u8.dtype != np.uint8:
        raise ValueError("probabilities must be quantized to uint8 first (metrics.quantize)")
    pos_hist = np.bincount(prob_u8[target == 1], minlength=256)
    neg_hist = np.bincount(prob_u8[target == 0], minlength=256)
    fn = np.concatenate([[0], np.cumsum(pos_hist)[:-1]])  # v < k
    fp = np.cumsum(neg_hist[::-1])[::-1]  # v >= k
    return Counts(fn.astype(np.int64), fp.astype(np.int64), int(pos_hist.sum()), int(neg_hist.sum()))


def scores(c: Counts) -> dict:
    """Devkit measures from pooled counts. With no road pixels at all the measures are undefined (NaN)."""
    nan = float("nan")
    if c.pos == 0:
        return {"MaxF": nan, "AP": nan, "PRE": nan, "REC": nan, "FPR": nan, "FNR": nan, "threshold": nan,
                "IoU": nan, "pos": 0, "neg": int(c.neg)}
    thresh = np.arange(256) / 255.0
    tp = c.pos - c.fn
    tn = c.neg - c.fp
    recall = tp / float(c.pos)
    precision = tp / (tp + c.fp + 1e-10)
    keep = ~((recall == 0) & (precision == 0))
    recall, precision = recall[keep], precision[keep]
    ap, n = 0.0, 0
    for t in np.arange(0, 1.1, 0.1):  # the devkit's 11 points, float steps included
        sel = recall >= t
        if sel.any():
            ap += precision[sel].max()
            n += 1
    ap /= max(n, 1)
    f = 2 * precision * recall / (precision + recall + 1e-10)
    i = int(np.argmax(f))  # first maximum; dropped thresholds are a suffix, so i indexes the unfiltered arrays too
    TP, FP, FN, TN = float(tp[i]), float(c.fp[i]), float(c.fn[i]), float(tn[i])
    k50 = threshold_level(0.5)
    iou = float(tp[k50]) / float(c.pos + c.fp[k50]) if (c.pos + c.fp[k50]) else nan
    return {
        "MaxF": float(f[i]), "AP": float(ap),
        "PRE": TP / (TP + FP) if TP + FP else nan, "REC": TP / (TP + FN),
        "FPR": FP / (FP + TN) if FP + TN else nan, "FNR": FN / (TP + FN),
        "threshold": float(thresh[i]), "IoU": iou, "pos": int(c.pos), "neg": int(c.neg),
    }


def pr_curve(c: Counts) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) over the kept thresholds, for plots."""
    tp = c.pos - c.fn
    recall = tp / max(c.pos, 1)
    precision = tp / (tp + c.fp + 1e-10)
    keep = ~((recall == 0) & (precision == 0))
    return recall[keep], precision[keep]


def at_threshold(c: Counts, threshold: float) -> dict:
    """F1, precision and recall of road at one probability threshold (road iff the 8-bit value >= round(255 t)),
    e.g. a frame's scores at its category's operating point. Undefined values are NaN: F when the frame has no
    road and none is predicted, precision when nothing is predicted as road, recall when the frame has no road."""
    nan = float("nan")
    k = threshold_level(threshold)
    tp, fp, fn = float(c.pos - c.fn[k]), float(c.fp[k]), float(c.fn[k])
    return {"F": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else nan,
            "PRE": tp / (tp + fp) if tp + fp else nan, "REC": tp / (tp + fn) if tp + fn else nan,
            "TP": int(tp), "FP": int(fp), "FN": int(fn)}


class Evaluator:
    """Accumulates counts per category and for all frames together, and each frame's own counts."""

    def __init__(self):
        self.by_cat: dict[str, Counts] = {}
        self.per_frame: dict[str, tuple[str, Counts]] = {}

    def add(self, name: str, category: str, prob_u8: np.ndarray, target: np.ndarray, frame: bool = True) -> Counts:
        """Pool a frame's counts into its category; `frame=False` keeps no per-frame entry (e.g. one part of a frame)."""
        c = counts(prob_u8, target)
        self.by_cat[category] = self.by_cat.get(category, Counts()) + c
        if frame:
            self.per_frame[name] = (category, c)
        return c

    def total(self) -> Counts:
        out = Counts()
        for c in self.by_cat.values():
            out = out + c
        return out

    def results(self) -> dict:
        res = {cat: scores(c) for cat, c in sorted(self.by_cat.items())}
        res["all"] = scores(self.total())
        return res

    def scores_at(self, threshold: float) -> dict:
        """F, precision and recall per category and for all frames at one fixed threshold (e.g. the model's stored
        operating point, which predict and video use), beside results()' best threshold per category."""
        res = {cat: at_threshold(c, threshold) for cat, c in sorted(self.by_cat.items())}
        res["all"] = at_threshold(self.total(), threshold)
        return res

    def frame_scores(self, results: dict | None = None) -> dict:
        """Per frame: its own MaxF and, at its category's operating threshold (the category's MaxF threshold),
        F, precision and recall: the ranking that says which frames the model as used gets wrong."""
        results = results or self.results()
        out = {}
        for name, (cat, c) in self.per_frame.items():
            t = results.get(cat, {}).get("threshold", float("nan"))
            op = at_threshold(c, t) if t == t else {"F": float("nan"), "PRE": float("nan"), "REC": float("nan")}
            out[name] = {"category": cat, "MaxF": scores(c)["MaxF"], "threshold": t, "road_px": int(c.pos), **op}
        return out
