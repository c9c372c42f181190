"""Reliability: odd entries in input folders (symlink loops, broken links, folders and FIFOs named like images),
outputs that cannot be written (refused before any long work starts), an unwritable model cache, corrupt JSON."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import KITTI, make_kitti, write_png
from roadseg.cli import main

FRAME = KITTI / "training" / "image_2" / "um_000000.jpg"


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def looping_folder(folder):
    """A folder with one good frame, a link to itself and two links to each other."""
    folder.mkdir(parents=True)
    shutil.copy(FRAME, folder / "um_000000.jpg")
    (folder / "self.png").symlink_to("self.png")
    (folder / "a.png").symlink_to("b.png")
    (folder / "b.png").symlink_to("a.png")
    return folder


# ------------------------------------------------------------------ symlink loops and other odd entries


@pytest.mark.parametrize("as_glob", [False, True])
def test_symlink_loop_in_predict_folder_is_one_line_or_skipped(tiny_ckpt, tmp_path, capsys, as_glob):
    src = looping_folder(tmp_path / "in")
    arg = str(src / "*") if as_glob else str(src)
    base = ["predict", arg, "--model", str(tiny_ckpt), "--backend", "torch"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 2
    assert "a.png: symlink loop" in one_error_line(capsys)
    assert not (tmp_path / "a").exists()
    assert main(base + ["--out", str(tmp_path / "b"), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert all(f"{n}: symlink loop" in out for n in ("a.png", "b.png", "self.png")) and "1 frames" in out
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["um_000000_mask.png", "um_000000_overlay.png"]


def test_symlink_loop_named_on_the_command_line(tiny_ckpt, tmp_path, capsys):
    (tmp_path / "self.png").symlink_to("self.png")
    assert main(["predict", str(tmp_path / "self.png"), "--model", str(tiny_ckpt), "--backend", "torch",
                 "--out", str(tmp_path / "o")]) == 2
    assert "self.png: symlink loop" in one_error_line(capsys)


@pytest.mark.parametrize("entry", ["broken-link", "folder", "fifo"])
def test_odd_entries_named_like_images_are_reported_or_skipped(tiny_ckpt, tmp_path, capsys, entry):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(FRAME, src / "um_000000.jpg")
    odd = src / "odd.png"
    what = {"broken-link": "broken symlink", "folder": "is a folder", "fifo": "not a regular file"}[entry]
    if entry == "broken-link":
        odd.symlink_to("missing.png")
    elif entry == "folder":
        odd.mkdir()
    else:
        os.mkfifo(odd)  # opening it to read would block for ever
    base = ["predict", str(src), "--model", str(tiny_ckpt), "--backend", "torch"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 2
    assert f"odd.png: {what}" in one_error_line(capsys)
    assert main(base + ["--out", str(tmp_path / "b"), "--skip-bad"]) == 0
    assert f"skipped: {odd}: {what}" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["images", "masks"])
def test_symlink_loop_in_an_eval_folder_dataset_is_one_line(tiny_ckpt, tmp_path, capsys, where):
    root = tmp_path / "ds"
    for i in range(2):
        write_png(root / "images" / f"f{i}.png", np.full((40, 96, 3), 60 * i, np.uint8))
        write_png(root / "masks" / f"f{i}.png", np.full((40, 96), 1, np.uint8))
    write_png(root / "images" / "loop.png", np.zeros((40, 96, 3), np.uint8))
    write_png(root / "masks" / "loop.png", np.zeros((40, 96), np.uint8))
    (root / where / "loop.png").unlink()
    (root / where / "loop.png").symlink_to("loop.png")
    rc = main(["eval", "--model", str(tiny_ckpt), "--backend", "torch", "--dataset", "folder", "--data", str(root),
               "--split", "all", "--out", str(tmp_path / "e"), "--no-report"])
    assert rc == 2 and f"{where}/loop.png: symlink loop" in one_error_line(capsys)
    assert not (tmp_path / "e").exists()


def test_symlink_loop_in_a_kitti_folder_is_one_line(tiny_ckpt, tmp_path, capsys):
    root = make_kitti(tmp_path / "kitti", names=("um_000000", "um_000001", "uu_000000"))
    (root / "training" / "image_2" / "um_000001.png").unlink()
    (root / "training" / "image_2" / "um_000001.png").symlink_to("um_000001.png")
    rc = main(["eval", "--model", str(tiny_ckpt), "--backend", "torch", "--data", str(root), "--split", "all",
               "--out", str(tmp_path / "e"), "--no-report"])
    assert rc == 2 and "um_000001.png: symlink loop" in one_error_line(capsys)


def test_symlink_loop_at_an_output_name_is_replaced_not_followed(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "um_000000_overlay.png").symlink_to("um_000000_overlay.png")
    assert main(["predict", str(FRAME), "--model", str(tiny_ckpt), "--backend", "torch", "--out", str(out)]) == 0
    assert (out / "um_000000_overlay.png").is_file() and not (out / "um_000000_overlay.png").is_symlink()


# ------------------------------------------------------------------ outputs that cannot be written: refused first


@pytest.fixture
def tripwires(monkeypatch):
    """Every long step a command could start before writing: reaching one fails the test (and, through main's
    handler for unexpected errors, gives exit code 1, not 2)."""
    import roadseg.benchmark
    import roadseg.cli.commands as commands
    import roadseg.engine.train as train
    import roadseg.models.checkpoint as checkpoint
    import roadseg.optimize.quantize as quantize

    def trip(name):
        def f(*a, **k):
            raise AssertionError(f"{name} ran before the output path was checked")
        return f

    for mod, name in [(commands, "default_checkpoint"), (commands, "make_predictor"), (train, "_build"),
                      (train, "_fit"), (checkpoint, "model_from_checkpoint"), (checkpoint, "release"),
                      (checkpoint, "load_checkpoint"), (quantize, "quantize_int8"), (roadseg.benchmark, "run")]:
        monkeypatch.setattr(mod, name, trip(name))


def unwritable_cases(tmp_path, tiny_ckpt):
    """command -> (argv, the path the error names). `blocked` lies under a regular file, so no folder can be made
    there, whoever runs the test (root included)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    b = str(blocker)
    (tmp_path / "c.yaml").write_text("{}\n")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not read before the check")
    ck = str(tiny_ckpt)
    return {
        "train out_dir": (["train", "--config", str(tmp_path / "c.yaml"), f"train.out_dir={b}/runs", "train.name=r"],
                          f"{b}/runs/r"),
        "video --summary": (["video", str(clip), "--out", str(tmp_path / "o.mp4"), "--summary", f"{b}/s.json"],
                            f"{b}/s.json"),
        "video --out": (["video", str(clip), "--out", f"{b}/o.mp4"], f"{b}/o.mp4"),
        "eval --save-probs": (["eval", "--model", ck, "--save-probs", f"{b}/probs"], f"{b}/probs"),
        "eval --out": (["eval", "--model", ck, "--out", f"{b}/eval"], f"{b}/eval"),
        "predict --out": (["predict", str(FRAME), "--out", f"{b}/pred"], f"{b}/pred"),
        "export --out": (["export", ck, "--out", f"{b}/m.onnx"], f"{b}/m.onnx"),
        "export --optimized": (["export", ck, "--out", str(tmp_path / "m.onnx"), "--optimized", f"{b}/o.onnx"],
                               f"{b}/o.onnx"),
        "export --fp16": (["export", ck, "--out", str(tmp_path / "m.onnx"), "--fp16", f"{b}/h.onnx"], f"{b}/h.onnx"),
        "release --out": (["release", ck, "--out", f"{b}/r.pt"], f"{b}/r.pt"),
        "quantize --out": (["quantize", str(tmp_path / "m.onnx"), "--calib", str(KITTI), "--out", f"{b}/q.onnx"],
                           f"{b}/q.onnx"),
        "benchmark --out": (["benchmark", "--out", f"{b}/bench"], f"{b}/bench"),
        "demo --out": (["demo", "--data", str(KITTI.parent), "--out", f"{b}/demo"], f"{b}/demo"),
        "export --out is a folder": (["export", ck, "--out", str(tmp_path)], str(tmp_path)),
    }


