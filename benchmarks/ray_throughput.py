"""Throughput of `roadseg predict` in one process against the same job on a local Ray (inference.fleet), on N KITTI
frames; a markdown table on stdout, JSON in benchmarks/results/ray_throughput.json with the CPU and its flags.

    python benchmarks/ray_throughput.py --frames 64 --cpus 2

On one machine both use the same cores, so expect parity: the point of Ray is more machines, not this one. Each
run writes into a fresh folder (a rerun into the same one would skip every frame); the Ray time includes starting
its actors (each loads the model), as a user's job would, but not starting Ray itself."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(argv: list[str]) -> float:
    from roadseg.cli import main

    t = time.perf_counter()
    if main(argv) != 0:
        raise SystemExit(f"roadseg {' '.join(argv)} failed")
    return time.perf_counter() - t


def run(frames: list[Path], model: str, backend: str, cpus: int, work: Path) -> list[dict]:
    import ray

    import roadseg

    roadseg.load(model, backend=backend)  # the ONNX / INT8 cache entry, built before either timing
    manifest = work / "frames.txt"
    manifest.write_text("\n".join(str(f) for f in frames) + "\n")
    flags = ["--manifest", str(manifest), "--model", model, "--backend", backend]
    rows = [{"mode": "one process", "seconds": timed(["predict", *flags, "--out", str(work / "one")])}]
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        rows.append({"mode": f"Ray, {cpus} CPUs", "seconds": timed(["predict", *flags, "--out", str(work / "ray"),
                                                                       "--ray", "auto"])})
    finally:
        ray.shutdown()
    for r in rows:
        r["frames_per_s"] = len(frames) / r["seconds"]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=64, help="KITTI training frames to predict")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (one actor each)")
    p.add_argument("--model", default="kitti-lite0")
    p.add_argument("--backend", default="auto")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kitti_road"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ray_throughput.json"))
    a = p.parse_args()
    from roadseg.device import describe

    frames = sorted((Path(a.data) / "training" / "image_2").glob("*.*"))[: a.frames]
    work = Path(tempfile.mkdtemp(prefix="roadseg-ray-bench-"))
    try:
        rows = run(frames, a.model, a.backend, a.cpus, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0]["frames_per_s"]
    print(f"{len(frames)} frames, {a.model} ({a.backend}), {describe()}\n")
    print("| mode | seconds | frames/s | vs one process |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['seconds']:.1f} | {r['frames_per_s']:.2f} | {r['frames_per_s'] / base:.2f}x |")
    result = {"frames": len(frames), "model": a.model, "backend": a.backend, "cpus": a.cpus, "cpu": describe(),
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{a.out}")


if __name__ == "__main__":
    main()
