"""A self-contained HTML report for a run/eval/demo folder: the model, machine and evaluation time, metrics per
category, precision-recall curves with the operating point, training curves when present, a gallery of the worst and
best frames per category as error maps, and the video's summary. Every picture is embedded as a data URI, so the
one file can be mailed or archived."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from roadseg.errors import RoadsegError
from roadseg.metrics import IGNORE, Counts, pr_curve, road_mask

COLS = ["MaxF", "AP", "PRE", "REC", "FPR", "FNR", "IoU"]


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _fig_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return _png_uri(buf.getvalue())


def _pr_plot(counts: dict, results: dict) -> str:
    """One precision-recall panel per category, the operating point (the MaxF threshold the outputs use) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = sorted(counts)
    fig, axes = plt.subplots(1, len(cats), figsize=(3.6 * len(cats), 3.6), squeeze=False)
    for ax, cat in zip(axes[0], cats):
        r, p = pr_curve(Counts.from_array(counts[cat]))
        ax.plot(r, p, color="#1f77b4")
        res = results.get(cat, {})
        if res.get("REC") is not None and res.get("PRE") is not None and res.get("threshold") is not None:
            ax.plot([res["REC"]], [res["PRE"]], "o", color="#d62728", ms=7, label=f"operating point: p >= {res['threshold']:.3f}")
            ax.annotate(f"MaxF {100 * res['MaxF']:.2f}", (res["REC"], res["PRE"]), textcoords="offset points",
                        xytext=(-70, -18), fontsize=9)
            ax.legend(loc="lower left", fontsize=8)
        ax.set_title(cat)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        # zoom on the part of the curve that matters: from 0.25 below the operating point (in steps of 0.1)
        lo = max(0.0, np.floor(10 * (min(res.get("REC") or 0, res.get("PRE") or 0) - 0.25)) / 10)
        ax.set_xlim(lo, 1.005)
        ax.set_ylim(lo, 1.005)
        ax.grid(alpha=0.3)
    fig.suptitle("precision-recall per category (KITTI devkit thresholds)", fontsize=11)
    fig.tight_layout()
    return _fig_uri(fig)


# error map colours: true positive, false positive, false negative, ignored (outside the evaluated area)
ERROR_COLOURS = {"TP": (0, 190, 0), "FP": (230, 20, 20), "FN": (30, 110, 255), "ignored": (150, 150, 150)}


def error_map(image: np.ndarray, target: np.ndarray, prob: np.ndarray, threshold: float, alpha: float = 0.7) -> np.ndarray:
    """The frame in grey with TP, FP, FN and ignored pixels painted in ERROR_COLOURS (true negatives stay grey).
    `target` 0/1/255, `prob` road probability; road as scored (metrics.road_mask)."""
    grey = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2) * 0.6
    pred = road_mask(prob, threshold)
    out = grey.copy()
    for key, sel in (("TP", pred & (target == 1)), ("FP", pred & (target == 0)), ("FN", ~pred & (target == 1)),
                     ("ignored", target == IGNORE)):
        out[sel] = (1 - alpha) * grey[sel] + alpha * np.array(ERROR_COLOURS[key], np.float64)
    return out.clip(0, 255).astype(np.uint8)


