"""Training throughput with 1 vs N torchrun processes on this machine (CPU: gloo; GPU: NCCL).

Same global batch and recipe as configs/kitti-fcn8s-vgg16-stage1.yaml, a fixed number of optimizer steps, no validation.
On a 2-core CPU, 1 process uses 2 threads and 2 processes use 1 thread each, so this measures the cost of
DDP's gradient all-reduce rather than new hardware.

    python benchmarks/ddp_throughput.py [--steps 8] [--procs 1 2]

Writes benchmarks/results/ddp.json and ddp.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from roadseg.device import cpu_cores

ROOT = Path(__file__).resolve().parents[1]


def run(n: int, steps: int, data: str, out: Path) -> dict:
    threads = max(1, (cpu_cores() or 2) // n)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), "-m", "roadseg",
           "train", "--config", str(ROOT / "configs" / "kitti-fcn8s-vgg16-stage1.yaml"), f"data.root={data}", "data.val_last_n=0",
           f"train.max_steps={steps}", "train.epochs=1", f"train.threads={threads}", f"train.out_dir={out}",
           f"train.name=p{n}", "train.warmup_epochs=0"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if r.returncode:
        raise SystemExit(f"torchrun with {n} processes failed:\n{r.stderr[-2000:]}")
    row = list(csv.DictReader(open(out / f"p{n}" / "metrics.csv")))[-1]
    return {"processes": n, "threads_per_process": threads, "steps": steps, "images_per_s": float(row["images_per_s"]),
            "epoch_s": float(row["epoch_s"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kitti_road"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(n, a.steps, a.data, Path(tmp)) for n in a.procs]
    base = rows[0]["images_per_s"]
    md = [f"Measured {datetime.date.today()} on {cpu_cores()} CPU cores, configs/kitti-fcn8s-vgg16-stage1.yaml recipe "
          f"(global batch 2, 192x608 crops), {a.steps} steps.", "",
          "| processes | threads each | images/s | scaling |", "|---|---|---|---|"]
    md += [f"| {r['processes']} | {r['threads_per_process']} | {r['images_per_s']:.3f} | {r['images_per_s'] / base:.2f}x |"
           for r in rows]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ddp.json").write_text(json.dumps({"date": str(datetime.date.today()), "rows": rows}, indent=1))
    (out / "ddp.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
