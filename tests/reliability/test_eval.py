"""Reliability: what eval reports and reads. An INT8 ONNX file given with --onnx is labelled int8; a folder dataset's
road colour is set on the command line (the README's example), and a wrong one is a one-line error, not a NaN."""

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from conftest import KITTI, make_kitti, write_png
from roadseg.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def onnx_files(tiny_ckpt, tmp_path_factory):
    """The tiny model as fp32, INT8 (QDQ, calibrated on 4 real frames) and fp16 ONNX files."""
    from roadseg.models.checkpoint import model_from_checkpoint
    from roadseg.optimize.quantize import quantize_int8
    from roadseg.optimize.runtime import export_onnx, to_fp16

    d = tmp_path_factory.mktemp("onnx")
    model, cfg = model_from_checkpoint(tiny_ckpt)
    fp32 = export_onnx(model, d / "m.onnx", meta={"scale": cfg.data.scale})
    frames = [str(p) for p in sorted((KITTI / "training" / "image_2").glob("um_*.jpg"))[:4]]
    return {"fp32": fp32, "int8": quantize_int8(fp32, d / "m_int8.onnx", frames, count=4),
            "fp16": to_fp16(fp32, d / "m_fp16.onnx")}


@pytest.mark.parametrize("precision", ["int8", "fp32", "fp16"])
def test_onnx_file_is_labelled_with_what_it_computes_in(precision, onnx_files, tiny_ckpt, tmp_path, capsys):
    root = make_kitti(tmp_path / "kitti")
    assert main(["eval", "--model", str(tiny_ckpt), "--backend", "onnxruntime", "--onnx", str(onnx_files[precision]),
                 "--data", str(root), "--split", "all", "--out", str(tmp_path / "e"), "--no-report"]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["backend"] == "onnxruntime" and metrics["precision"] == precision


def test_onnx_file_of_another_precision_than_asked_is_refused(onnx_files, tiny_ckpt, tmp_path, capsys):
    frame = KITTI / "training" / "image_2" / "um_000000.jpg"
    assert main(["predict", str(frame), "--model", str(tiny_ckpt), "--backend", "onnxruntime", "--precision", "fp32",
                 "--onnx", str(onnx_files["int8"]), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {onnx_files['int8']}: is an int8 model, not fp32 (leave precision to the file, or ask for int8)"]
    assert not (tmp_path / "o").exists()


def magenta_folder(root: Path, n=3) -> Path:
    """DIR/images + DIR/masks, road painted 255,0,255 (the README's example colour), the rest black."""
    rng = np.random.default_rng(0)
    for i in range(n):
        write_png(root / "images" / f"f{i}.png", rng.integers(0, 255, (40, 96, 3), dtype=np.uint8))
        mask = np.zeros((40, 96, 3), np.uint8)
        mask[20:] = (255, 0, 255)
        write_png(root / "masks" / f"f{i}.png", mask)
    return root


def readme_folder_eval() -> list[str]:
    """The folder-dataset eval example of the docs (docs/configuration-and-data.md, linked from the README)."""
    text = (README.parent / "docs" / "configuration-and-data.md").read_text()
    line = next(x.strip() for x in text.splitlines() if x.strip().startswith("roadseg eval --dataset folder"))
    return shlex.split(line)[1:]


def test_readme_folder_example_evaluates_with_its_road_colour(tiny_ckpt, tmp_path, capsys):
    root = magenta_folder(tmp_path / "mine")
    argv = readme_folder_eval()
    argv[argv.index("--data") + 1] = str(root)
    assert "--road-value" in argv
    run = ["--model", str(tiny_ckpt), "--backend", "torch", "--out", str(tmp_path / "e"), "--no-report"]
    assert main(argv + run) == 0
    res = json.loads((tmp_path / "e" / "metrics.json").read_text())["results"]
    assert res["all"]["MaxF"] is not None and 0 < res["all"]["MaxF"] <= 1
    assert res["all"]["REC"] > 0  # road pixels were counted as road
    # without the colour, the checkpoint's own road value (1) matches nothing: a one-line error, not a NaN table
    i = argv.index("--road-value")
    assert main(argv[:i] + argv[i + 2 :] + run[:-3] + ["--out", str(tmp_path / "e2"), "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no pixel of the 3 frames was evaluated" in err[0] and "--road-value" in err[0]
    assert not (tmp_path / "e2").exists()


def test_ignore_value_leaves_pixels_out_of_the_scores(tiny_ckpt, tmp_path):
    root = magenta_folder(tmp_path / "mine")
    for p in (root / "masks").iterdir():  # the top rows marked "unknown" (grey): outside the evaluated area
        m = np.array(__import__("PIL.Image", fromlist=["Image"]).open(p))
        m[:10] = (128, 128, 128)
        write_png(p, m)
    base = ["eval", "--dataset", "folder", "--data", str(root), "--split", "all", "--road-value", "255,0,255",
            "--model", str(tiny_ckpt), "--backend", "torch", "--no-report"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--ignore-value", "128,128,128", "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text())["counts"] for d in ("a", "b"))
    masks = [np.array(__import__("PIL.Image", fromlist=["Image"]).open(p)) for p in (root / "masks").iterdir()]
    grey = sum(int((m[:10] == 128).all(-1).sum()) for m in masks)  # the marked rows: non-road in a, ignored in b
    pos = lambda c: sum(v[512] for v in c.values())  # noqa: E731
    neg = lambda c: sum(v[513] for v in c.values())  # noqa: E731
    assert grey > 0 and pos(a) == pos(b) and neg(a) - neg(b) == grey


@pytest.mark.parametrize("args,msg", [
    (["--dataset", "folder", "--road-value", "red"], "--road-value: 'red' is not an id (e.g. 1) or a colour"),
    (["--dataset", "folder", "--road-value", "1,2"], "--road-value: '1,2' is not an id (e.g. 1) or a colour"),
    (["--road-value", "255,0,255"], "road_value: applies to folder datasets (dataset folder), not to kitti"),
    (["--dataset", "folder", "--road-value", "300,0,0"], "--road-value: '300,0,0': colour components are 0-255"),
])
def test_bad_road_value_is_one_line_before_any_work(args, msg, tiny_ckpt, tmp_path, monkeypatch, capsys):
    import roadseg.cli.commands as commands

    monkeypatch.setattr(commands, "make_predictor", lambda *a, **k: pytest.fail("the model was loaded"))
    root = magenta_folder(tmp_path / "mine")
    assert main(["eval", "--data", str(root), "--model", str(tiny_ckpt), "--out", str(tmp_path / "e"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err


def test_seen_in_training_only_for_the_training_data_itself(tmp_path):
    """The 'trained on these frames' note: the model's own dataset and folder (by any path), for the splits it
    was trained on; never a user's folder."""
    from roadseg.config import from_dict
    from roadseg.data.datasets import seen_in_training, validation_config

    root = tmp_path / "kitti"
    root.mkdir()
    (tmp_path / "link").symlink_to(root)
    held_out = from_dict({"data": {"root": str(root), "val_last_n": 10}}).data
    all_frames = from_dict({"data": {"root": str(root), "val_last_n": 0}}).data
    assert seen_in_training(held_out, validation_config(held_out)[0], "val") is None
    assert "validation frames included" in seen_in_training(all_frames, validation_config(all_frames)[0], "val")
    for split in ("train", "all"):  # trained on, whichever val_last_n
        assert "trained on these frames" in seen_in_training(held_out, held_out, split)
    other = from_dict({"data": {"root": str(tmp_path / "link"), "val_last_n": 0}}).data
    assert seen_in_training(all_frames, other, "all")  # the same folder through a link
    mine = from_dict({"data": {"dataset": "folder", "root": str(tmp_path / "mine")}}).data
    assert seen_in_training(all_frames, mine, "val") is None and seen_in_training(all_frames, mine, "all") is None


def test_seen_in_training_covers_the_extra_datasets(tmp_path):
    """Frames that joined training through data.extra are flagged too, for the splits named there."""
    from roadseg.config import from_dict
    from roadseg.data.datasets import seen_in_training

    cam = tmp_path / "camvid"
    cam.mkdir()
    trained = from_dict({"data": {"root": str(tmp_path / "kitti"), "crop": [64, 64],
                                  "extra": [{"dataset": "camvid", "root": str(cam), "splits": ["train"]}]}}).data
    camvid = from_dict({"data": {"dataset": "camvid", "root": str(cam)}}).data
    assert "data.extra[0], split train" in seen_in_training(trained, camvid, "train")
    assert seen_in_training(trained, camvid, "val") is None  # CamVid's val frames were not used
    trained.extra[0]["splits"] = ["train", "val"]
    assert "data.extra[0], split val" in seen_in_training(trained, camvid, "val")
    # a KITTI extra gives every frame; KITTI frames are KITTI's wherever the copy lives
    cam_main = from_dict({"data": {"dataset": "camvid", "root": str(cam), "crop": [64, 64],
                                   "extra": [{"dataset": "kitti", "root": str(tmp_path / "kitti")}]}}).data
    other_copy = from_dict({"data": {"root": str(tmp_path / "elsewhere")}}).data
    assert "data.extra[0])" in seen_in_training(cam_main, other_copy, "val")
    mine = from_dict({"data": {"dataset": "folder", "root": str(tmp_path / "mine")}}).data
    assert seen_in_training(cam_main, mine, "all") is None


def test_report_redraws_the_gallery_from_the_frames_eval_recorded(tiny_ckpt, tmp_path, capsys):
    """eval keeps its data config in metrics.json: `report --model` finds the same folder and road colour without
    --data; --road-value there overrides, and data options without --model are refused."""
    root = magenta_folder(tmp_path / "mine")
    out = tmp_path / "e"
    assert main(["eval", "--dataset", "folder", "--data", str(root), "--split", "all", "--road-value", "255,0,255",
                 "--model", str(tiny_ckpt), "--backend", "torch", "--out", str(out), "--no-report"]) == 0
    rec = json.loads((out / "metrics.json").read_text())["data"]
    assert rec["dataset"] == "folder" and rec["root"] == str(root) and rec["road_value"] == "255,0,255"
    assert main(["report", str(out), "--model", str(tiny_ckpt)]) == 0
    items = json.loads((out / "gallery" / "gallery.json").read_text())["items"]
    assert items and {i["name"] for i in items} <= {p.stem for p in (root / "images").iterdir()}
    drawn = {i["file"]: (out / i["file"]).read_bytes() for i in items}
    # another road colour (matching nothing): the same frames, error maps without ground-truth road
    assert main(["report", str(out), "--model", str(tiny_ckpt), "--road-value", "1,2,3"]) == 0
    assert all((out / f).read_bytes() != b for f, b in drawn.items())
    capsys.readouterr()
    assert main(["report", str(out), "--road-value", "255,0,255"]) == 2
    assert "give --model too" in capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    m["data"]["val_last_n"] = "ten"  # a damaged record: one line naming the file, not a crash
    (out / "metrics.json").write_text(json.dumps(m))
    assert main(["report", str(out), "--model", str(tiny_ckpt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics.json: its 'data' record is not a data config" in err[0]


def test_unreadable_frame_stops_eval_before_it_writes_or_is_left_out_with_skip_bad(tiny_ckpt, tmp_path, capsys):
    """A truncated frame stops eval before the first probability map is written (one line naming it); with
    --skip-bad it and a mask of the wrong size are left out, listed in metrics.json and the report, and the
    counts are exactly those of the readable frames alone."""
    from PIL import Image

    root = magenta_folder(tmp_path / "mine", n=4)
    good = magenta_folder(tmp_path / "good", n=4)
    f1 = root / "images" / "f1.png"
    f1.write_bytes(f1.read_bytes()[: f1.stat().st_size // 2])  # header intact, pixels cut off
    base = ["eval", "--dataset", "folder", "--split", "all", "--road-value", "255,0,255", "--model", str(tiny_ckpt),
            "--backend", "torch"]
    assert main(base + ["--data", str(root), "--save-probs", str(tmp_path / "p"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(f1) in err[0] and "truncated" in err[0] and "--skip-bad" in err[0], err
    assert not (tmp_path / "p").exists() and not (tmp_path / "e").exists()

    Image.fromarray(np.zeros((20, 96, 3), np.uint8)).save(root / "masks" / "f3.png")  # wrong size
    assert main(base + ["--data", str(root), "--save-probs", str(tmp_path / "p"), "--out", str(tmp_path / "e"),
                        "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped: ") == 2 and "2 frames, 2 unreadable left out" in out
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["frames"] == 2 and [s["frame"] for s in m["skipped"]] == ["f1", "f3"]
    assert str(f1) in m["skipped"][0]["error"] and "mask is 96x20" in m["skipped"][1]["error"]
    assert sorted(m["per_frame"]) == ["f0", "f2"]
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["f0_prob.png", "f2_prob.png"]  # not KITTI names
    assert "unreadable frames left out" in (tmp_path / "e" / "report.html").read_text()
    for f in ("f1", "f3"):  # the same frames without the bad ones: the same pooled counts
        (good / "images" / f"{f}.png").unlink()
        (good / "masks" / f"{f}.png").unlink()
    assert main(base + ["--data", str(good), "--out", str(tmp_path / "g"), "--no-report"]) == 0
    assert json.loads((tmp_path / "g" / "metrics.json").read_text())["counts"] == m["counts"]
    assert json.loads((tmp_path / "g" / "metrics.json").read_text())["skipped"] == []

    for f in ("f0", "f2"):  # nothing readable left: one line, nothing written
        (root / "images" / f"{f}.png").write_bytes(b"not an image")
    capsys.readouterr()
    assert main(base + ["--data", str(root), "--out", str(tmp_path / "e3"), "--skip-bad"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none of the 4 frames of split 'all' is readable" in err[0], err
    assert not (tmp_path / "e3").exists()


def test_frame_that_breaks_after_the_check_or_ctrl_c_leaves_no_probability_maps(tiny_ckpt, tmp_path, capsys, monkeypatch):
    """A frame that becomes unreadable between eval's check and its turn stops eval with one line naming it, and the
    probability maps written before it are removed with the folder eval made: no half-written set."""
    import roadseg.engine.evaluate as evaluate_mod

    root = magenta_folder(tmp_path / "mine", n=4)
    f2 = root / "images" / "f2.png"
    real_save = evaluate_mod.save_png_atomic

    def save_then_break(prob, path):  # after the first map is written, a later frame is cut short on disk
        real_save(prob, path)
        f2.write_bytes(f2.read_bytes()[: f2.stat().st_size // 2])

    monkeypatch.setattr(evaluate_mod, "save_png_atomic", save_then_break)
    probs = tmp_path / "p"
    assert main(["eval", "--dataset", "folder", "--split", "all", "--road-value", "255,0,255", "--model",
                 str(tiny_ckpt), "--backend", "torch", "--data", str(root), "--save-probs", str(probs),
                 "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(f2) in err[0] and "truncated" in err[0], err
    assert not probs.exists() and not (tmp_path / "e").exists()
    probs.mkdir()  # a folder the user made stays, emptied of this run's maps only
    (probs / "mine.txt").write_text("kept")
    f2.write_bytes((tmp_path / "mine" / "images" / "f3.png").read_bytes())  # readable again, breaks again
    assert main(["eval", "--dataset", "folder", "--split", "all", "--road-value", "255,0,255", "--model",
                 str(tiny_ckpt), "--backend", "torch", "--data", str(root), "--save-probs", str(probs),
                 "--out", str(tmp_path / "e")]) == 2
    assert sorted(p.name for p in probs.iterdir()) == ["mine.txt"]

    def save_then_interrupt(prob, path):  # Ctrl-C after the first map
        real_save(prob, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_mod, "save_png_atomic", save_then_interrupt)
    f2.write_bytes((tmp_path / "mine" / "images" / "f3.png").read_bytes())
    assert main(["eval", "--dataset", "folder", "--split", "all", "--road-value", "255,0,255", "--model",
                 str(tiny_ckpt), "--backend", "torch", "--data", str(root), "--save-probs", str(tmp_path / "p2"),
                 "--out", str(tmp_path / "e")]) == 130
    assert not (tmp_path / "p2").exists() and not (tmp_path / "e").exists()


def test_eval_records_the_far_zoom_it_ran_with(tiny_ckpt, tmp_path, capsys):
    """--far-zoom (2 without a factor) is in metrics.json beside the other settings and changes the probabilities;
    a factor out of (1, 4], or a path where the factor goes, is a one-line error naming the flag, on eval and on
    benchmark, and writes nothing."""
    root = magenta_folder(tmp_path / "mine")
    args = ["eval", "--dataset", "folder", "--data", str(root), "--split", "all", "--road-value", "255,0,255",
            "--model", str(tiny_ckpt), "--backend", "torch", "--no-report", "--save-probs"]
    assert main([*args, str(tmp_path / "p0"), "--out", str(tmp_path / "e0")]) == 0
    assert main([*args, str(tmp_path / "p2"), "--out", str(tmp_path / "e2"), "--far-zoom"]) == 0
    m0, m2 = (json.loads((tmp_path / e / "metrics.json").read_text()) for e in ("e0", "e2"))
    assert (m0["far_zoom"], m2["far_zoom"]) == (0.0, 2.0)
    assert any((tmp_path / "p0" / f.name).read_bytes() != f.read_bytes() for f in (tmp_path / "p2").iterdir())
    capsys.readouterr()
    for bad, why in (("9", "got 9"), ("1", "got 1"), (str(root / "images" / "f0.png"), "inputs go before --far-zoom")):
        assert main([*args, str(tmp_path / "p9"), "--out", str(tmp_path / "e9"), "--far-zoom", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert "argument --far-zoom: expected a factor in (1, 4]" in err[-1] and why in err[-1], err
        assert not (tmp_path / "e9").exists() and not (tmp_path / "p9").exists()
    assert main(["benchmark", "--model", str(tiny_ckpt), "--far-zoom", "-1", "--out", str(tmp_path / "b")]) == 2
    assert "argument --far-zoom: expected a factor in (1, 4], got -1" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