def truth_map(image: np.ndarray, target: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The frame with the ground-truth road tinted magenta and ignored pixels grey."""
    out = image.astype(np.float64)
    for value, colour in ((1, (255, 0, 200)), (IGNORE, ERROR_COLOURS["ignored"])):
        sel = target == value
        out[sel] = (1 - alpha) * out[sel] + alpha * np.array(colour, np.float64)
    return out.astype(np.uint8)


def heat_map(prob: np.ndarray) -> np.ndarray:
    """Road probability through matplotlib's 'inferno' colour map (0 black, 1 yellow)."""
    from matplotlib import colormaps

    return (colormaps["inferno"](np.asarray(prob, np.float64))[..., :3] * 255).astype(np.uint8)


def _panels(image, target, prob, threshold: float, scale: float = 0.5, bev=None,
            bev_threshold: float | None = None) -> np.ndarray:
    """image | ground truth over error map | heat map, as a 2x2 grid at `scale` with a title on each panel; with
    `bev` (the frame's data.bev lookup) the same three in the bird's-eye view to their right, its error map at
    `bev_threshold` (default `threshold`)."""
    from PIL import Image

    tiles = [("image", image), ("ground truth", truth_map(image, target)),
             (f"errors at p >= {threshold:.3f}", error_map(image, target, prob, threshold)),
             ("road probability (0 black, 1 yellow)", heat_map(prob))]
    h, w = image.shape[:2]
    tw, th = max(1, int(w * scale)), max(1, int(h * scale))
    grid = _grid(tiles, tw, th, columns=2)
    if bev is None:
        return np.asarray(grid)
    from roadseg.metrics import IGNORE

    bt_ = threshold if bev_threshold is None else bev_threshold
    bi, bt, bp = bev.warp(image), bev.warp(target, fill=IGNORE), bev.warp(np.asarray(prob, np.float32))
    side = _grid([("BEV truth", truth_map(bi, bt)), (f"BEV errors at p >= {bt_:.3f}", error_map(bi, bt, bp, bt_)),
                  ("BEV probability", heat_map(bp))], max(1, int(400 * scale)), max(1, int(800 * scale)), columns=3)
    out = Image.new("RGB", (grid.width + side.width, max(grid.height, side.height)), "white")
    out.paste(grid, (0, 0))
    out.paste(side, (grid.width, 0))
    return np.asarray(out)


def _grid(tiles, tw: int, th: int, columns: int):
    """Titled tiles of tw x th, `columns` a row, as one PIL image."""
    from PIL import Image, ImageDraw, ImageFont

    rows = -(-len(tiles) // columns)
    grid = Image.new("RGB", (columns * tw, rows * th), "white")
    try:
        font = ImageFont.load_default(size=max(11, min(th, tw // 3) // 14))
    except TypeError:  # Pillow without FreeType sizes
        font = ImageFont.load_default()
    for i, (label, arr) in enumerate(tiles):
        tile = Image.fromarray(arr).resize((tw, th), Image.BILINEAR)
        d = ImageDraw.Draw(tile)
        box = d.textbbox((4, 2), label, font=font)
        d.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
        d.text((4, 2), label, fill=(255, 255, 255), font=font)
        grid.paste(tile, ((i % columns) * tw, (i // columns) * th))
    return grid


def _ranked(per_frame: dict) -> tuple[dict[str, list], list[str]]:
    """Per category, the frames ranked by F at the category's operating threshold, worst first, and the names of
    those whose F is undefined (no road and none predicted). Old metrics files without "F" rank by each frame's own
    MaxF."""
    key = "F" if any("F" in v for v in per_frame.values()) else "MaxF"
    undefined = sorted(n for n, v in per_frame.items() if v.get(key) is None or v[key] != v[key])
    by_cat: dict[str, list] = {}
    for n, v in per_frame.items():
        if n not in undefined:
            by_cat.setdefault(v["category"], []).append((v[key], n, v))
    return {c: sorted(r, key=lambda t: (t[0], t[1])) for c, r in sorted(by_cat.items())}, undefined


def pick_frames(per_frame: dict, worst: int = 2, best: int = 1,
                bev_per_frame: dict | None = None) -> tuple[list[tuple[tuple[str, ...], str]], list[str]]:
    """Per category, the `worst` and `best` frames by F at the category's operating threshold (frames whose F is
    undefined are left out and returned by name), as ((kind, ...), name). With `bev_per_frame` (metrics.json's
    bev.per_frame), per category also the `worst` frames by bird's-eye-view F, the measure KITTI's server scores:
    a frame picked already gets the kind "worst-bev" beside its own, the others are added with it alone."""
    ranked, undefined = _ranked(per_frame)
    bev_ranked = _ranked(bev_per_frame)[0] if bev_per_frame else {}
    picks = []
    for cat in sorted(set(ranked) | set(bev_ranked)):
        r = ranked.get(cat, [])
        lo = r[: min(worst, len(r) // 2 or 1)]
        hi = [t for t in r[::-1] if t not in lo][:best]
        kinds = {n: ["worst"] for _, n, _ in lo} | {n: ["best"] for _, n, _ in hi}
        for _, n, _ in bev_ranked.get(cat, [])[:worst]:
            kinds.setdefault(n, []).append("worst-bev")
        picks += [(tuple(k), n) for n, k in kinds.items()]
    return picks, undefined


def render_gallery(folder: Path, metrics: dict, predictor, dataset, worst: int = 2, best: int = 1) -> list[dict]:
    """The frames of pick_frames, each as image | ground truth | error map | probability heat map, and where the
    frame has a calibration file the same three in the bird's-eye view; each view's error map at that view's
    operating threshold for the frame's category, as its scores (folder/gallery/*.png + gallery.json: per frame its
    kinds, perspective scores, and its BEV scores under "bev")."""
    from roadseg.data.bev import frame_lookup
    from roadseg.data.io import atomic_write, save_png_atomic

    per_frame, bev = metrics.get("per_frame", {}), metrics.get("bev") or {}
    bev_frames = bev.get("per_frame") or {}
    picks, undefined = pick_frames(per_frame, worst, best, bev_frames)
    if not picks:
        return []
    index = {s.name: i for i, s in enumerate(dataset.samples)}
    gdir = folder / "gallery"
    gdir.mkdir(exist_ok=True)
    items = []
    for kinds, name in picks:
        if name not in index:
            continue
        s = dataset[index[name]]
        img, target = s["image"].permute(1, 2, 0).numpy(), s["target"].numpy()
        v, bv = per_frame.get(name, {}), bev_frames.get(name)
        t, bt = _threshold(v, predictor.threshold), _threshold(bv or {}, None)
        image_path = dataset.samples[index[name]].image
        lk = frame_lookup(image_path, img.shape[:2]) if bev and image_path is not None else None
        panels = _panels(img, target, predictor.predict(img).prob, t, bev=lk, bev_threshold=bt)
        save_png_atomic(panels, gdir / f"{kinds[0]}_{name}.png")  # a planted link is replaced, never written through
        items.append({"kind": kinds[0], "also": list(kinds[1:]), "name": name,
                      "category": (bv or v)["category"], **_scores(v), "threshold": t,
                      "file": f"gallery/{kinds[0]}_{name}.png"})
        if bv is not None:
            items[-1]["bev"] = {**_scores(bv), "threshold": bt}
    text = json.dumps({"items": items, "undefined": undefined}, indent=1)
    atomic_write(gdir / "gallery.json", lambda f: f.write(text), text=True)
    return items


def _threshold(v: dict, default):
    t = v.get("threshold")
    return t if t is not None and t == t else default


def _scores(v: dict) -> dict:
    return {"F": v.get("F"), "MaxF": v.get("MaxF"), "PRE": v.get("PRE"), "REC": v.get("REC")}


def _training_curves(metrics: dict) -> dict:
    """Loss and validation-MaxF curves from the evaluated checkpoint's own training history, when it has one."""
    from roadseg.errors import WeightsError
    from roadseg.models.checkpoint import load_checkpoint

    ck = metrics.get("checkpoint")
    if not ck or not Path(ck).is_file():
        return {}
    try:
        history = load_checkpoint(ck).get("history") or []
    except WeightsError:
        return {}
    from roadseg.plots import curve_figures

    return {key: _fig_uri(fig) for key, (_name, fig) in curve_figures(history).items()}


def _pct(v) -> str:
    """A score as a percentage; undefined ones (null in metrics.json: nothing evaluated) as n/a."""
    return "n/a" if v is None or v != v else f"{100 * v:.2f}"


UNDEFINED = {
    "MaxF": "no road pixel in the evaluated area of these frames, so precision-recall is undefined",
    "PRE": "nothing is predicted as road at the operating threshold",
    "FPR": "no non-road pixel in the evaluated area",
    "IoU": "no road in the ground truth and none predicted at probability 0.5",
}
INFO = (("model", "model"), ("file_sha256", "file sha256"), ("checkpoint", "file"), ("backend", "backend"),
        ("precision", "precision"), ("scale", "network input scale"), ("size", "network input size"),
        ("threshold_used", "threshold of predict and video masks"), ("network_input", "network input"), ("tta", "test-time flip"),
        ("top_crop", "top crop"), ("far_zoom", "far-road zoom"), ("split", "split"), ("frames", "frames"),
        ("skipped", "unreadable frames left out (eval --skip-bad)"),
        ("eval_s", "evaluation time (s)"), ("cpu", "CPU"), ("cpu_flags", "CPU flags"), ("threads", "threads"),
        ("torch", "torch"), ("roadseg", "roadseg"), ("date", "date"))


def _info_table(metrics: dict) -> str:
    """Model, how it ran, on what machine and how long: the context a number needs."""
    esc = html.escape
    rows = []
    for key, label in INFO:
        if key not in metrics:
            continue
        v = metrics[key]
        if key == "cpu_flags" and not v:
            v = "none of avx2, avx512f, avx512_vnni, avx512_bf16 (or unknown)"
        elif key == "skipped":
            if not v:
                continue
            v = "; ".join(str(x.get("error", x)) if isinstance(x, dict) else str(x) for x in v)
        elif v is None:
            v = "n/a (not recorded)"
        rows.append(f"<tr><td>{esc(label)}</td><td data-info='{key}'>{esc(str(v))}</td></tr>")
    return "<table id='info'>" + "".join(rows) + "</table>" if rows else ""


VIDEO_LABELS = {"wall_s": "wall time (s)", "model_s": "model (s)", "decode_s": "decode (s)",
                "encode_s": "overlay + encode (s, beside the model)", "mean_fps": "frames per second",
                "network_input": "network input", "flicker": "flicker", "flicker_lower": "flicker, lower third",
                "flicker_unsmoothed": "flicker of per-frame masks", "flicker_unsmoothed_lower":
                "flicker of per-frame masks, lower third", "agreement": "agreement with per-frame masks",
                "road_share": "road, share of pixels", "road_share_unsmoothed": "road in per-frame masks",
                "audio_streams": "audio streams copied", "smooth": "smoothing (--smooth)", "fps": "input frame rate"}


def _video_value(key: str, x) -> str:
    if isinstance(x, float) and (key.startswith(("flicker", "road_share")) or key == "agreement"):
        return f"{100 * x:.2f}%"
    if key == "network_input" and isinstance(x, list) and len(x) == 2:
        return f"{x[1]}x{x[0]}"
    if isinstance(x, list):
        return "; ".join(map(str, x)) or "none"
    return str(round(x, 3) if isinstance(x, float) else x)


def _gallery_html(folder: Path) -> list[str]:
    esc = html.escape
    gal = folder / "gallery" / "gallery.json"
    if not gal.is_file():
        return []
    from roadseg.data.io import read_json

    g = read_json(gal, "report input")
    items, undefined = (g, []) if isinstance(g, list) else (g["items"], g.get("undefined", []))
    legend = "".join(f"<span class='sw' style='background:rgb{c}'></span>{esc(k)} " for k, c in ERROR_COLOURS.items())
    out = ["<h2>Gallery: worst and best frames per category</h2>",
           "<p>Ranked by F at the category's operating threshold; where the bird's-eye view (BEV) was scored, also "
           "the two frames worst there (F on the BEV grid at the category's BEV threshold), named so when shown "
           "already. Each frame: image | ground truth (road magenta) / error map | road probability, and where the "
           "frame has a calibration file the same three in the bird's-eye view; each view's error map at that view's "
           f"threshold, as in the caption. Error map: {legend}(true negatives grey).</p>"]
    if undefined:
        out.append(f"<p>Not ranked ({len(undefined)}): no road in the ground truth and none predicted, so F is "
                   f"undefined: {esc(', '.join(undefined[:12]))}{' ...' if len(undefined) > 12 else ''}.</p>")
    out.append("<div class='gal'>")
    for it in items:
        img = folder / it["file"]
        if not img.is_file():
            continue
        out.append(f"<figure><img alt='{esc(it['name'])}' src='{_png_uri(img.read_bytes())}'>"
                   f"<figcaption>{_caption(it)}</figcaption></figure>")
    out.append("</div>")
    return out


GALLERY_KINDS = {"worst": "worst", "best": "best", "worst-bev": "worst in the bird's-eye view"}


def _caption(it: dict) -> str:
    """'worst of um, also worst in the bird's-eye view: um_000070, image F 92.96 (precision .., recall ..) at
    p >= 0.490; BEV F 88.86 (...) at p >= 0.357': the view the frame was picked by first, each at its own threshold;
    old gallery files without "F" give F1 alone."""
    def score(v: dict, view: str) -> str:
        f, t = v.get("F", v.get("MaxF")), v.get("threshold")
        if "F" not in v or t is None:
            return f"F1 {_pct(f)}"
        return f"{view}F {_pct(f)} (precision {_pct(v.get('PRE'))}, recall {_pct(v.get('REC'))}) at p >= {t:.3f}"

    kinds = [GALLERY_KINDS.get(k, k) for k in [it["kind"], *it.get("also", [])]]
    views = [score(it, "image ")] + ([score(it["bev"], "BEV ")] if it.get("bev") else [])
    if it["kind"] == "worst-bev":
        views.reverse()
    return html.escape(f"{kinds[0]} of {it['category']}{''.join(', also ' + k for k in kinds[1:])}: {it['name']}, "
                       + "; ".join(views))


def read_inputs(folder: str | Path, gallery: bool = True) -> tuple[dict, dict | None, dict | list | None]:
    """(metrics.json, video.json, gallery/gallery.json) of a folder, checked: a missing metrics file or a corrupt or
    foreign one is a one-line DataError naming the file; the other two are optional. gallery=False: the gallery is
    about to be rendered again, so the old gallery.json is not read (None)."""
    import shlex

    from roadseg.data.io import read_json
    from roadseg.errors import DataError

    folder = Path(folder)
    mpath = folder / "metrics.json"
    if not mpath.is_file():
        ckpt = next((folder / n for n in ("best.pt", "last.pt") if (folder / n).is_file()), None)
        if ckpt is not None:  # a training run: its scores come from eval, which writes the report with its curves
            raise RoadsegError(f"{folder}: a training run, with no metrics.json yet; `roadseg eval --model "
                               f"{shlex.quote(str(ckpt))} --out {shlex.quote(str(folder))}` scores it and writes its "
                               f"report.html (with the training curves)")
        raise RoadsegError(f"{folder}: no metrics.json to report on (write one with roadseg eval --out {folder})")
    m = read_json(mpath, "metrics file")
    if not (isinstance(m, dict) and isinstance(m.get("results"), dict) and m["results"]
            and all(isinstance(r, dict) for r in m["results"].values())):
        raise DataError(f"{mpath}: not a roadseg metrics file (no 'results' table; write it with roadseg eval)")
    def optional(name: str):
        return read_json(folder / name, "report input") if (folder / name).is_file() else None

    return m, optional("video.json"), optional("gallery/gallery.json") if gallery else None


def _measures_table(results: dict, table_id: str) -> tuple[str, list]:
    """An HTML table of the devkit measures per category, and the (category, measure) pairs that are undefined."""
    esc = html.escape
    rows, undefined = [], []
    for cat, r in results.items():
        cells = []
        for c in COLS:
            if r[c] is None or r[c] != r[c]:
                undefined.append((cat, c))
                cells.append(f"<td data-key='{c}' title='{esc(UNDEFINED.get(c, UNDEFINED['MaxF']))}'>n/a*</td>")
            else:
                cells.append(f"<td data-key='{c}'>{_pct(r[c])}</td>")
        rows.append(f"<tr data-cat='{esc(cat)}'><td>{esc(cat)}</td>" + "".join(cells)
                    + f"<td>{'n/a*' if r['threshold'] is None else format(r['threshold'], '.3f')}</td></tr>")
    head = f"<table id='{table_id}'><tr><th>category</th>" + "".join(f"<th>{c}</th>" for c in COLS) + "<th>threshold</th></tr>"
    return head + "".join(rows) + "</table>", undefined


def _distance_table(bev: dict) -> str:
    """The BEV measures per distance band (eval's by_distance), with a sentence on how to read them; '' without."""
    d = bev.get("by_distance")
    if not d:
        return ""
    cols = (("F", "F"), ("PRE", "PRE"), ("REC", "REC"), ("error_share", "share of the errors"), ("MaxF", "MaxF"))
    rows = "".join(f"<tr data-band='{html.escape(label)}'><td>{html.escape(label)}</td>"
                   + "".join(f"<td data-key='{k}'>{_pct(r.get(k))}</td>" for k, _ in cols) + "</tr>"
                   for label, r in d.items())
    return (f"<h3>By distance ahead</h3><p>All frames pooled, at the bird's-eye view's MaxF threshold "
            f"({bev['results']['all']['threshold']:.3f}): "
            "F, precision and recall in each band of the grid, the band's share of all the false positives and "
            "negatives, and the band's own MaxF (at its own best threshold; n/a: no road cell in the band). The far "
            "bands come from a few rows near the horizon, so a miss there costs many cells.</p><table id='bev-distance'><tr><th>ahead</th>"
            + "".join(f"<th>{h}</th>" for _, h in cols) + "</tr>" + rows + "</table>")


def write_report(folder: str | Path, checkpoint=None, data=None, predictor=None, title: str = "roadseg report") -> Path:
    """Write folder/report.html from folder/metrics.json (+ gallery/, video.json, run curves) and return its path."""
    from roadseg.data.io import atomic_write

    folder = Path(folder)
    metrics, video, _ = read_inputs(folder, gallery=data is None or (predictor is None and checkpoint is None))
    if predictor is None and checkpoint is not None and data is not None:
        from roadseg.inference.predictor import load

        # the settings the metrics were measured with, so the pictures show the same model function
        predictor = load(checkpoint, backend=metrics.get("backend") or "torch", precision=metrics.get("precision") or "fp32",
                         scale=metrics.get("scale"), tta=bool(metrics.get("tta")), top_crop=metrics.get("top_crop"),
                         far_zoom=metrics.get("far_zoom"))
    if predictor is not None and data is not None:
        render_gallery(folder, metrics, predictor, data)
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}"
             "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}"
             "th:first-child,td:first-child,#info td{text-align:left}figure{display:inline-block;margin:6px}"
             "img{max-width:100%}figcaption{font-size:90%;color:#555}.gal img{width:1180px}"
             ".sw{display:inline-block;width:12px;height:12px;margin:0 4px 0 8px;vertical-align:middle}</style></head><body>",
             f"<h1>{esc(title)}</h1>"]
    parts.append(_info_table(metrics))
    if metrics.get("seen_in_training"):
        from roadseg.data.datasets import SEEN_NOTE

        parts.append(f"<p class='seen'><b>Note:</b> {esc(metrics.get('seen_note') or SEEN_NOTE)}.</p>")
    table, undefined = _measures_table(metrics["results"], "metrics")
    parts.append("<h2>KITTI devkit measures (%)</h2>" + table + "<p>MaxF, AP (11-point), PRE/REC/FPR/FNR at the "
                 "MaxF threshold (the operating point), exactly as the KITTI devkit computes them on 8-bit "
                 "probabilities, in the perspective image; IoU of road at probability 0.5.</p>")
    if isinstance(metrics.get("bev"), dict):
        b = metrics["bev"]
        table, bev_undefined = _measures_table(b["results"], "bev")
        undefined += [(f"{cat} (BEV)", c) for cat, c in bev_undefined]
        miss = b.get("without_calibration") or []
        parts.append(f"<h2>Bird's-eye view (%)</h2><p>The same measures on the maps warped to KITTI's 800x400 "
                     f"bird's-eye grid (5 cm cells, 6-46 m ahead), as its server scores them: {b.get('frames')} frames"
                     + (f"; left out for want of a calibration file: {esc(', '.join(miss))}" if miss else "")
                     + ".</p>" + table + _distance_table(b))
    if undefined:
        parts.append("<p class='undefined'>* undefined: " + "; ".join(
            f"{esc(cat)} {esc(c)}: {esc(UNDEFINED.get(c, UNDEFINED['MaxF']))}" for cat, c in undefined) + "</p>")
    if metrics.get("counts"):
        used = metrics.get("threshold_used")
        parts.append("<h2>Precision-recall</h2><p>The red dot is each category's operating point: the threshold with "
                     "the highest F (MaxF), which the error maps below use. Masks from predict and video use the "
                     "model's one stored threshold" + (f" ({used:.3f})" if isinstance(used, float) else "") + ", the "
                     "operating point of its validation frames over all categories.</p>"
                     f"<img alt='precision-recall curves' src='{_pr_plot(metrics['counts'], metrics['results'])}'>")
    curves = _training_curves(metrics)
    if curves:
        parts.append("<h2>Training</h2>" + "".join(f"<img alt='{esc(k)} curve' src='{u}'>" for k, u in curves.items()))
    parts += _gallery_html(folder)
    if video is not None:
        v = video
        parts.append("<h2>Video</h2><table id='video'>" + "".join(
            f"<tr><td>{esc(VIDEO_LABELS.get(k, k))}</td><td>{esc(_video_value(k, x))}</td></tr>" for k, x in v.items())
            + "</table>"
            "<p>flicker: the share of pixels whose label changes between consecutive frames (lower third: the near "
            "field); agreement: the share of pixels whose smoothed label equals the frame's own.</p>")
        still = folder / "video_frame.png"
        if still.is_file():
            parts.append(f"<p><img alt='video frame' src='{_png_uri(still.read_bytes())}' style='width:640px'></p>")
    parts.append("</body></html>")
    page = "\n".join(parts)
    return atomic_write(folder / "report.html", lambda f: f.write(page), text=True)
