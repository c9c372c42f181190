"""The HTML report: opened in headless Chromium (every image loads, the table holds metrics.json's numbers), its
error maps, frame ranking at the operating threshold, and the model and machine it names."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from roadseg.cli import main


def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (make test installs Debian's chromium)")
        pytest.skip("chromium not installed")
    return exe


def test_report_in_a_browser(tiny_ckpt, kitti_root, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(tiny_ckpt), "--data", str(kitti_root), "--split", "val",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    page = (out / "report.html").read_text()
    probe = ("<script>window.addEventListener('load',()=>{const im=[...document.images];"
             "document.body.setAttribute('data-images',im.length);"
             "document.body.setAttribute('data-loaded',im.filter(i=>i.complete&&i.naturalWidth>0).length);});</script>")
    (out / "probe.html").write_text(page.replace("</body>", probe + "</body>"))
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", (out / "probe.html").as_uri()], capture_output=True, text=True, timeout=120).stdout
    n = int(re.search(r'data-images="(\d+)"', dom).group(1))
    loaded = int(re.search(r'data-loaded="(\d+)"', dom).group(1))
    assert n >= 3 and loaded == n  # PR curve + gallery overlays, all decoded
    for cat, r in metrics["results"].items():
        row = re.search(rf"<tr data-cat=\"{cat}\">(.*?)</tr>", dom, re.S).group(1)
        cells = dict(re.findall(r'data-key="(\w+)">([\d.]+)<', row))
        for key in ("MaxF", "AP", "PRE", "REC", "FPR", "FNR", "IoU"):
            assert float(cells[key]) == pytest.approx(100 * r[key], abs=0.006), (cat, key)


def test_error_map_colours_each_outcome():
    from roadseg.report import ERROR_COLOURS, error_map, pick_frames

    image = np.full((1, 5, 3), 100, np.uint8)
    target = np.array([[1, 0, 1, 0, 255]], np.uint8)
    prob = np.array([[0.9, 0.9, 0.2, 0.2, 0.9]])
    out = error_map(image, target, prob, threshold=0.5, alpha=1.0)
    assert [tuple(p) for p in out[0]] == [ERROR_COLOURS["TP"], ERROR_COLOURS["FP"], ERROR_COLOURS["FN"], (60, 60, 60),
                                          ERROR_COLOURS["ignored"]]  # true negative: the frame in grey, darkened
    # threshold compared on 8-bit values, as scored: 0.5 -> k 128, so p = 127.6/255 (quantized 128) is road
    assert tuple(error_map(image[:, :1], np.ones((1, 1), np.uint8), np.array([[127.6 / 255]]), 0.5, 1.0)[0, 0]) \
        == ERROR_COLOURS["TP"]
    per_frame = {"um_1": {"category": "um", "F": 0.9}, "um_2": {"category": "um", "F": 0.0},
                 "um_3": {"category": "um", "F": None}, "um_4": {"category": "um", "F": 0.95},
                 "uu_1": {"category": "uu", "F": 0.5}}
    picks, undefined = pick_frames(per_frame, worst=1, best=1)
    assert undefined == ["um_3"]  # no road and none predicted: F undefined, neither best nor worst
    assert picks == [(("worst",), "um_2"), (("best",), "um_4"), (("worst",), "uu_1")]
    # with the BEV measures: per category also the worst frame by BEV F, named beside a pick it already is
    bev = {"um_1": {"category": "um", "F": 0.7}, "um_2": {"category": "um", "F": 0.8},
           "um_4": {"category": "um", "F": 0.99}, "uu_1": {"category": "uu", "F": 0.6}}
    picks, _ = pick_frames(per_frame, worst=1, best=1, bev_per_frame=bev)
    assert picks == [(("worst",), "um_2"), (("best",), "um_4"), (("worst-bev",), "um_1"),
                     (("worst", "worst-bev"), "uu_1")]  # uu_1 is worst in both views: drawn once


def test_each_views_error_map_is_drawn_at_its_own_threshold():
    from roadseg.report import ERROR_COLOURS, _panels

    class SameGrid:  # a bird's-eye-view lookup that leaves the frame as it is
        def warp(self, x, fill=None):
            return x

    image, target, prob = np.full((200, 200, 3), 100, np.uint8), np.ones((200, 200), np.uint8), np.full((200, 200), 0.6)
    out = _panels(image, target, prob, 0.5, scale=0.5, bev=SameGrid(), bev_threshold=0.7).astype(int)
    image_err, bev_err = out[150, 50], out[200, 500]  # the 2x2 grid's error tile; the second of the three BEV tiles
    assert image_err[1] > image_err[2] and bev_err[2] > bev_err[1]  # road at 0.5 (TP, green), not at 0.7 (FN, blue)
    assert ERROR_COLOURS["TP"][1] > ERROR_COLOURS["TP"][2] and ERROR_COLOURS["FN"][2] > ERROR_COLOURS["FN"][1]


def test_gallery_caption_names_the_view_a_frame_was_picked_by():
    from roadseg.report import _caption

    it = {"kind": "worst-bev", "name": "um_000072", "category": "um", "F": 0.92964, "PRE": 0.95, "REC": 0.91,
          "threshold": 0.4902, "bev": {"F": 0.88865, "PRE": 0.9, "REC": 0.8781, "threshold": 0.3569}}
    assert _caption(it) == ("worst in the bird&#x27;s-eye view of um: um_000072, BEV F 88.87 (precision 90.00, "
                            "recall 87.81) at p &gt;= 0.357; image F 92.96 (precision 95.00, recall 91.00) at p &gt;= 0.490")
    both = {**it, "kind": "worst", "also": ["worst-bev"]}
    assert _caption(both).startswith("worst of um, also worst in the bird&#x27;s-eye view: um_000072, image F 92.96")
    assert _caption({"kind": "best", "name": "uu_1", "category": "uu", "MaxF": 0.5}) == "best of uu: uu_1, F1 50.00"


def test_report_shows_model_machine_operating_point_and_error_maps(tiny_ckpt, kitti_root, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(tiny_ckpt), "--data", str(kitti_root), "--split", "val",
                 "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    from roadseg.device import key_flags

    assert m["cpu_flags"] == key_flags() and m["eval_s"] > 0 and len(m["file_sha256"]) == 64
    assert m["model"] == tiny_ckpt.stem and m["threshold_used"] == pytest.approx(0.5)
    from roadseg.metrics import Counts, at_threshold  # the masks' scores, at the stored threshold, from the counts

    pooled = sum((Counts.from_array(v) for v in m["counts"].values()), Counts())
    assert m["at_threshold_used"]["all"]["TP"] == at_threshold(pooled, 0.5)["TP"]
    assert set(m["at_threshold_used"]) == set(m["counts"]) | {"all"}
    for v in m["per_frame"].values():  # every frame scored at its category's operating threshold
        assert v["threshold"] == pytest.approx(m["results"][v["category"]]["threshold"])
    page = (out / "report.html").read_text()
    for text in (m["file_sha256"], "operating point", "TP", "FP", "FN", "ignored", "road probability"):
        assert text in page
    gal = json.loads((out / "gallery" / "gallery.json").read_text())
    cats = {it["category"] for it in gal["items"]}
    assert cats == {v["category"] for v in m["per_frame"].values() if v["F"] is not None}
    for it in gal["items"]:  # two frames a category, both drawn already and both its BEV-worst two
        cat = it["category"]
        assert it["kind"] in ("worst", "best") and it["also"] == ["worst-bev"]
        assert it["F"] == m["per_frame"][it["name"]]["F"] and it["threshold"] == m["results"][cat]["threshold"]
        assert it["bev"]["F"] == m["bev"]["per_frame"][it["name"]]["F"]
        assert it["bev"]["threshold"] == m["bev"]["results"][cat]["threshold"]
    from PIL import Image

    h, w = np.asarray(Image.open(out / gal["items"][0]["file"])).shape[:2]
    # 2x2 panels at half size, and the frames have calibration files: three bird's-eye-view panels (400x800 at half)
    assert (h, w) == (max(2 * (375 // 2), 400), 2 * (1242 // 2) + 3 * 200)
    assert "Bird's-eye view (%)" in page and m["bev"]["frames"] == len(m["per_frame"])
    bands = m["bev"]["by_distance"]  # the distance table: one row per band, its F as in metrics.json
    assert page.count("<tr data-band=") == len(bands) == 4
    assert f"<td data-key='F'>{100 * bands['6-16 m']['F']:.2f}</td>" in page
