"""torchrun beyond one agent: two agents on this machine as two nodes (c10d rendezvous), and elastic recovery from a
worker killed mid-run (--max-restarts), both on CPU (gloo) with the small training config of test_distributed."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from roadseg.models.checkpoint import load_checkpoint
from test_distributed import ENV, torchrun, train_args

RUN = [sys.executable, "-m", "torch.distributed.run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent(tmp_path, name, launch, args, env=None):
    """A torchrun agent in the background, its stdout/stderr in files (two agents never block on a full pipe)."""
    out, err = (open(tmp_path / f"{name}.{k}", "w") for k in ("out", "err"))
    return subprocess.Popen([*RUN, *launch, "-m", "roadseg", *args], stdout=out, stderr=err, text=True,
                            env={**ENV, **(env or {})})


def two_nodes(tmp_path, *args, timeout=240):
    """Two agents as two nodes of one process each, meeting at a c10d rendezvous on 127.0.0.1: [(rc, stdout, stderr)]."""
    port = free_port()
    launch = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
              "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"nodes{port}"]
    agents = [agent(tmp_path, f"node{i}", launch, args) for i in range(2)]
    try:
        codes = [a.wait(timeout=timeout) for a in agents]
    finally:
        for a in agents:
            a.kill() if a.poll() is None else None
    return [(c, *((tmp_path / f"node{i}.{k}").read_text() for k in ("out", "err"))) for i, c in enumerate(codes)]


def test_two_nodes_train_like_one_process(kitti_root, tmp_path):
    one = torchrun(1, *train_args(kitti_root, tmp_path, "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    nodes = two_nodes(tmp_path, *train_args(kitti_root, tmp_path, "nodes"))
    assert [rc for rc, _, _ in nodes] == [0, 0], nodes[0][2][-2000:] + nodes[1][2][-2000:]
    assert all("world 2" in err for _, _, err in nodes)
    a, b = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "nodes" / "last.pt")
    assert a["step"] == b["step"] == 4 and b["world"] == 2
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4), k
    assert len((tmp_path / "nodes" / "metrics.csv").read_text().splitlines()) == 3  # one writer


def test_two_nodes_eval_gives_one_process_counts(tiny_ckpt, kitti_root, tmp_path):
    base = ["eval", "--checkpoint", str(tiny_ckpt), "--data", str(kitti_root), "--split", "val", "--no-report"]
    single = torchrun(1, *base, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr[-2000:]
    nodes = two_nodes(tmp_path, *base, "--out", str(tmp_path / "nodes"))
    assert [rc for rc, _, _ in nodes] == [0, 0], nodes[0][2][-2000:] + nodes[1][2][-2000:]
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "nodes" / "metrics.json").read_text())
    assert a["counts"] == b["counts"] and a["results"] == b["results"]
    assert sorted(a["per_frame"]) == sorted(b["per_frame"]) and len(a["per_frame"]) == 6


def workers(agent_pid: int) -> dict[int, int]:
    """{rank: pid} of an agent's worker processes (its children, RANK from their environment)."""
    found = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1]) != agent_pid:
                continue
            env = dict(v.split("=", 1) for v in Path(f"/proc/{d}/environ").read_text().split("\0") if "=" in v)
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(d)
    return found


def test_a_killed_worker_restarts_the_group_and_resumes_to_the_same_weights(kitti_root, tmp_path):
    epochs = ["train.epochs=4"]
    ref = torchrun(2, *train_args(kitti_root, tmp_path, "ref", epochs))
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "killed"
    a = agent(tmp_path, "agent", ["--standalone", "--nproc-per-node", "2", "--max-restarts", "2"],
              train_args(kitti_root, tmp_path, "killed", epochs), env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
    try:
        deadline = time.time() + 180
        while (tmp_path / "agent.err").read_text().count("epoch 1:") < 2:  # both ranks past epoch 1 (saved)
            assert a.poll() is None and time.time() < deadline, (tmp_path / "agent.err").read_text()[-2000:]
            time.sleep(0.02)
        os.kill(workers(a.pid)[1], signal.SIGKILL)
        assert a.wait(timeout=240) == 0, (tmp_path / "agent.err").read_text()[-3000:]
    finally:
        a.kill() if a.poll() is None else None
    log = (tmp_path / "agent.err").read_text()
    resumed = re.search(r"torchrun restart 1 \(at most 2\): resuming from \S+last\.pt, after epoch (\d)", log)
    assert resumed and 1 <= int(resumed[1]) < 4, log[-3000:]
    assert re.search(r"previous attempt: rank 1 \(\S+, pid \d+\) ended without a word", log), log[-3000:]
    assert "--resume" not in log
    want, got = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(run / "last.pt")
    assert got["step"] == want["step"] == 8 and got["epoch"] == 4
    for k in want["model"]:
        assert torch.equal(want["model"][k], got["model"][k]), k
    assert [h["loss"] for h in got["history"]] == [h["loss"] for h in want["history"]]
    assert len((run / "metrics.csv").read_text().splitlines()) == 5
    records = [json.loads((run / ".torchrun" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["status"] for r in records] == ["finished", "finished"] and records[0]["restart"] == 1
