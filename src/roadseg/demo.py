"""The demo: a model on the KITTI test frames, the dash-cam clip and the validation frames, then the HTML report.
What `roadseg demo` and `make demo` run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from roadseg.errors import RoadsegError

KITTI_SOURCE = ("kitti_road/ (KITTI's data_road.zip, unpacked: training/ and testing/; "
                "https://www.cvlibs.net/datasets/kitti/eval_road.php)")
VIDEO_SOURCE = ("video/solidWhiteRight.mp4 (a dash-cam clip; the one in github.com/udacity/CarND-LaneLines-P1, "
                "test_videos/)")
WORKSPACE_DATA = Path("../shared/data")  # where a development checkout keeps the data, beside the repository


def default_data() -> Path:
    """Where the demo looks when no --data is given: ROADSEG_DATA, else a checkout's ../shared/data."""
    return Path(os.environ.get("ROADSEG_DATA") or WORKSPACE_DATA)


def _check_data(data: Path, kitti: Path, video: Path, given: bool) -> None:
    """A one-line error saying what the demo reads and where to get it, when `data` lacks it."""
    missing = [what for p, what in ((kitti, KITTI_SOURCE), (video, VIDEO_SOURCE)) if not p.exists()]
    if not missing:
        return
    needs = f"the demo reads {' and '.join(missing)}"
    if given:
        raise RoadsegError(f"{data}: no demo data here ({needs}); pass --data with the folder holding them")
    if os.environ.get("ROADSEG_DATA"):
        raise RoadsegError(f"{data} (ROADSEG_DATA): no demo data here ({needs}); point ROADSEG_DATA or --data at "
                           f"the folder holding them")
    raise RoadsegError(f"no demo data: {needs}; pass --data DIR (or set ROADSEG_DATA) with the folder holding them")


def _quiet(*_args, **_kw) -> None:
    pass


def run_demo(data: str | Path | None, out: str | Path, model=None, progress=None, say=_quiet, **settings) -> Path:
    """Run `model` (a shipped name or checkpoint; None: the default) with roadseg.load's `settings` on the demo data
    in `data` (kitti_road/ and video/solidWhiteRight.mp4; None: default_data()): overlays, masks and probability
    maps of the test frames in out/test_frames, the annotated clip (out/solidWhiteRight_road.mp4, its frame 60 as out/video_frame.png,
    out/video.json), the validation scores (out/metrics.json) and out/report.html, which is returned. `say` gets one
    line per stage (the CLI prints them)."""
    from roadseg.data import build_dataset
    from roadseg.data.datasets import SEEN_NOTE, kitti_samples, validation_config
    from roadseg.data.io import atomic_write, save_png_atomic
    from roadseg.engine.evaluate import (
        data_record,
        evaluate,
        format_bev,
        format_distance,
        format_table,
        run_info,
        write_metrics,
    )
    from roadseg.inference.pipeline import predict_images
    from roadseg.inference.predictor import load
    from roadseg.inference.video import process_video
    from roadseg.models.shipped import locate
    from roadseg.report import write_report

    t0 = time.time()
    given = data is not None
    data, out = Path(data) if given else default_data(), Path(out)
    kitti, video = data / "kitti_road", data / "video" / "solidWhiteRight.mp4"
    _check_data(data, kitti, video, given)
    out.mkdir(parents=True, exist_ok=True)
    pred = load(model, **settings)
    say(f"model: {pred.info.name}\nbackend: {pred.settings.label()}, network input scale {pred.scale}")

    test = [s.image for s in kitti_samples(kitti, labelled=False)]
    r = predict_images(pred, test, out / "test_frames", probs=True, progress=progress)
    say(f"[{time.time() - t0:5.1f}s] {len(r['written'])} KITTI test frames -> {out / 'test_frames'}")

    s = process_video(pred, video, out / "solidWhiteRight_road.mp4", progress=progress)
    record = json.dumps({**s.to_dict(), **pred.settings.record()}, indent=1)
    atomic_write(out / "video.json", lambda f: f.write(record), text=True)
    save_png_atomic(_frame(out / "solidWhiteRight_road.mp4", 60), out / "video_frame.png")
    say(f"[{time.time() - t0:5.1f}s] video -> {s.output}: {s.text()}")

    dcfg, seen = validation_config(pred.cfg.data)
    dcfg.root = str(kitti)
    val = build_dataset(dcfg, "val")
    if seen:
        say(f"note: {SEEN_NOTE}")
    ev = evaluate(pred, val, progress=progress)
    path = locate(model)
    res = write_metrics(ev, out / "metrics.json", {"checkpoint": str(path), "frames": len(val), "seen_in_training": seen,
                                             "split": f"val (last {dcfg.val_last_n} per category)",
                                             "data": data_record(dcfg), **run_info(path, pred, ev, val)})
    say(format_table(res["results"]))
    if table := format_bev(res):
        say(table)
    if table := format_distance(res):
        say(table)
    first = val[0]["image"].permute(1, 2, 0).numpy()
    save_png_atomic(pred.predict(first).overlay(first), out / "val_example.png")
    report = write_report(out, predictor=pred, data=val, title="roadseg demo: shipped KITTI model")  # + error maps
    say(f"[{time.time() - t0:5.1f}s] report: {report}")
    return report


def _frame(video: Path, index: int):
    """Frame `index` of a video (or its last, if shorter), as RGB: through the video loop's own source."""
    from roadseg.inference.sources import open_source

    src = open_source(video)
    try:
        last = None
        for i, f in enumerate(it for it in src.items() if hasattr(it, "image")):
            last = f.image
            if i == index:
                break
        return last
    finally:
        src.close()
