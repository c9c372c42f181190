"""Reliability: first-run messages point somewhere real. Installed from a wheel, away from any checkout, the demo
without data, eval of a model whose recorded dataset is on another machine, and report on a training run each stop
with one line that says what to give or which command to run, and that command works."""

import shlex

import pytest

from conftest import make_kitti
from roadseg.cli import main

KITTI_URL = "https://www.cvlibs.net/datasets/kitti/eval_road.php"


def one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def test_demo_without_data_says_what_it_reads_and_where_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ../shared/data here, as for a wheel install
    monkeypatch.delenv("ROADSEG_DATA", raising=False)
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    line = one_line(capsys)
    assert line.startswith("error: no demo data: the demo reads kitti_road/ (KITTI's data_road.zip")
    assert KITTI_URL in line and "video/solidWhiteRight.mp4" in line and "pass --data DIR (or set ROADSEG_DATA)" in line
    assert "shared" not in line and not (tmp_path / "d").exists()

    monkeypatch.setenv("ROADSEG_DATA", str(tmp_path / "nope"))
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    assert one_line(capsys).startswith(f"error: {tmp_path / 'nope'} (ROADSEG_DATA): no demo data here")

    make_kitti(tmp_path / "mine" / "kitti_road")  # the frames but no clip: only the clip is asked for
    assert main(["demo", "--data", str(tmp_path / "mine"), "--out", str(tmp_path / "d")]) == 2
    line = one_line(capsys)
    assert line.startswith(f"error: {tmp_path / 'mine'}: no demo data here (the demo reads video/solidWhiteRight.mp4")
    assert "kitti_road/" not in line and line.endswith("pass --data with the folder holding them")
    assert not (tmp_path / "d").exists()


def test_eval_of_a_model_whose_dataset_is_elsewhere_asks_for_data(tiny_ckpt, tmp_path, capsys):
    from roadseg.models.checkpoint import atomic_save, load_checkpoint

    ck = load_checkpoint(tiny_ckpt)
    ck["config"]["data"]["root"] = str(tmp_path / "gone" / "kitti_road")  # as on the machine it was trained on
    atomic_save(ck, tmp_path / "moved.pt")
    base = ["eval", "--model", str(tmp_path / "moved.pt"), "--backend", "torch", "--no-report"]
    assert main(base + ["--out", str(tmp_path / "e")]) == 2
    assert one_line(capsys) == (f"error: {tmp_path / 'gone' / 'kitti_road'}: not found: the dataset folder this "
                                f"model's checkpoint records (where it was trained); give your copy with --data "
                                f"(KITTI road: data_road.zip from {KITTI_URL}, unpacked)")
    assert not (tmp_path / "e").exists()
    root = make_kitti(tmp_path / "copy", names=("um_000000", "um_000001", "uu_000000", "uu_000001"))
    assert main(base + ["--data", str(root), "--out", str(tmp_path / "e")]) == 0  # what the message says works
    assert (tmp_path / "e" / "metrics.json").is_file()


@pytest.mark.parametrize("names", [("last.pt",), ("best.pt", "last.pt")])
def test_report_on_a_training_run_names_the_command_that_scores_it(names, tiny_ckpt, tmp_path, capsys, monkeypatch):
    from roadseg.models.checkpoint import atomic_save, load_checkpoint

    run = tmp_path / "my run"  # a space: the command is quoted for the shell
    run.mkdir()
    for n in names:  # saved there as training saves it (its data paths are kept relative to the file)
        atomic_save(load_checkpoint(tiny_ckpt), run / n)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "my run"]) == 2
    line = one_line(capsys)
    ckpt = "best.pt" if "best.pt" in names else "last.pt"
    cmd = f"roadseg eval --model 'my run/{ckpt}' --out 'my run'"
    assert line == (f"error: my run: a training run, with no metrics.json yet; `{cmd}` scores it and writes its "
                    f"report.html (with the training curves)")
    if len(names) == 2:  # run what it says: then report works on that folder
        assert main(shlex.split(cmd)[1:] + ["--backend", "torch"]) == 0
        assert (run / "metrics.json").is_file() and (run / "report.html").is_file()
        assert main(["report", "my run"]) == 0


def test_report_on_a_folder_that_is_no_run_says_how_to_make_metrics(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert one_line(capsys) == (f"error: {tmp_path}: no metrics.json to report on (write one with roadseg eval --out "
                                f"{tmp_path})")
