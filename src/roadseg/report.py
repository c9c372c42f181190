"""A self-contained HTML report for a run/eval/demo folder: metrics per category, precision-recall curves,
training curves when present, an overlay gallery (best and worst frames by F1), and the video's summary.
Every picture is embedded as a data URI, so the one file can be mailed or archived."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from roadseg.errors import RoadsegError
from roadseg.metrics import Counts, pr_curve

COLS = ["MaxF", "AP", "PRE", "REC", "FPR", "FNR", "IoU"]


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _fig_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return _png_uri(buf.getvalue())


def _pr_plot(counts: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for cat, arr in sorted(counts.items()):
        r, p = pr_curve(Counts.from_array(arr))
        ax.plot(r, p, label=cat)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title("precision-recall (KITTI devkit thresholds)")
    fig.tight_layout()
    return _fig_uri(fig)


def render_gallery(folder: Path, metrics: dict, predictor, dataset, k: int = 3) -> list[dict]:
    """Overlays of the k best and k worst frames by per-frame F1, written under folder/gallery/."""
    from PIL import Image

    from roadseg.inference.pipeline import overlay

    frames = sorted(metrics.get("per_frame", {}).items(), key=lambda kv: kv[1]["MaxF"])
    if not frames:
        return []
    worst = frames[: min(k, len(frames) // 2)]
    best = [f for f in frames[::-1] if f not in worst][:k]
    picks = [("worst", n, v) for n, v in worst] + [("best", n, v) for n, v in best]
    index = {s.name: i for i, s in enumerate(dataset.samples)}
    gdir = folder / "gallery"
    gdir.mkdir(exist_ok=True)
    items = []
    for kind, name, v in picks:
        if name not in index:
            continue
        img = dataset[index[name]]["image"].permute(1, 2, 0).numpy()
        Image.fromarray(overlay(img, predictor.predict(img))).save(gdir / f"{kind}_{name}.png")
        items.append({"kind": kind, "name": name, "category": v["category"], "F1": v["MaxF"],
                      "file": f"gallery/{kind}_{name}.png"})
    (gdir / "gallery.json").write_text(json.dumps(items, indent=1))
    return items


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


def write_report(folder: str | Path, checkpoint=None, data=None, predictor=None, title: str = "roadseg report") -> Path:
    """Write folder/report.html from folder/metrics.json (+ gallery/, video.json, run curves) and return its path."""
    from roadseg.data.io import atomic_write

    folder = Path(folder)
    mpath = folder / "metrics.json"
    if not mpath.is_file():
        raise RoadsegError(f"{folder}: no metrics.json to report on (run roadseg eval first)")
    metrics = json.loads(mpath.read_text())
    if predictor is None and checkpoint is not None and data is not None:
        from roadseg.inference.predictor import load

        # the backend and precision the metrics were measured with, so the pictures show the same model function
        predictor = load(checkpoint, backend=metrics.get("backend") or "torch", precision=metrics.get("precision") or "fp32",
                         scale=metrics.get("scale"))
    if predictor is not None and data is not None:
        render_gallery(folder, metrics, predictor, data)
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}"
             "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}"
             "th:first-child,td:first-child{text-align:left}figure{display:inline-block;margin:6px}"
             "img{max-width:100%}figcaption{font-size:90%;color:#555}.gal img{width:560px}</style></head><body>",
             f"<h1>{esc(title)}</h1>"]
    info = {k: metrics[k] for k in ("checkpoint", "split", "frames", "scale", "backend", "precision") if k in metrics}
    if info:
        parts.append("<p>" + " · ".join(f"<b>{esc(k)}</b>: {esc(str(v))}" for k, v in info.items()) + "</p>")
    if metrics.get("seen_in_training"):
        from roadseg.data.datasets import SEEN_NOTE

        parts.append(f"<p class='seen'><b>Note:</b> {esc(SEEN_NOTE)}.</p>")
    parts.append("<h2>KITTI devkit measures (%)</h2><table id='metrics'><tr><th>category</th>"
                 + "".join(f"<th>{c}</th>" for c in COLS) + "<th>threshold</th></tr>")
    for cat, r in metrics["results"].items():
        parts.append(f"<tr data-cat='{esc(cat)}'><td>{esc(cat)}</td>"
                     + "".join(f"<td data-key='{c}'>{_pct(r[c])}</td>" for c in COLS)
                     + f"<td>{'n/a' if r['threshold'] is None else format(r['threshold'], '.3f')}</td></tr>")
    parts.append("</table><p>MaxF, AP (11-point), PRE/REC/FPR/FNR at the MaxF threshold, exactly as the KITTI "
                 "devkit computes them on 8-bit probabilities; IoU of road at probability 0.5.</p>")
    if metrics.get("counts"):
        parts.append(f"<h2>Precision-recall</h2><img alt='precision-recall curves' src='{_pr_plot(metrics['counts'])}'>")
    curves = _training_curves(metrics)
    if curves:
        parts.append("<h2>Training</h2>" + "".join(f"<img alt='{esc(k)} curve' src='{u}'>" for k, u in curves.items()))
    gal = folder / "gallery" / "gallery.json"
    if gal.is_file():
        parts.append("<h2>Gallery: worst and best frames by F1</h2><div class='gal'>")
        for it in json.loads(gal.read_text()):
            img = folder / it["file"]
            if img.is_file():
                parts.append(f"<figure><img alt='{esc(it['name'])}' src='{_png_uri(img.read_bytes())}'>"
                             f"<figcaption>{esc(it['kind'])}: {esc(it['name'])} ({esc(it['category'])}), "
                             f"F1 {100 * it['F1']:.2f}</figcaption></figure>")
        parts.append("</div>")
    vj = folder / "video.json"
    if vj.is_file():
        v = json.loads(vj.read_text())
        parts.append("<h2>Video</h2><table id='video'>" + "".join(
            f"<tr><td>{esc(k)}</td><td>{esc(str(round(x, 3) if isinstance(x, float) else x))}</td></tr>"
            for k, x in v.items()) + "</table>")
        still = folder / "video_frame.png"
        if still.is_file():
            parts.append(f"<p><img alt='video frame' src='{_png_uri(still.read_bytes())}' style='width:640px'></p>")
    parts.append("</body></html>")
    page = "\n".join(parts)
    return atomic_write(folder / "report.html", lambda f: f.write(page), text=True)