CASES = ["train out_dir", "video --summary", "video --out", "eval --save-probs", "eval --out", "predict --out",
         "export --out", "export --optimized", "export --fp16", "release --out", "quantize --out", "benchmark --out",
         "demo --out", "export --out is a folder"]


@pytest.mark.parametrize("case", CASES)
def test_unwritable_output_is_refused_before_any_work(case, tiny_ckpt, tmp_path, tripwires, capsys):
    argv, named = unwritable_cases(tmp_path, tiny_ckpt)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {named}: ") and ("cannot write" in line or "is a folder" in line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing made


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused_before_any_work(tiny_ckpt, tmp_path, tripwires, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["export", str(tiny_ckpt), "--out", str(ro / "m.onnx")]) == 2
        assert "is not writable (Permission denied)" in one_error_line(capsys)
    finally:
        ro.chmod(0o755)


def test_report_html_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text(json.dumps({"results": {"all": {"MaxF": 0.5}}}))
    (tmp_path / "report.html").mkdir()
    assert main(["report", str(tmp_path)]) == 2
    assert "report.html: is a folder" in one_error_line(capsys)


# ------------------------------------------------------------------ the model cache


@pytest.mark.parametrize("var", ["ROADSEG_CACHE", "HOME"])
def test_unwritable_cache_falls_back_with_one_warning(var, tiny_ckpt, tmp_path, monkeypatch, caplog, capsys):
    """The default backend builds its ONNX model in the cache; where that cannot be written, it is built in a
    temporary folder for this run, with one warning line, and the command succeeds."""
    import logging

    from roadseg.optimize import cache

    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    monkeypatch.delenv("ROADSEG_CACHE", raising=False)
    monkeypatch.setenv(var, str(blocker))
    monkeypatch.setattr(cache, "_TEMP_CACHE", {})
    with caplog.at_level(logging.WARNING):
        rc = main(["predict", str(FRAME), "--model", str(tiny_ckpt), "--backend", "onnxruntime", "--precision", "fp32",
                   "--out", str(tmp_path / "o")])
    assert rc == 0 and (tmp_path / "o" / "um_000000_mask.png").is_file()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert f"{blocker}" in warnings[0] and "for this run only (set ROADSEG_CACHE" in warnings[0]
    assert blocker.read_text() == "a file"
    tmp = next(iter(cache._TEMP_CACHE.values()))
    assert [p.name for p in tmp.glob("*.onnx")][0].endswith("_fp32.onnx")
    shutil.rmtree(tmp)


