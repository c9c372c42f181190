"""Reliability: runs killed with SIGKILL mid-epoch and mid-checkpoint-write, non-finite losses."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

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
    monkeypatch.setattr(train_mod, "loss_fn", lambda logits, y: (logits.abs().mean() + 1) * bad)
    with pytest.raises(train_mod.TrainingError, match=f"loss became {'nan' if bad != bad else 'inf'} at epoch 1, step 1"):
        fit(cfg)
    assert not (tmp_path / "run" / "last.pt").exists()
