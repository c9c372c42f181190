"""The HTML report, opened in headless Chromium: every image loads and the table holds metrics.json's numbers."""

import json
import os
import re
import shutil
import subprocess

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