# ------------------------------------------------------------------ corrupt JSON read by report


@pytest.mark.parametrize("content,msg", [
    (b'{"results": {"all": {"MaxF"', "corrupt metrics file (not valid JSON"),
    (b"\xff\xfe\x00garbage", "cannot read the metrics file"),
    (b"[1, 2]", "not a roadseg metrics file"),
    (b'{"results": {}}', "not a roadseg metrics file"),
])
def test_report_on_a_corrupt_metrics_json_is_one_line(tmp_path, capsys, content, msg):
    (tmp_path / "metrics.json").write_bytes(content)
    assert main(["report", str(tmp_path)]) == 2
    assert f"metrics.json: {msg}" in one_error_line(capsys)
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("name", ["video.json", "gallery/gallery.json"])
def test_report_on_a_corrupt_side_file_is_one_line(tmp_path, capsys, name):
    (tmp_path / "metrics.json").write_text(json.dumps({"results": {"all": {"MaxF": 0.5}}}))
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text("{truncated")
    assert main(["report", str(tmp_path)]) == 2
    assert f"{name}: corrupt report input" in one_error_line(capsys)


def test_two_outputs_on_one_path_are_refused_before_any_work(tiny_ckpt, tmp_path, monkeypatch, capsys):
    """`video --summary` naming the video itself would replace the video with the JSON."""
    import roadseg.cli.commands as commands

    monkeypatch.setattr(commands, "make_predictor", lambda *a, **k: pytest.fail("the model was loaded"))
    clip = tmp_path / "in.mp4"
    clip.write_bytes(b"")
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), "--out", str(out), "--summary", str(tmp_path / "." / "out.mp4"),
                 "--model", str(tiny_ckpt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "named both as the video (--out) and as the summary (--summary)" in err[0]
    assert not out.exists()
    (tmp_path / "metrics.json").write_text(json.dumps({"results": {"all": {"MaxF": 0.5}}}))  # without "data"
    assert main(["report", str(tmp_path), "--model", str(tiny_ckpt)]) == 2  # the gallery needs frames too
    assert "--model and --data go together" in capsys.readouterr().err


def test_export_names_an_onnx_file(tiny_ckpt, tmp_path, capsys):
    assert main(["export", str(tiny_ckpt), "--out", str(tmp_path / "model.txt")]) == 2
    assert "--out writes an ONNX model; name it .onnx" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
