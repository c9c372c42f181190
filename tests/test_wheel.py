"""The wheel works outside the checkout: built with pip, installed (no editable path, no source tree) into a fresh
environment, then run from another folder: shipped models resolve by name, INT8 is built from the frames the file
carries, predict / video / demo / benchmark --quick work, and no file is written outside the folders named."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import KITTI

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv holding only the roadseg wheel; its dependencies come from the test environment through a .pth line."""
    tmp = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                        "-w", str(tmp / "dist"), str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next((tmp / "dist").glob("roadseg-*.whl"))
    env_dir = tmp / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")  # torch, onnxruntime, ... of this env
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                        str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp / "elsewhere"
    work.mkdir()
    env = {**os.environ, "ROADSEG_CACHE": str(tmp / "cache"), "PYTHONPATH": ""}
    env.pop("ROADSEG_MODELS", None)
    return env_dir, work, env


def run(installed, *args, timeout=600):
    env_dir, work, env = installed
    return subprocess.run([str(env_dir / "bin" / "roadseg"), *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_installed_package_is_the_wheel_not_the_checkout(installed):
    env_dir, work, env = installed
    r = subprocess.run([str(env_dir / "bin" / "python"), "-c",
                        "import roadseg, roadseg.models.shipped as s; print(roadseg.__file__); print(s.locate('kitti-lite0'))"],
                       cwd=work, env=env, capture_output=True, text=True, check=True)
    module, model = r.stdout.split()
    assert str(env_dir) in module and str(ROOT / "src") not in module
    assert Path(model).parent == env_dir / "share" / "roadseg" / "models"


def test_predict_video_and_benchmark_from_another_folder(installed):
    env_dir, work, env = installed
    frame = KITTI / "training" / "image_2" / "um_000000.jpg"
    r = run(installed, "predict", str(frame), "--out", "o")
    assert r.returncode == 0, r.stderr[-1500:]
    assert sorted(p.name for p in (work / "o").iterdir()) == ["um_000000_mask.png", "um_000000_overlay.png"]
    assert any(p.name.endswith("_int8.onnx") for p in (Path(env["ROADSEG_CACHE"]) / "onnx").iterdir())

    clip = work / "clip.mp4"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 320, 96, "yuv420p"
        for i in range(6):
            img = np.full((96, 320, 3), 40 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    r = run(installed, "video", "clip.mp4", "--out", "clip_road.mp4")
    assert r.returncode == 0, r.stderr[-1500:]
    with av.open(str(work / "clip_road.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6

    r = run(installed, "benchmark", "--quick", "--model", "kitti-lite0", "--only", "onnxruntime:int8", "--out", "bench")
    assert r.returncode == 0, r.stderr[-1500:]
    table = (work / "bench" / "inference.md").read_text()
    assert "| kitti-lite0 | 1.0 | onnxruntime | int8 |" in table
    r = run(installed, "demo", "--data", str(KITTI.parent), "--out", "demo")
    assert r.returncode == 0, r.stderr[-1500:]
    assert (work / "demo" / "report.html").is_file() and "not validation numbers" in r.stdout
    assert "bird's-eye view (30 frames)" in r.stdout  # the validation frames have calibration files
    assert {p.name for p in work.iterdir()} == {"o", "clip.mp4", "clip_road.mp4", "bench", "demo"}  # nothing else here
