"""predict and video over a manifest on Ray (roadseg[ray]), on a local Ray of 2 CPUs started once for the module:
the files are the single-process run's byte for byte, a corrupt frame is listed in failures.tsv while the rest
complete, and a rerun redoes only what is missing. ONNX Runtime (the default backend) gives a frame the same bytes
whatever its batch and thread count; the broken frame in the middle of the list shifts the batches on purpose."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from conftest import DATA, KITTI
from roadseg.cli import main
from roadseg.inference.fleet import CLIP_EXTS, manifest_entries

FRAMES = ["um_000000", "um_000001", "umm_000000", "uu_000000"]
CLIP = DATA / "video" / "solidWhiteRight.mp4"


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def manifest(tmp_path) -> Path:
    """4 KITTI frames and a truncated one, named by a manifest in another folder (relative paths, a comment)."""
    frames = tmp_path / "archive"
    frames.mkdir()
    for name in FRAMES:
        shutil.copy(KITTI / "training" / "image_2" / f"{name}.jpg", frames)
    (frames / "broken.jpg").write_bytes((KITTI / "training" / "image_2" / "um_000002.jpg").read_bytes()[:4000])
    lists = tmp_path / "lists"
    lists.mkdir()
    lines = ["# a night's drive", *(f"../archive/{n}.jpg" for n in FRAMES[:2]), "", "../archive/broken.jpg",
             *(f"../archive/{n}.jpg" for n in FRAMES[2:])]
    (lists / "frames.txt").write_text("\n".join(lines) + "\n")
    return lists / "frames.txt"


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".png"}


def test_predict_on_ray_writes_the_single_process_files_and_lists_the_corrupt_frame(local_ray, tiny_ckpt, manifest,
                                                                                    tmp_path, capsys):
    flags = ["--manifest", str(manifest), "--model", str(tiny_ckpt), "--backend", "onnxruntime", "--precision", "fp32", "--probs",
             "--batch-size", "2"]
    assert main(["predict", *flags, "--out", str(tmp_path / "one"), "--skip-bad"]) == 0
    assert main(["predict", *flags, "--out", str(tmp_path / "ray"), "--ray", "auto"]) == 0
    one, ray = files(tmp_path / "one"), files(tmp_path / "ray")
    assert len(one) == 3 * len(FRAMES) and one == ray  # overlay, mask and probabilities of every good frame
    rows = (tmp_path / "ray" / "failures.tsv").read_text().splitlines()
    assert rows[0] == "path\terror" and len(rows) == 2
    path, error = rows[1].split("\t")
    assert path.endswith("broken.jpg") and "broken.jpg: corrupt or truncated image" in error
    out = capsys.readouterr().out
    assert f"{len(FRAMES)} frames" in out and "1 failed" in out and "2 Ray actors" in out

    # the rerun: complete frames are left alone, a deleted output is made again (the same bytes)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*.png")}
    (tmp_path / "ray" / "uu_000000_mask.png").unlink()
    assert main(["predict", *flags, "--out", str(tmp_path / "ray"), "--ray", "auto"]) == 0
    assert files(tmp_path / "ray") == one
    changed = {p.name for p in (tmp_path / "ray").glob("*.png") if p.stat().st_mtime_ns != stamps[p.name]}
    assert changed == {"uu_000000_overlay.png", "uu_000000_mask.png", "uu_road_000000.png"}
    assert f"{len(FRAMES) - 1} complete already (skipped), 1 failed" in capsys.readouterr().out


def test_video_on_ray_writes_the_single_process_clip(local_ray, tiny_ckpt, tmp_path):
    flags = ["--model", str(tiny_ckpt), "--backend", "onnxruntime", "--precision", "fp32", "--max-frames", "3"]
    assert main(["video", str(CLIP), "--out", str(tmp_path / "one.mp4"), *flags]) == 0
    (tmp_path / "clips.txt").write_text(f"{CLIP}\n")
    assert main(["video", "--manifest", str(tmp_path / "clips.txt"), "--out", str(tmp_path / "ray"), "--ray", "auto",
                 *flags]) == 0
    assert (tmp_path / "ray" / "solidWhiteRight.mp4").read_bytes() == (tmp_path / "one.mp4").read_bytes()
    assert (tmp_path / "ray" / "failures.tsv").read_text() == "path\terror\n"


def test_without_ray_the_flag_is_one_line_naming_the_extra(monkeypatch, tiny_ckpt, manifest, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(["predict", "--manifest", str(manifest), "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"),
                 "--ray", "auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "install roadseg[ray]" in err


def test_manifests_text_and_folder_tree(tmp_path, capsys):
    for rel in ("a/x.png", "a/b/y.jpg", "a/.hidden/z.png", "a/notes.txt", "c/clip.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert manifest_entries(tmp_path / "a") == [str(tmp_path / "a/b/y.jpg"), str(tmp_path / "a/x.png")]
    assert manifest_entries(tmp_path, CLIP_EXTS) == [str(tmp_path / "c/clip.mp4")]
    (tmp_path / "m.txt").write_text("# only comments\n\n")
    assert main(["predict", "--manifest", str(tmp_path / "m.txt"), "--out", str(tmp_path / "o")]) == 2
    assert main(["predict", "--manifest", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")]) == 2
    assert main(["predict", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {tmp_path / 'm.txt'}: the manifest names no files",
                   f"error: {tmp_path / 'missing.txt'}: manifest not found",
                   "error: predict: give image files, folders or globs, or --manifest"]
