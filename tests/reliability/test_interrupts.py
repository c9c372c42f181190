"""Reliability: runs killed with SIGKILL mid-epoch and mid-checkpoint-write; SIGTERM and SIGINT during video, predict
and training (cleaned up: no temporary files, one line, exit 143 / 130); non-finite losses."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import KITTI
from roadseg.engine import train as train_mod
from roadseg.models.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_cmd(kitti_root, tmp_path, epochs, extra=()):
    names = [f"um_{i:06d}" for i in range(0, 40, 4)]
    (tmp_path / "t.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "v.txt").write_text("uu_000020\n")
    (tmp_path / "c.yaml").write_text("{}\n")
    return [sys.executable, "-m", "roadseg", "train", "--config", str(tmp_path / "c.yaml"), f"data.root={kitti_root}", f"data.train_list={tmp_path / 't.txt'}",
            f"data.val_list={tmp_path / 'v.txt'}", "data.scale=0.25", "data.crop=[64, 160]", "model.fc_width=16",
            "model.weights=none", f"train.epochs={epochs}", "train.batch_size=2", "train.precision=fp32",
            "train.threads=1", f"train.out_dir={tmp_path}", "train.name=run", *extra]


def test_sigkill_mid_epoch_then_resume(kitti_root, tmp_path):
    proc = subprocess.Popen(train_cmd(kitti_root, tmp_path, 8), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = tmp_path / "run" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # inside epoch 2 (or writing its checkpoint)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = load_checkpoint(last)["epoch"]  # whatever was on disk is a complete checkpoint
    assert 1 <= done < 8
    r = subprocess.run(train_cmd(kitti_root, tmp_path, 8) + ["--resume", str(last)], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    ck = load_checkpoint(last)
    assert ck["epoch"] == 8 and ck["step"] == 8 * 5
    assert [h["epoch"] for h in ck["history"]] == list(range(1, 9))


def test_sigkill_mid_checkpoint_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "last.pt"
    script = textwrap.dedent(f"""
        import os, sys, time, torch
        from roadseg.models import checkpoint as c
        c.atomic_save({{"v": torch.ones(3)}}, {str(target)!r})
        real = os.replace
        def slow(a, b):
            print("written", flush=True)
            time.sleep(60)
            real(a, b)
        os.replace = slow
        c.atomic_save({{"v": torch.zeros(10**6)}}, {str(target)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.equal(torch.load(target, weights_only=True)["v"], torch.ones(3))
    assert [p for p in tmp_path.iterdir() if p.name != "last.pt"]  # only a temp file was left behind


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_stops_with_message(kitti_root, tmp_path, monkeypatch, bad):
    from roadseg.config import load_config
    from roadseg.engine.train import fit

    cmd = train_cmd(kitti_root, tmp_path, 1)
    cfg = load_config(None, cmd[cmd.index("train") + 3 :])
    monkeypatch.setattr(train_mod, "loss_fn", lambda logits, y, w=None: (logits.abs().mean() + 1) * bad)
    with pytest.raises(train_mod.TrainingError, match=f"loss became {'nan' if bad != bad else 'inf'} at epoch 1, step 1"):
        fit(cfg)
    assert not (tmp_path / "run" / "last.pt").exists()


# ------------------------------------------------------------------ SIGTERM cleans up as SIGINT does


def _wait_for(pred, proc, timeout=120):
    deadline = time.time() + timeout
    while not pred() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert pred(), f"never reached the point to interrupt at (exit {proc.poll()})"


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _ctrl_c_default():
    """A shell's background job (`cmd &`, nohup) starts with SIGINT ignored, and the child inherits that; the command
    rightly keeps an ignored SIGINT ignored, so the test gives the child the default a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig,rc,line", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                         (signal.SIGINT, 130, "interrupted")])
def test_signal_during_video_leaves_no_partial_file(tiny_ckpt, tmp_path, sig, rc, line):
    from conftest import DATA

    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "roadseg", "video", str(DATA / "video" / "solidWhiteRight.mp4"),
                             "--out", str(out / "road.mp4"), "--model", str(tiny_ckpt), "--backend", "torch"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_default)  # as from a terminal, also when the tests run in the background
    _wait_for(lambda: _hidden(out), proc)  # the temporary .road.mp4.*.tmp is being written
    time.sleep(0.5)
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == rc and err.strip().splitlines() == [line], err[-2000:]
    assert list(out.iterdir()) == []  # no hidden temporary file, no half-written video


def test_sigterm_during_predict_keeps_finished_frames_and_no_temporary_file(tiny_ckpt, tmp_path):
    import shutil

    src = tmp_path / "in"
    src.mkdir()
    frames = sorted((KITTI / "training" / "image_2").glob("um_*.jpg"))[:40]
    for f in frames:
        shutil.copy(f, src / f.name)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "roadseg", "predict", str(src), "--out", str(out), "--model",
                             str(tiny_ckpt), "--backend", "torch", "--batch-size", "1"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()), proc)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143 and err.strip().splitlines() == ["terminated (SIGTERM)"], err[-2000:]
    assert _hidden(out) == []
    names = sorted(p.name for p in out.iterdir())
    assert 0 < len(names) < 2 * len(frames)  # stopped part way, every file that is there complete
    from roadseg.data import read_image

    for n in names:
        read_image(out / n)


def test_sigterm_during_training_keeps_the_last_checkpoint(kitti_root, tmp_path):
    proc = subprocess.Popen(train_cmd(kitti_root, tmp_path, 8), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    last = tmp_path / "run" / "last.pt"
    _wait_for(last.exists, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143 and err.strip().splitlines()[-1] == "terminated (SIGTERM)", err[-2000:]
    assert "Traceback" not in err
    assert _hidden(tmp_path / "run") == []
    assert 1 <= load_checkpoint(last)["epoch"] < 8
