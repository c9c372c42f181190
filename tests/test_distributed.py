"""torchrun with 2 local CPU processes (gloo): same weights as one process, exact eval counts, fast failure."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from roadseg.models.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "ROADSEG_DIST_TIMEOUT": "60"}


def torchrun(n, *args, env=None, timeout=240):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n), "--standalone",
           "-m", "roadseg", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**ENV, **(env or {})})


def train_args(kitti_root, tmp_path, name, extra=()):
    (tmp_path / "t.txt").write_text("um_000000\num_000010\numm_000005\nuu_000007\n")
    (tmp_path / "v.txt").write_text("uu_000020\num_000030\n")
    (tmp_path / "c.yaml").write_text("{}\n")
    return ["train", "--config", str(tmp_path / "c.yaml"), f"data.root={kitti_root}", f"data.train_list={tmp_path / 't.txt'}", f"data.val_list={tmp_path / 'v.txt'}",
            "data.scale=0.125", "data.crop=[32, 96]", "data.scale_jitter=[0.9, 1.2]", "model.fc_width=16",
            "model.dropout=0.0", "model.weights=none", "train.epochs=2", "train.batch_size=2", "train.lr=1e-2",
            "train.optimizer=sgd",
            "train.precision=fp32", "train.threads=1", f"train.out_dir={tmp_path}", f"train.name={name}", *extra]


def test_ddp_two_processes_match_one_process(kitti_root, tmp_path):
    one = torchrun(1, *train_args(kitti_root, tmp_path, "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    two = torchrun(2, *train_args(kitti_root, tmp_path, "two"))
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "two" / "last.pt")
    assert a["step"] == b["step"] == 4 and b["world"] == 2
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4), k
    assert a["metrics"]["val_MaxF"] == pytest.approx(b["metrics"]["val_MaxF"], abs=1e-6)
    # only rank 0 wrote: one CSV with one row per epoch
    assert len((tmp_path / "two" / "metrics.csv").read_text().splitlines()) == 3
    # resume across a change of world size (2 -> 1) continues from the saved step
    more = torchrun(1, *train_args(kitti_root, tmp_path, "two", ["train.epochs=3"]),
                    "--resume", str(tmp_path / "two" / "last.pt"))
    assert more.returncode == 0, more.stderr[-2000:]
    assert load_checkpoint(tmp_path / "two" / "last.pt")["step"] == 6


def test_ddp_eval_counts_equal_single_process(tiny_ckpt, kitti_root, tmp_path):
    base = ["eval", "--checkpoint", str(tiny_ckpt), "--data", str(kitti_root), "--split", "val", "--no-report"]
    single = torchrun(1, *base, "--out", str(tmp_path / "one"))
    multi = torchrun(2, *base, "--out", str(tmp_path / "two"))
    assert single.returncode == 0 and multi.returncode == 0, multi.stderr[-2000:]
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert a["counts"] == b["counts"] and a["results"] == b["results"]
    assert sorted(a["per_frame"]) == sorted(b["per_frame"]) and len(a["per_frame"]) == 6
    # the bird's-eye view and its distance bands are pooled across ranks too
    assert a["bev"]["counts"] == b["bev"]["counts"] and a["bev"]["by_distance"] == b["bev"]["by_distance"]
    assert len(a["bev"]["by_distance"]) == 4


def test_ddp_sharded_predict_writes_every_frame_once(tiny_ckpt, kitti_root, tmp_path):
    frames = kitti_root / "testing" / "image_2"
    r = torchrun(2, "predict", str(frames), "--checkpoint", str(tiny_ckpt), "--backend", "torch",
                 "--precision", "fp32", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list(tmp_path.glob("*_overlay.png"))) == 30 and "30 frames" in r.stdout and "2 processes" in r.stdout


def test_a_failing_rank_stops_the_whole_job_quickly(kitti_root, tmp_path):
    t = time.time()
    r = torchrun(2, *train_args(kitti_root, tmp_path, "fail"), env={"ROADSEG_FAIL_RANK": "1"}, timeout=120)
    assert r.returncode != 0
    assert "injected failure on rank 1" in r.stderr
    assert time.time() - t < 60


def test_ddp_with_extra_frames_matches_one_process(kitti_root, tmp_path):
    """data.extra under DDP: the sampler shards the mixed set like any dataset, so two ranks train as one."""
    import numpy as np

    from conftest import write_png

    rng = np.random.default_rng(0)
    for i in range(4):  # a folder extra: frames with road (id 1) in their lower half
        write_png(tmp_path / "mine" / "images" / f"x{i}.png", rng.integers(0, 255, (40, 120, 3), dtype=np.uint8))
        write_png(tmp_path / "mine" / "masks" / f"x{i}.png", np.repeat([0, 1], 20)[:, None].repeat(120, 1).astype(np.uint8))
    extra = [f"data.extra=[{{dataset: folder, root: {tmp_path / 'mine'}, scale: 0.5}}]", "train.epochs=1"]
    one = torchrun(1, *train_args(kitti_root, tmp_path, "one", extra))
    assert one.returncode == 0, one.stderr[-2000:]
    two = torchrun(2, *train_args(kitti_root, tmp_path, "two", extra))
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "two" / "last.pt")
    assert a["step"] == b["step"] == 4  # (4 KITTI + 4 extra frames) / batch 2
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4), k
